"""Videos of a policy: evaluation episodes rendered offscreen with MuJoCo, tiled into one grid
with each episode's outcome written on its tile, and written as an mp4.

Rendering needs an OpenGL backend that works without a display. :func:`select_gl_backend`
picks one before MuJoCo is imported: the one ``MUJOCO_GL`` asks for (the command line sets
``egl``), else EGL, else OSMesa, each tried in a short subprocess, because MuJoCo reads
``MUJOCO_GL`` once, when it is first imported, and cannot switch afterwards.

The episodes are run by :func:`rql.evaluation.evaluate` itself, on environments that record a
frame after every reset and step, so a video shows exactly what evaluation does: one batched
policy call for every environment that needs a chunk, each chunk executed open loop.

Visual tasks (image observations): the environments keep their own 64x64 observation camera and
stack their frames as in training (``make_env(task, frame_stack=K)``), so the policy sees what it
saw in training; the video's camera (the usual ``front`` camera at the video's size) is rendered by
a renderer of its own, beside the environment's, and each tile shows that frame with the policy's
newest 64x64 frame upscaled (nearest) to its right.
"""

from __future__ import annotations

import math
import os
import pathlib
import subprocess
import sys
import warnings
from typing import Iterable, NamedTuple

import numpy as np

from rql.errors import RQLError

GL_BACKENDS = ("egl", "osmesa")
"""Offscreen backends tried, in this order, after the one ``MUJOCO_GL`` names."""

_INSTALL_HINT = "install EGL (apt-get install libegl1 libegl-mesa0) or OSMesa (apt-get install libosmesa6)"

_PROBE = """
import mujoco
m = mujoco.MjModel.from_xml_string(
    "<mujoco><worldbody><light pos='0 0 1'/><geom type='box' size='.1 .1 .1'/></worldbody></mujoco>")
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r = mujoco.Renderer(m, 16, 16)
r.update_scene(d)
img = r.render()
r.close()
assert img.shape == (16, 16, 3) and img.any(), "blank image"
"""


def _probe(backend: str, timeout: float = 120.0) -> str | None:
    """None when MuJoCo renders with ``backend`` in a fresh process, else the reason it does not."""
    env = dict(os.environ, MUJOCO_GL=backend)
    env.pop("PYOPENGL_PLATFORM", None)  # MuJoCo sets it to match the backend
    try:
        with warnings.catch_warnings():  # JAX warns of any fork; this one execs at once
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                               timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"no image within {timeout:.0f} s"
    if r.returncode == 0:
        return None
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1].strip()[:200] if lines else f"exit status {r.returncode}"


def _check_in_process() -> str | None:
    import mujoco

    try:
        ctx = mujoco.GLContext(16, 16)
        ctx.make_current()
        ctx.free()
    except Exception as e:  # the backends fail with ImportError, RuntimeError, OpenGL errors...
        return f"{type(e).__name__}: {e}"[:200]
    return None


def select_gl_backend() -> str:
    """Make sure MuJoCo can render offscreen here; returns the backend (``egl``, ``osmesa``, ...).

    Before MuJoCo is imported this tries ``MUJOCO_GL`` (when set), then EGL, then OSMesa, each in a
    subprocess, and sets ``MUJOCO_GL`` (and ``PYOPENGL_PLATFORM``) to the first that renders. Once
    MuJoCo is imported the backend is fixed; it is then only checked. Call it before creating any
    environment to get the fallback. Raises :class:`RQLError` with the reasons when none works.
    """
    requested = os.environ.get("MUJOCO_GL", "").strip().lower()
    if "mujoco" in sys.modules:
        err = _check_in_process()
        if err is None:
            return requested or "default"
        raise RQLError(
            f"MuJoCo cannot render offscreen with MUJOCO_GL={requested or '(unset)'} ({err}); the backend is "
            "chosen when mujoco is first imported, so start again with MUJOCO_GL=egl or MUJOCO_GL=osmesa; "
            + _INSTALL_HINT
        )
    order = ([requested] if requested else []) + [b for b in GL_BACKENDS if b != requested]
    errors = []
    for backend in order:
        err = _probe(backend)
        if err is None:
            os.environ["MUJOCO_GL"] = backend
            if backend in GL_BACKENDS and "OpenGL" not in sys.modules:
                os.environ["PYOPENGL_PLATFORM"] = backend
            return backend
        errors.append(f"{backend}: {err}")
    raise RQLError(f"no OpenGL backend renders MuJoCo offscreen here ({'; '.join(errors)}); {_INSTALL_HINT}")


# ----------------------------------------------------------------------------- recording


def _mj_model(env):
    import mujoco

    for name in ("_model", "model"):
        m = getattr(env, name, None)
        if isinstance(m, mujoco.MjModel):
            return m
    return None


VIDEO_CAMERA = "front"
"""The camera of a visual task's videos (OGBench's usual camera; its observations use ``front_pixels``)."""


def upscale_nearest(frame: np.ndarray, size: int) -> np.ndarray:
    """An ``(h, w, c)`` uint8 frame as ``(size, size, 3)``: nearest-neighbour upscaling (every output pixel
    the input pixel it falls in), one channel repeated to three."""
    h, w = frame.shape[:2]
    rows, cols = (np.arange(size) * h) // size, (np.arange(size) * w) // size
    out = frame[rows][:, cols]
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out[..., :3]


class CameraRenderer:
    """A renderer of its own for a visual environment's video camera, at ``size`` pixels, beside the
    environment's 64x64 observation renderer (which it leaves as it is: the model's offscreen size and
    quality are raised only while this renderer is made, then restored). Made again when the
    environment compiles a new model."""

    def __init__(self, size: int, shadows: bool = False, camera: str = VIDEO_CAMERA):
        self.size, self.shadows, self.camera = int(size), shadows, camera
        self.renderer, self.model = None, None

    def render(self, env) -> np.ndarray:
        import mujoco

        u = env.unwrapped
        m = _mj_model(u)
        if self.renderer is None or self.model is not m:
            self.close()
            g, q = m.vis.global_, m.vis.quality
            saved = (g.offwidth, g.offheight, q.shadowsize, q.offsamples)
            g.offwidth, g.offheight = max(g.offwidth, self.size), max(g.offheight, self.size)
            if not self.shadows:
                q.shadowsize, q.offsamples = 0, 0
            try:
                self.renderer = mujoco.Renderer(m, self.size, self.size)
            finally:
                g.offwidth, g.offheight, q.shadowsize, q.offsamples = saved
            self.model = m
        option = getattr(u, "_scene_option", None)
        self.renderer.update_scene(getattr(u, "_data"), camera=self.camera, **({"scene_option": option} if option else {}))
        return np.array(self.renderer.render(), dtype=np.uint8, copy=True)

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
        self.renderer, self.model = None, None


class _Recorder:
    """Forwards an environment and keeps an RGB frame after every reset and step. With ``camera`` (a
    :class:`CameraRenderer`: a visual task's environment of stacked frames) the frame is that camera's
    image beside the policy's newest observation frame, upscaled to the same height."""

    def __init__(self, env, shadows: bool, camera: CameraRenderer | None = None):
        self.env = env
        self.shadows = shadows
        self.camera = camera
        self.frames: list[np.ndarray] = []
        self.success: bool | None = None

    def __getattr__(self, name):  # observation_space, action_space, spec, ...
        return getattr(self.env, name)

    def _frame(self, obs) -> None:
        if self.camera is None:
            self.frames.append(np.array(self.env.unwrapped.render(), dtype=np.uint8, copy=True))
            return
        from rql.pixels import newest_frame

        view = upscale_nearest(newest_frame(obs, self.env.frame_shape), self.camera.size)
        self.frames.append(np.concatenate([self.camera.render(self.env), view], axis=1))

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        m = _mj_model(self.env.unwrapped)
        if m is not None and not self.shadows and self.camera is None:
            # Read when the renderer is made (first frame). Software GL spends most of a frame on the
            # 4096^2 shadow maps and multisampling; without them it is several times faster. (A visual
            # task's own observation renderer is left alone: the policy sees what it saw in training.)
            m.vis.quality.shadowsize = 0
            m.vis.quality.offsamples = 0
        self.frames, self.success = [], None
        self._frame(out[0])
        return out

    def step(self, action):
        out = self.env.step(action)
        self._frame(out[0])
        if out[2] or out[3]:
            self.success = float(out[4].get("success", 0.0)) > 0.5
        return out

    def close(self):
        if self.camera is not None:
            self.camera.close()
        u = self.env.unwrapped
        for name in ("_renderer", "custom_renderer"):  # ogbench's manipulation / maze renderers
            r = getattr(u, name, None)
            if r is not None and hasattr(r, "close"):
                r.close()
                setattr(u, name, None)
        self.env.close()


def _control_fps(env) -> float:
    u = env.unwrapped
    dt = getattr(u, "_control_timestep", None) or getattr(u, "dt", None)
    return max(20.0, 1.0 / float(dt)) if dt else 20.0


class RenderedEpisodes(NamedTuple):
    frames: np.ndarray
    """(T, H, W, 3) uint8: the episodes side by side in a grid, each labelled with its outcome."""
    successes: list[bool]
    """Per episode, in the order of the tiles (row by row)."""
    fps: float
    """Playback rate: the environment's control rate (real time), at least 20 frames a second."""


def render_episodes(
    agent,
    agent_state,
    task: str,
    episodes: int,
    key,
    seed: int,
    size: int = 200,
    *,
    policy=None,
    shadows: bool = False,
    label: bool = True,
    frame_stack: int = 1,
) -> RenderedEpisodes:
    """Run ``episodes`` evaluation episodes of ``task`` side by side (episode ``i`` reset with
    ``seed + i``, policy noise from ``key``) exactly as :func:`rql.evaluation.evaluate` runs them,
    rendering every step at ``size`` x ``size`` pixels.

    Returns the frames tiled into a grid of ``ceil(sqrt(episodes))`` columns (an episode that ends
    early holds its last frame; empty cells are black), each tile labelled "success" or "fail".
    ``policy``: a compiled ``make_policy(agent, episodes)`` to reuse. ``shadows``: MuJoCo's shadows
    and multisampling, off by default because software rendering is then several times slower.
    Visual tasks: the environments observe 64x64 frames stacked ``frame_stack`` deep, as the policy was
    trained, and each tile is ``size`` x ``2 size``: the video camera, then the policy's own newest frame
    upscaled (nearest). The environments are closed before returning.
    """
    from rql.data.loading import make_env
    from rql.evaluation import evaluate, make_policy
    from rql.pixels import is_visual

    if episodes <= 0:
        raise RQLError("the number of episodes to render must be positive")
    if size < 16:
        raise RQLError(f"frames of {size} pixels are too small; give 16 or more")
    select_gl_backend()
    if is_visual(task):  # the observation stays what the policy saw in training; the video camera is apart
        envs = [_Recorder(make_env(task, frame_stack=frame_stack), shadows, CameraRenderer(size, shadows))
                for _ in range(episodes)]
    else:  # the evaluation environments (rql.training.make_eval_envs), at the frame size asked for
        envs = [_Recorder(make_env(task, width=size, height=size), shadows) for _ in range(episodes)]
    try:
        fps = _control_fps(envs[0])
        if policy is None:
            policy = make_policy(agent, episodes)
        evaluate(policy, agent_state, envs, episodes, key, seed=seed)
        successes = [bool(e.success) for e in envs]
        labels = [f"{i + 1}: {'success' if s else 'fail'}" for i, s in enumerate(successes)] if label else None
        frames = tile_episodes([np.stack(e.frames) for e in envs], labels, [bool(s) for s in successes])
    finally:
        for e in envs:
            e.close()
    return RenderedEpisodes(frames, successes, fps)


# ----------------------------------------------------------------------------- frames


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, columns) of the grid that holds ``n`` tiles."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _label_patch(text: str, good: bool, height: int) -> np.ndarray | None:
    """An RGBA (h, w, 4) float patch: white text on a green (success) or red (fail) band."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        return None
    px = max(8, height // 11)
    try:
        font = ImageFont.load_default(size=px)
    except TypeError:  # Pillow < 10.1: one bitmap size
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    x0, y0, x1, y1 = probe.textbbox((0, 0), text, font=font)
    pad = max(2, px // 4)
    img = Image.new("RGBA", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), (40, 160, 70, 220) if good else (200, 50, 50, 220))
    ImageDraw.Draw(img).text((pad - x0, pad - y0), text, font=font, fill=(255, 255, 255, 255))
    return np.asarray(img, np.float32) / 255.0


def tile_episodes(
    episodes: list[np.ndarray], labels: list[str] | None = None, good: list[bool] | None = None
) -> np.ndarray:
    """Frames (T_i, H, W, 3) of several episodes as one (max T_i, rows*H, cols*W, 3) uint8 array.

    Shorter episodes hold their last frame; cells past the last episode stay black. ``labels`` are
    drawn on the top left corner of each tile on every frame (green band where ``good``, else red).
    """
    if not episodes:
        raise ValueError("no episodes to tile")
    h, w = episodes[0].shape[1:3]
    for ep in episodes:
        if ep.ndim != 4 or ep.shape[1:] != (h, w, 3) or len(ep) == 0:
            raise ValueError(f"every episode needs frames of shape (T, {h}, {w}, 3); got {ep.shape}")
    rows, cols = grid_shape(len(episodes))
    T = max(len(ep) for ep in episodes)
    out = np.zeros((T, rows * h, cols * w, 3), np.uint8)
    for i, ep in enumerate(episodes):
        r, c = divmod(i, cols)
        tile = out[:, r * h:(r + 1) * h, c * w:(c + 1) * w]
        tile[: len(ep)] = ep
        tile[len(ep):] = ep[-1]
        if labels is not None:
            patch = _label_patch(labels[i], good[i] if good is not None else True, h)
            if patch is not None:
                ph, pw = min(patch.shape[0], h), min(patch.shape[1], w)
                rgb, a = patch[:ph, :pw, :3] * 255.0, patch[:ph, :pw, 3:]
                region = tile[:, :ph, :pw].astype(np.float32)
                tile[:, :ph, :pw] = np.round(region * (1 - a) + rgb * a).astype(np.uint8)
    return out


def _even(frame: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: pad one black row/column where needed."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))


def write_video(path, frames: Iterable[np.ndarray], fps: float = 20.0) -> pathlib.Path:
    """Write RGB uint8 frames (H, W, 3) as an H.264 mp4, atomically (a temporary file in the same
    folder, then renamed). Odd sides are padded by one black pixel. Returns the path."""
    import imageio.v2 as imageio

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    n = 0
    try:
        with warnings.catch_warnings():  # JAX warns of any fork; the one that starts ffmpeg execs at once
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
            with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=7,
                                    pixelformat="yuv420p", macro_block_size=2, ffmpeg_log_level="error") as w:
                for f in frames:
                    f = np.asarray(f)
                    if f.ndim != 3 or f.shape[2] != 3:
                        raise ValueError(f"frames must be (H, W, 3); got {f.shape}")
                    w.append_data(_even(f.astype(np.uint8, copy=False)))
                    n += 1
        if n == 0:
            raise ValueError("no frames to write")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _gif_bytes(frames: np.ndarray, fps: float, max_frames: int = 300, max_side: int = 320) -> tuple[bytes, int, int]:
    """A looping GIF of the frames (every k-th frame and halved sizes until within the limits)."""
    import imageio.v3 as iio

    step = max(1, math.ceil(len(frames) / max_frames))
    small = frames[::step]
    while max(small.shape[1:3]) > max_side:
        small = small[:, ::2, ::2]
    data = iio.imwrite("<bytes>", small, extension=".gif", duration=1000.0 * step / fps, loop=0)
    return data, small.shape[1], small.shape[2]


def add_tensorboard_video(tb, tag: str, frames: np.ndarray, fps: float, step: int) -> None:
    """An animated GIF image summary (what tensorboardX's add_video writes, without needing
    moviepy): it plays in TensorBoard's Images tab."""
    from tensorboardX.proto.summary_pb2 import Summary

    data, h, w = _gif_bytes(frames, fps)
    image = Summary.Image(height=h, width=w, colorspace=3, encoded_image_string=data)
    writer = tb._get_file_writer() if hasattr(tb, "_get_file_writer") else tb.file_writer
    writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
    tb.flush()


def record_eval_video(
    run_dir,
    step: int,
    agent,
    agent_state,
    task: str,
    episodes: int,
    seed: int,
    tb=None,
    wb=None,
    *,
    key=None,
    size: int = 200,
    policy=None,
    prefix: str = "step_",
    tag: str = "eval/video",
    frame_stack: int = 1,
) -> pathlib.Path:
    """Render ``episodes`` evaluation episodes (:func:`render_episodes`) to
    ``run_dir/videos/<prefix><step>.mp4`` and return its path.

    Also adds the video to the tensorboardX ``SummaryWriter`` ``tb`` (an animated GIF under
    ``tag`` in the Images tab) and to the W&B run ``wb`` (``wandb.Video`` under ``tag``), when
    given. Episode ``i`` is reset with ``seed + i``; the policy noise comes from ``key`` (default:
    ``seed`` folded with ``step``). ``frame_stack``: frames per observation of a visual task's policy.
    Keeps no state between calls and closes its environments.
    """
    import jax

    if key is None:
        key = jax.random.fold_in(jax.random.PRNGKey(seed), step)
    rec = render_episodes(agent, agent_state, task, episodes, key, seed, size, policy=policy, frame_stack=frame_stack)
    path = write_video(pathlib.Path(run_dir) / "videos" / f"{prefix}{step}.mp4", rec.frames, rec.fps)
    if tb is not None:
        add_tensorboard_video(tb, tag, rec.frames, rec.fps, step)
    if wb is not None:
        import wandb

        caption = f"step {step}: {sum(rec.successes)}/{len(rec.successes)} successes"
        wb.log({tag: wandb.Video(str(path), caption=caption, format="mp4")}, step=step)
    return path
