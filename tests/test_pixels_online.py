"""Online fine-tuning and videos with image observations.

The replay buffer stores single uint8 frames and stacks its windows exactly as the offline sampler does (a pure
function test on a synthetic stream of frames, no environment); a tiny visual run fine-tunes online and renders a
video whose tiles hold the policy's own 64x64 view beside the usual camera (rendering costs about 0.2-0.3 s a
step here, so a handful of steps)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.data.dataset import Dataset
from rql.data.device import rql_batch_at, suite_batch_at, suite_window, to_device
from rql.online import append, close_open_episode, gather, init_online_buffer, sample_windows, suite_successor
from rql.pixels import Pixels, stacked, stacked_successor

FRAME = (2, 2, 1)  # tiny frames: every pixel of a step's frame holds the step's own number
K = 3


def _frame(v: int) -> np.ndarray:
    return np.full(int(np.prod(FRAME)), v, np.uint8)


def _reference(frames: np.ndarray, first: int, t: int, nxt=None) -> np.ndarray:
    """The documented rule, brute force: frames t-K+1..t clamped to the episode's first step (the successor
    at an episode end: frames t-K+2..t and the next frame), concatenated along the channels, flat."""
    idx = [max(j, first) for j in range(t - K + 1, t + 1)]
    fs = [frames[j].reshape(FRAME) for j in idx]
    if nxt is not None:
        fs = fs[1:] + [nxt.reshape(FRAME)]
    return np.concatenate(fs, axis=-1).reshape(-1)


def _stream(episodes, base):
    """Frames, terminals, next frames of episode ends, and each step's episode start."""
    frames, term, firsts, ends_next = [], [], [], []
    v = base
    for L in episodes:
        first = len(frames)
        for t in range(L):
            frames.append(_frame(v))
            term.append(t == L - 1)
            firsts.append(first)
            v += 1
        ends_next.append(_frame(v))  # the frame the environment shows after the episode's last step
        v += 1
    return np.stack(frames), np.array(term, np.float32), np.array(firsts), np.stack(ends_next)


@pytest.mark.parametrize("windows", ["rql", "suite"])
def test_buffer_windows_are_the_offline_samplers_windows(windows):
    """Frames go into the buffer one per step, uint8, unstacked; its windows (stacked, successors included)
    equal the offline sampler's windows on the same frames stored as a dataset, and a buffer of the
    precomputed stacked observations (the state code path) draws the very same batches."""
    px = Pixels(FRAME, K)
    h = 2
    # offline data: frames as a dataset, as rql.data.loading stores them (uint8 images)
    off_f, off_t, off_first, off_next = _stream([4, 1, 6], 1)
    off_ds = Dataset(off_f.reshape(-1, *FRAME), np.zeros((len(off_f), 1), np.float32), np.zeros(len(off_f), np.float32),
                     off_t, 1.0 - off_t, end_next_observations=off_next.reshape(-1, *FRAME))
    off = to_device(off_ds)
    assert off.observations.dtype == jnp.uint8 and off.end_next_observations.dtype == jnp.uint8

    # online stream: closed episodes (one of one step), then one in progress (3 steps, newest next frame kept)
    on_eps = [5, 1, 4]
    on_f, on_t, on_first, on_next = _stream(on_eps + [3], 100)
    cap = 20
    buf = init_online_buffer(cap, 999, 1, windows, px)
    assert buf["observations"].shape == (cap, 4) and buf["observations"].dtype == jnp.uint8
    app = jax.jit(append)
    ref_state = []  # the stacked observation of every online step (what the policy read), for the state buffer
    sbuf = init_online_buffer(cap, 4 * K, 1, windows)
    ends = np.flatnonzero(on_t)
    n = len(on_f)
    for j in range(n):
        e = int(np.searchsorted(np.r_[ends, n - 1], j))
        done = bool(on_t[j]) and j < n - 3
        last_of_ep = bool(on_t[j]) or j == n - 1
        nxt = on_next[e] if last_of_ep else on_f[j + 1]
        tr = {"observations": jnp.asarray(on_f[j]), "actions": jnp.zeros(1), "rewards": jnp.float32(j),
              "masks": jnp.float32(1), "done": jnp.float32(done), "next_observations": jnp.asarray(nxt)}
        buf = app(buf, tr)
        stacked_obs = _reference(on_f, on_first[j], j)
        stacked_next = _reference(on_f, on_first[j], j, nxt) if last_of_ep else _reference(on_f, on_first[j], j + 1)
        ref_state.append(stacked_obs)
        sbuf = app(sbuf, {**tr, "observations": jnp.asarray(stacked_obs, jnp.float32),
                          "next_observations": jnp.asarray(stacked_next, jnp.float32)})
    assert buf["observations"].dtype == jnp.uint8
    np.testing.assert_array_equal(np.asarray(buf["observations"])[:n], on_f)  # single frames, as given

    # the online frames stored as a dataset (the in-progress episode truncated at its newest step)
    ds = Dataset(on_f.reshape(-1, *FRAME), np.zeros((n, 1), np.float32), np.arange(n, dtype=np.float32),
                 np.r_[on_t[:-1], 1.0].astype(np.float32), np.ones(n, np.float32),
                 end_next_observations=on_next.reshape(-1, *FRAME))
    dd = to_device(ds)
    off_cap = off.observations.shape[0]
    starts = jnp.arange(n - h, dtype=jnp.int32)
    k_all = jnp.arange(n, dtype=jnp.int32)
    is_end = jnp.asarray(np.r_[on_t[:-1], 1.0] > 0)
    last = jnp.asarray(np.r_[ends, n - 1][np.searchsorted(np.r_[ends, n - 1], np.asarray(starts))])

    @jax.jit  # one compilation for all the views below (eager, each op would compile on its own)
    def views(off, buf, dd):
        out = {"all": gather(off, buf, jnp.arange(off_cap + n, dtype=jnp.int32)[None], px).observations[0],
               "dataset": stacked(dd.observations, dd.end_steps, k_all, px)}
        if windows == "suite":
            out["offline_windows"] = suite_batch_at(dd, starts, h, px).observations
            out["dataset_succ"] = stacked_successor(dd.observations, dd.end_steps, dd.end_next_observations, k_all,
                                                    is_end, px)
            out["buffer_succ"] = suite_successor(off, buf, k_all + off_cap, is_end, px)
            idx_b = starts[:, None] + jnp.arange(h, dtype=jnp.int32)[None] + off_cap  # inside the online part
            out["buffer_windows"] = suite_window(gather(off, buf, idx_b, px),
                                                 lambda k, end: suite_successor(off, buf, k, end, px), idx_b).observations
        else:
            out["offline_windows"] = rql_batch_at(dd, starts, h, px).observations
            idx_b = jnp.minimum(starts[:, None] + jnp.arange(h + 1, dtype=jnp.int32)[None], last[:, None]) + off_cap
            out["buffer_windows"] = gather(off, buf, idx_b, px).observations
        return out

    v = {k: np.asarray(x) for k, x in views(off, buf, dd).items()}
    # 1. every stored step: the buffer's stacked observation is the reference (offline and online parts)
    for i in range(off_cap):
        np.testing.assert_array_equal(v["all"][i], _reference(off_f, off_first[i], i))
    np.testing.assert_array_equal(v["all"][off_cap:], np.stack(ref_state))
    # 2. the offline sampler's stacking, windows and successors on the same frames equal the buffer's
    np.testing.assert_array_equal(v["dataset"], v["all"][off_cap:])
    np.testing.assert_array_equal(v["buffer_windows"], v["offline_windows"])
    if windows == "suite":
        np.testing.assert_array_equal(v["buffer_succ"], v["dataset_succ"])
        assert (v["buffer_succ"][np.asarray(is_end)] != 0).all()

    # 3. sampled batches: the pixel buffer draws exactly what a buffer of the stacked observations draws
    off_state = to_device(Dataset(np.stack([_reference(off_f, off_first[i], i) for i in range(off_cap)]).astype(np.float32),
                                  off_ds.actions, off_ds.rewards, off_t, 1.0 - off_t,
                                  end_next_observations=np.stack([
                                      _reference(off_f, off_first[e], e, off_next[i])
                                      for i, e in enumerate(np.flatnonzero(off_t))]).astype(np.float32)))
    draw = jax.jit(sample_windows, static_argnums=(3, 4, 5, 6))
    for b_, sb in ((buf, sbuf), (close_open_episode(buf), close_open_episode(sbuf))):
        for seed in range(2):
            key = jax.random.PRNGKey(seed)
            a = draw(off, b_, key, 256, h, windows, px)
            s_ = draw(off_state, sb, key, 256, h, windows, None)
            assert a.observations.dtype == jnp.uint8
            np.testing.assert_array_equal(np.asarray(a.observations).astype(np.float32), np.asarray(s_.observations))
            for f in ("actions", "rewards", "terminals", "masks"):
                np.testing.assert_array_equal(np.asarray(getattr(a, f)), np.asarray(getattr(s_, f)))


# ----------------------------------------------------------------------------- a tiny visual run, end to end

TASK = "visual-cube-single-play-singletask-task1-v0"
ONLINE = 8


@pytest.fixture
def short_visual(tmp_path, monkeypatch):
    """A tiny generated visual dataset (2 episodes of 8 steps), every environment's episodes cut to 4 steps
    (evaluation, video, training environments: they are all made through ``make_env``)."""
    import rql.data.loading as loading
    from rql.cli import main
    from rql.errors import RQLError
    from rql.video import select_gl_backend

    try:
        select_gl_backend()  # visual observations are rendered offscreen: EGL, else OSMesa
    except RQLError as e:
        pytest.skip(f"no OpenGL backend renders MuJoCo here: {e}")
    assert main(["data", "generate", "visual-cube-single-play-v0", "--episodes", "2", "--max-steps", "9",
                 "--out", str(tmp_path / "data")]) == 0
    make_env = loading.make_env
    monkeypatch.setattr(loading, "make_env", lambda task, **kw: make_env(task, **{"max_episode_steps": 4, **kw}))
    return tmp_path / "data" / "visual-cube-single-play-v0.npz"


def test_visual_run_fine_tunes_online_and_renders_the_policys_view(short_visual, tmp_path, capsys):
    """``--online-steps`` and ``--video-episodes`` with image observations: the buffer holds single uint8 frames
    of the training environment, the run evaluates, and the videos (training loop, ``rql eval --video``) show
    the video camera with the policy's own 64x64 view, upscaled, to its right."""
    import csv
    import json

    import imageio.v3 as iio

    from rql.checkpoint import Checkpoints
    from rql.cli import main
    from rql.data.loading import make_env
    from rql.online import online_template
    from rql.training import pixels_of_run, restore_agent
    from rql.runner.rundir import load_run_config
    from rql.video import upscale_nearest

    run_dir = tmp_path / "run"
    steps = 2
    assert main(["train", "--agent", "rql", "--task", TASK, "--dataset-path", str(short_visual), "--preset", "small",
                 "--agent.encoder", "impala_debug", "--agent.batch-size", "8", "--agent.horizon", "1",
                 "--agent.actor-hidden-dims", "32", "--agent.value-hidden-dims", "32", "--frame-stack", "3",
                 "--p-aug", "0.5", "--steps", str(steps), "--online-steps", str(ONLINE), "--online-episode-steps", "3",
                 "--eval-every", "0", "--eval-episodes", "1", "--video-episodes", "1", "--log-every", "4",
                 "--save-every", "100", "--no-progress", "--run-dir", str(run_dir)]) == 0
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    last = rows[-1]
    assert int(last["step"]) == steps + ONLINE and int(last["online/env_steps"]) == ONLINE
    assert int(last["online/buffer_size"]) == 2 * 8 + ONLINE and last["eval/success"] != ""
    assert all(np.isfinite(float(r["loss/total"])) for r in rows)

    # the online part of the buffer: one uint8 frame per step (64 * 64 * 3), never the stacked observation
    run, agent_name, agent_cfg, doc = load_run_config(run_dir)
    _, agent, _, _ = restore_agent(run_dir)
    px = pixels_of_run(agent_cfg, run)
    assert px.frame_shape == (64, 64, 3) and px.frame_stack == 3
    ck = Checkpoints(run_dir / "checkpoints")
    buf = ck.restore(steps + ONLINE, online_template(agent, 0, doc["online"]["capacity"], px))["online"]
    ck.close()
    frames = np.asarray(buf["observations"])
    assert frames.dtype == np.uint8 and frames.shape == (ONLINE, 64 * 64 * 3) and int(buf["size"]) == ONLINE
    assert (frames.reshape(ONLINE, -1).std(axis=1) > 5).all()  # rendered frames
    np.testing.assert_array_equal(np.asarray(buf["terminals"]), [0, 0, 1, 0, 0, 1, 0, 1])  # 3-step episodes

    # the training loop's video: each tile the 200x200 camera, then the policy's view
    v = iio.imread(run_dir / "videos" / f"step_{steps + ONLINE}.mp4")
    assert v.shape == (5, 200, 400, 3)  # the reset frame and 4 steps

    # rql eval --video: episode 0 is reset with seed 10000; its first frame's right half is the policy's
    # first observation (its newest frame) upscaled, nearest
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--episodes", "1", "--envs", "1", "--video", "1", "--video-size", "128",
                 "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    v = iio.imread(res["video"])
    assert v.shape == (5, 128, 256, 3) and res["length"] == 4
    env = make_env(TASK, frame_stack=3)
    obs, _ = env.reset(seed=10_000)
    env.close()
    view = upscale_nearest(obs.reshape(64, 64, 9)[..., -3:], 128).astype(np.float32)
    right, left = v[0, :, 128:].astype(np.float32), v[0, :, :128].astype(np.float32)
    assert np.abs(right - view).mean() < 4.0  # the same image, up to the video codec
    assert np.abs(left - view).mean() > 4 * np.abs(right - view).mean()  # the camera frame is another image
