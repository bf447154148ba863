"""Videos of a policy: mp4 writing, tiling, the TensorBoard summary, the GL backend fallback, and
`rql eval --video` on a tiny trained run."""

import json
import os
import re
import struct
import subprocess
import sys

import numpy as np
import pytest

from rql.errors import RQLError
from rql.video import add_tensorboard_video, grid_shape, tile_episodes, write_video

from conftest import TASK

# JAX warns of every fork; the subprocesses here (ffmpeg, the backend probe) exec at once.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def _frames(t, h, w, seed=0):
    """Frames whose mean brightness changes from one to the next (so order can be checked)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 40, (h, w, 3))
    return np.stack([np.clip(base + 25 * i, 0, 255) for i in range(t)]).astype(np.uint8)


def _decode(path):
    import imageio.v3 as iio

    return iio.imread(path)


def test_write_video_decodes_to_the_frames_written(tmp_path):
    frames = _frames(9, 48, 64)
    path = write_video(tmp_path / "v" / "a.mp4", frames, fps=20)
    assert path == tmp_path / "v" / "a.mp4"
    out = _decode(path)
    assert out.shape == (9, 48, 64, 3) and out.dtype == np.uint8
    # lossy, but each frame stays close to the one written, in order
    np.testing.assert_allclose(out.reshape(9, -1).mean(1), frames.reshape(9, -1).mean(1), atol=4)
    assert os.listdir(tmp_path / "v") == ["a.mp4"]  # no temporary file left behind


def test_write_video_pads_odd_sides_and_fails_without_leftovers(tmp_path):
    out = _decode(write_video(tmp_path / "odd.mp4", _frames(3, 33, 50), fps=10)).astype(float)
    assert out.shape == (3, 34, 50, 3)
    assert out[2, -1].mean() < 15 < 50 < out[2, :-2].mean()  # a black row added, not the frame stretched
    with pytest.raises(ValueError):
        write_video(tmp_path / "bad.mp4", np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError):
        write_video(tmp_path / "empty.mp4", [])
    assert sorted(os.listdir(tmp_path)) == ["odd.mp4"]


def test_tiling_makes_a_grid_and_holds_last_frames():
    assert [grid_shape(n) for n in (1, 2, 3, 4, 5, 9, 10)] == [(1, 1), (1, 2), (2, 2), (2, 2), (2, 3), (3, 3), (3, 4)]
    a, b, c = _frames(5, 10, 12, 1), _frames(3, 10, 12, 2), _frames(4, 10, 12, 3)
    two = tile_episodes([a, b[:3]])
    assert two.shape == (5, 10, 24, 3)
    grid = tile_episodes([a, b, c])
    assert grid.shape == (5, 20, 24, 3)
    np.testing.assert_array_equal(grid[:, :10, :12], a)
    np.testing.assert_array_equal(grid[:3, :10, 12:], b)
    np.testing.assert_array_equal(grid[3:, :10, 12:], np.broadcast_to(b[-1], (2, 10, 12, 3)))  # held
    np.testing.assert_array_equal(grid[:4, 10:, :12], c)
    assert not grid[:, 10:, 12:].any()  # the empty cell is black
    with pytest.raises(ValueError):
        tile_episodes([a, _frames(2, 8, 12)])


def test_labels_mark_each_tile_green_or_red():
    pytest.importorskip("PIL")
    eps = [np.full((4, 64, 64, 3), 128, np.uint8) for _ in range(2)]
    out = tile_episodes(eps, ["1: success", "2: fail"], [True, False]).astype(int)
    for t in (0, 3):  # on every frame
        ok, bad = out[t, :6, :6].reshape(-1, 3).mean(0), out[t, :6, 64:70].reshape(-1, 3).mean(0)
        assert ok[1] > ok[0] + 40 and bad[0] > bad[1] + 40  # green band, red band
    np.testing.assert_array_equal(out[:, 40:, :], 128)  # below the labels the frames are untouched


def _events(tb_dir):
    """Every Event in the tensorboardX event files of a folder (TFRecord framing)."""
    from tensorboardX.proto.event_pb2 import Event

    events = []
    for name in sorted(os.listdir(tb_dir)):
        data = open(os.path.join(tb_dir, name), "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            events.append(Event.FromString(data[i + 12:i + 12 + n]))
            i += 12 + n + 4
    return events


def test_tensorboard_gets_an_animated_gif(tmp_path):
    import imageio.v3 as iio
    from tensorboardX import SummaryWriter

    tb = SummaryWriter(str(tmp_path / "tb"))
    add_tensorboard_video(tb, "eval/video", _frames(12, 40, 80), fps=20, step=7)
    tb.close()
    images = [(e.step, v) for e in _events(tmp_path / "tb") for v in e.summary.value if v.HasField("image")]
    assert len(images) == 1
    step, v = images[0]
    assert step == 7 and v.tag == "eval/video" and (v.image.height, v.image.width) == (40, 80)
    gif = v.image.encoded_image_string
    assert gif[:6] == b"GIF89a"
    assert iio.imread(gif, extension=".gif").shape == (12, 40, 80, 3)


def _probe_script(env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    env.update(env_overrides, PYTHONPATH=os.pathsep.join(sys.path))
    code = "from rql.video import select_gl_backend; print(select_gl_backend())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_egl_failing_falls_back_to_osmesa(monkeypatch):
    from rql.video import _probe

    if _probe("osmesa") is not None:
        pytest.skip("OSMesa is not installed here (apt-get install libosmesa6), so there is nothing to fall back to")
    # an EGL vendor list that names no driver: EGL (through glvnd) cannot open a display
    broken = {"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent.json"}
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", broken["__EGL_VENDOR_LIBRARY_FILENAMES"])
    if _probe("egl") is None:
        pytest.skip("EGL does not go through glvnd here, so this test cannot make it fail")
    r = _probe_script({"MUJOCO_GL": "egl", **broken})
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[-1] == "osmesa"


def test_no_backend_is_one_clear_error(monkeypatch):
    import rql.video as video

    monkeypatch.delitem(sys.modules, "mujoco", raising=False)  # restored after the test
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.setattr(video, "_probe", lambda backend, timeout=120.0: f"{backend} is broken")
    with pytest.raises(RQLError, match="egl: egl is broken; osmesa: osmesa is broken.*libosmesa6"):
        video.select_gl_backend()
    assert os.environ["MUJOCO_GL"] == "egl"


@pytest.fixture(scope="module")
def tiny_run(tiny_ogbench, tmp_path_factory):
    """A saved run of a few updates. The video does not depend on the method, so this uses flow-bc,
    which compiles several times faster than rql on a CPU."""
    from rql.agents import build_config
    from rql.training import RunConfig, train

    d = tmp_path_factory.mktemp("videorun") / "run"
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), run_dir=str(d), steps=4, log_every=2,
                    eval_every=0, eval_episodes=0, progress=False)
    cfg = build_config("flow-bc", TASK, None, dict(actor_hidden_dims=(16, 16), batch_size=16, horizon=2))
    train(run, "flow-bc", cfg, log=lambda *a: None)
    return d


def _short_rendered_episodes(monkeypatch, steps: int) -> None:
    """Skip without an OpenGL backend; otherwise shorten the task's episodes to ``steps`` (software
    rendering of the cube scene takes tens of milliseconds a frame; evaluation and video both build
    their environments through ``make_env``)."""
    import rql.data.loading as loading
    from rql.video import select_gl_backend

    try:
        select_gl_backend()
    except RQLError as e:
        pytest.skip(f"no OpenGL backend renders MuJoCo here: {e}")
    make_env = loading.make_env
    monkeypatch.setattr(loading, "make_env", lambda task, **kw: make_env(task, max_episode_steps=steps, **kw))


def test_rql_eval_video_writes_a_decodable_grid(tiny_run, capsys, monkeypatch):
    from rql.cli import main

    _short_rendered_episodes(monkeypatch, 40)
    assert main(["eval", str(tiny_run), "--episodes", "2", "--envs", "2", "--video", "2", "--video-size", "48",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["video"] == str(tiny_run / "videos" / "eval_step_4.mp4")
    frames = _decode(res["video"])
    # two 48x48 episodes side by side; one frame per step plus the first; the same seeds and noise as
    # the evaluation, so as many steps as its longest episode
    assert frames.shape[1:] == (48, 96, 3)
    assert res["length"] + 1 <= len(frames) <= 41
    assert frames[len(frames) // 2].std() > 5  # a rendered scene, not a blank image
    assert main(["eval", str(tiny_run), "--video", "-1"]) == 2


def test_record_eval_video_for_the_training_loop(tiny_run, tmp_path, monkeypatch):
    """What the training loop calls at an evaluation: an mp4 under videos/, a GIF in TensorBoard,
    a wandb.Video."""
    import types

    import jax
    from tensorboardX import SummaryWriter

    from rql.training import restore_agent
    from rql.video import record_eval_video

    _short_rendered_episodes(monkeypatch, 10)
    logged = []
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(
        Video=lambda path, caption=None, format=None: ("Video", path, caption, format)))
    wb = types.SimpleNamespace(log=lambda d, step=None: logged.append((d, step)))
    run, agent, ts, step = restore_agent(tiny_run)
    tb = SummaryWriter(str(tmp_path / "tb"))
    path = record_eval_video(tmp_path / "run", 30, agent, ts["agent"], run.task, 2, 5, tb=tb, wb=wb, size=32)
    tb.close()
    assert path == tmp_path / "run" / "videos" / "step_30.mp4"
    assert _decode(path).shape == (11, 32, 64, 3)
    [v] = [v for e in _events(tmp_path / "tb") for v in e.summary.value if v.HasField("image")]
    assert v.tag == "eval/video" and (v.image.height, v.image.width) == (32, 64)
    [(d, s)] = logged
    assert s == 30 and d["eval/video"][:2] == ("Video", str(path)) and d["eval/video"][3] == "mp4"
    assert re.fullmatch(r"step 30: [0-2]/2 successes", d["eval/video"][2])


def test_training_with_video_episodes_writes_a_video_per_seed(tiny_ogbench, tmp_path, monkeypatch):
    from rql.agents import build_config
    from rql.training import RunConfig, train_group

    _short_rendered_episodes(monkeypatch, 10)
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), steps=4, log_every=2, eval_every=0,
                    eval_episodes=1, eval_envs=1, video_episodes=1, progress=False)
    cfg = build_config("flow-bc", TASK, None, dict(actor_hidden_dims=(16, 16), batch_size=16, horizon=2))
    dirs = [tmp_path / "s0", tmp_path / "s1"]
    train_group(run, "flow-bc", cfg, [0, 1], dirs, log=lambda *a: None)
    for d in dirs:
        frames = _decode(d / "videos" / "step_4.mp4")
        assert frames.shape == (11, 200, 200, 3)
