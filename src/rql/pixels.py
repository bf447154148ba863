"""Pixel observations: frame stacking and random-shift augmentation, on the device and in the environments.

Images are stored uint8 and flat, one row of ``H * W * C`` numbers per step (the dataset's
``(N, H, W, C)`` seen as ``(N, H * W * C)``, no copy); the agent's encoder (``--agent.encoder``,
:class:`rql.agents.kit.Network`) reshapes them and turns them into floats inside the compiled update.

Frame stacking (``--frame-stack K``), as the FQL codebase does it: the observation of step ``t`` is the
frames ``t - K + 1, ..., t`` concatenated along the channel axis (oldest first), an index before the
episode's first step replaced by that first step (so the first observation of an episode repeats its
first frame ``K`` times); the successor of an episode's last step is frames ``t - K + 2, ..., t`` and the
stored successor frame. Environments stack the same way (:class:`FrameStacker`: at reset the first
frame ``K`` times, then the newest ``K``).

Random shift (``--p-aug p``), as the FQL codebase does it: with probability ``p`` per batch, every window
of the batch is padded by ``pad`` pixels on each side (edge values repeated) and cropped back to
``H x W`` at an offset drawn uniformly in ``[0, 2 pad]`` per axis, one offset per window (all its steps,
the successor included, shifted alike). It runs on the device, from the update's key: the same seed gives
the same shifted batches.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from rql.errors import RQLError

FQL_PAD = 3
"""The FQL codebase's random-shift padding (pixels on each side)."""


@dataclasses.dataclass(frozen=True)
class Pixels:
    """How image windows are made: the stored frame's shape, frames per observation, shift augmentation."""

    frame_shape: tuple[int, int, int]
    """(H, W, C) of one stored frame."""
    frame_stack: int = 1
    p_aug: float = 0.0
    pad: int = FQL_PAD

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, K * C): what the encoder reads."""
        h, w, c = self.frame_shape
        return (h, w, c * self.frame_stack)

    @property
    def obs_dim(self) -> int:
        return int(np.prod(self.image_shape))


def pixels_for(image_shape, frame_stack: int = 1, p_aug: float = 0.0, encoder: str = "none",
               pad: int = FQL_PAD) -> Pixels | None:
    """The :class:`Pixels` of a dataset whose frames are ``image_shape`` (None: state vectors), or one clear
    error for a combination that cannot work (frame stacking or augmentation or an encoder on state
    vectors, images without an encoder)."""
    if frame_stack < 1:
        raise RQLError(f"--frame-stack must be at least 1, got {frame_stack}")
    if not 0.0 <= p_aug <= 1.0:
        raise RQLError(f"--p-aug must lie in [0, 1], got {p_aug}")
    if image_shape is None:
        if frame_stack > 1:
            raise RQLError(f"--frame-stack {frame_stack} stacks image frames, but this task's observations are state "
                           "vectors; leave --frame-stack out (or use a visual-... task)")
        if p_aug > 0:
            raise RQLError(f"--p-aug {p_aug} shifts images, but this task's observations are state vectors; "
                           "leave --p-aug out")
        if encoder != "none":
            raise RQLError(f"--agent.encoder {encoder} reads image observations (N, H, W, C), but this task's "
                           "observations are flat state vectors; use --agent.encoder none")
        return None
    if encoder == "none":
        raise RQLError(f"the observations are {tuple(image_shape)} images; give an image encoder, e.g. "
                       "--agent.encoder impala_small")
    return Pixels(tuple(int(d) for d in image_shape), int(frame_stack), float(p_aug), int(pad))


# ----------------------------------------------------------------------------- frame stacking


def channel_stack(frames: jax.Array, frame_shape) -> jax.Array:
    """``(..., K, H * W * C)`` flat frames to ``(..., H * W * K * C)``: the frames concatenated along the
    channel axis, oldest first (flat again)."""
    h, w, c = frame_shape
    lead, k = frames.shape[:-2], frames.shape[-2]
    x = frames.reshape((*lead, k, h, w, c))
    x = jnp.moveaxis(x, -4, -2)  # (..., H, W, K, C)
    return x.reshape((*lead, h * w * k * c))


def episode_first(end_steps: jax.Array, idx: jax.Array) -> jax.Array:
    """The first step of the episode holding each index (``end_steps``: every episode's last step, ascending)."""
    e = jnp.searchsorted(end_steps, idx)
    return jnp.where(e > 0, end_steps[jnp.maximum(e - 1, 0)] + 1, 0).astype(idx.dtype)


def stacked(observations: jax.Array, end_steps: jax.Array, idx: jax.Array, px: Pixels) -> jax.Array:
    """The stacked observation of each index (any shape): frames ``idx - K + 1 .. idx``, never before the
    episode's first step (that step repeated instead)."""
    k = px.frame_stack
    if k == 1:
        return observations[idx]
    offsets = jnp.arange(k - 1, -1, -1, dtype=idx.dtype)
    j = jnp.maximum(idx[..., None] - offsets, episode_first(end_steps, idx)[..., None])
    return channel_stack(observations[j], px.frame_shape)


def stacked_successor(observations, end_steps, end_next_observations, k: jax.Array, is_end: jax.Array,
                      px: Pixels) -> jax.Array:
    """The stacked state after step ``k`` (B,): inside an episode the stacked step ``k + 1``; at an episode's
    end frames ``k - K + 2 .. k`` and the episode's stored successor frame."""
    e = jnp.minimum(jnp.searchsorted(end_steps, k), end_steps.shape[0] - 1)
    inside = stacked(observations, end_steps, jnp.minimum(k + 1, observations.shape[0] - 1), px)
    last = end_next_observations[e]
    if px.frame_stack > 1:
        offsets = jnp.arange(px.frame_stack - 2, -1, -1, dtype=k.dtype)
        j = jnp.maximum(k[:, None] - offsets, episode_first(end_steps, k)[:, None])
        last = channel_stack(jnp.concatenate([observations[j], last[:, None]], axis=1), px.frame_shape)
    return jnp.where(is_end[:, None], last, inside)


# ----------------------------------------------------------------------------- random shift


def shift(observations: jax.Array, offsets: jax.Array, image_shape, pad: int) -> jax.Array:
    """Windows ``(B, T, H * W * C)`` shifted: each row padded by ``pad`` (edge values) and cropped at its
    ``offsets`` ``(B, 2)`` (in ``[0, 2 pad]``), the same crop for all ``T`` steps. The dtype is kept."""
    h, w, c = image_shape
    b, t = observations.shape[:2]
    x = observations.reshape((b, t, h, w, c))
    x = jnp.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (0, off[0], off[1], 0), (t, h, w, c))

    return jax.vmap(crop)(x, offsets).reshape((b, t, h * w * c))


def augment(batch, key: jax.Array, px: Pixels):
    """The batch with its observations randomly shifted with probability ``px.p_aug`` (the whole batch
    or none of it, as the FQL codebase draws it), from ``key`` alone."""
    k_apply, k_off = jax.random.split(key)
    b = batch.observations.shape[0]
    offsets = jax.random.randint(k_off, (b, 2), 0, 2 * px.pad + 1)
    apply = jax.random.uniform(k_apply) < px.p_aug
    obs = jax.lax.cond(apply, lambda o: shift(o, offsets, px.image_shape, px.pad), lambda o: o, batch.observations)
    return batch._replace(observations=obs)


def augment_key(k_sample: jax.Array) -> jax.Array:
    """The augmentation key of an update, derived from its sampling key (the other keys are unchanged, so
    runs without augmentation draw exactly what they drew before)."""
    return jax.random.fold_in(k_sample, 0x5A17)


# ----------------------------------------------------------------------------- environments


class FrameStacker:
    """Stacks an environment's image observations for the policy, as the data is stacked: at reset the
    first frame ``K`` times, then the newest ``K`` frames (oldest first along the channel axis), returned
    flat (``H * W * K * C``, uint8) as the agent reads them. ``k = 1`` only flattens."""

    def __init__(self, k: int):
        self.k = int(k)
        self.frames: list[np.ndarray] = []

    def reset(self, frame: np.ndarray) -> np.ndarray:
        self.frames = [np.asarray(frame)] * self.k
        return self.observation()

    def step(self, frame: np.ndarray) -> np.ndarray:
        self.frames = self.frames[1:] + [np.asarray(frame)]
        return self.observation()

    def observation(self) -> np.ndarray:
        return np.concatenate(self.frames, axis=-1).reshape(-1)


def newest_frame(obs: np.ndarray, frame_shape) -> np.ndarray:
    """The newest frame ``(..., H, W, C)`` of stacked, flat observations ``(..., H * W * K * C)`` (frames along
    the channels, oldest first, as :class:`FrameStacker` returns them): what the policy saw last."""
    obs = np.asarray(obs)
    h, w, c = frame_shape
    return obs.reshape(*obs.shape[:-1], h, w, -1)[..., -c:]


# ----------------------------------------------------------------------------- where the frames live


def free_device_bytes() -> int | None:
    """Bytes free on the default device (an accelerator's memory statistics; on a CPU the host's available
    memory); None when unknown."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    except Exception:  # backends without statistics
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


PLACEMENTS = ("auto", "device", "host")


def frames_bytes(dataset) -> int:
    """Bytes of a dataset's frames (its stored successor frames included)."""
    ends = dataset.end_next_observations
    return int(dataset.observations.nbytes + (ends.nbytes if ends is not None else 0))


def place_frames(dataset, choice: str = "auto", free: int | None = None) -> str:
    """Where a run keeps its image frames: ``device`` (the whole set copied there, uint8) or ``host``
    (they stay in the host's memory; each block's windows are gathered there and copied in,
    :mod:`rql.data.host_frames`). ``auto`` picks the device when the frames fit in its free memory with a
    tenth and 512 MiB to spare (on a CPU, the host's available memory, the file's copy already counted)."""
    if choice not in PLACEMENTS:
        raise RQLError(f"--frame-placement must be one of {', '.join(PLACEMENTS)}, got '{choice}'")
    size = frames_bytes(dataset)
    if choice == "host":
        return "host"
    fits = free is None or size * 1.1 + 2**29 <= free
    if choice == "device" and not fits:
        raise RQLError(f"{dataset.source}: its {len(dataset.observations):,} frames take {size / 2**30:.1f} GiB as "
                       f"uint8 but only {free / 2**30:.1f} GiB is free on the device; use --frame-placement host "
                       "(or auto)")
    return "device" if fits else "host"


def _amount(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**10:,.0f} KiB"


def describe_pixels(px: Pixels, dataset, where: str = "device", free: int | None = None, block: int = 0,
                    block_bytes: int = 0) -> str:
    """The one line a run with image observations starts with: the frames, their bytes, where they live."""
    n, size = len(dataset.observations), frames_bytes(dataset)
    h, w, c = px.frame_shape
    amount = _amount(size)
    free_s = "" if free is None else f" ({free / 2**30:.1f} GiB free there)"
    if where == "device":
        place = f"on the device{free_s}"
    else:
        place = (f"kept on the host{free_s.replace('there', 'on the device')}: each block's windows "
                 f"({block} update{'s' if block != 1 else ''}, {_amount(block_bytes)}) gathered there while the previous block trains")
    return f"pixels: {n:,} frames {h}x{w}x{c} uint8 ({amount}) {place}, {px.frame_stack} stacked, shift p={px.p_aug:g} pad {px.pad}"


def is_visual(task: str | None) -> bool:
    """OGBench's visual tasks (image observations)."""
    return bool(task) and str(task).startswith("visual-")


def stack_env(env, k: int):
    """``env`` (image observations ``(H, W, C)`` uint8) seen as the agent sees its data: every observation
    the last ``k`` frames stacked along the channels and flat (:class:`FrameStacker`), at a reset the first
    frame ``k`` times; the wrapper's ``frame_shape`` is ``(H, W, C)``. Every step of an action chunk passes
    through it, so frames inside a chunk are stacked too."""
    import gymnasium

    class StackedFrames(gymnasium.Wrapper):
        def __init__(self, env, k):
            super().__init__(env)
            self.frame_shape = tuple(env.observation_space.shape)
            self.stacker = FrameStacker(k)
            n = int(np.prod(self.frame_shape)) * k
            self.observation_space = gymnasium.spaces.Box(0, 255, (n,), np.uint8)

        def reset(self, **kwargs):
            ob, info = self.env.reset(**kwargs)
            return self.stacker.reset(ob), info

        def step(self, action):
            ob, reward, terminated, truncated, info = self.env.step(action)
            return self.stacker.step(ob), reward, terminated, truncated, info

    return StackedFrames(env, k)
