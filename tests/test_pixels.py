"""Pixel observations: uint8 kept through the pipeline, frame stacking at episode starts (data and
environments alike), random-shift augmentation (deterministic by key, inside the pad), the image
encoder in every agent's networks, and one line for each bad input."""

from __future__ import annotations

import tracemalloc

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import build_config, make_agent
from rql.data.dataset import validate
from rql.data.device import sample_windows, suite_batch_at, to_device, rql_batch_at
from rql.errors import RQLError
from rql.pixels import FrameStacker, Pixels, augment, pixels_for, shift

H = W = 8


def numbered_frames(n: int, c: int = 3) -> np.ndarray:
    """(n, H, W, c) uint8 frames whose every pixel is the step index (mod 256)."""
    return np.broadcast_to((np.arange(n) % 256).astype(np.uint8)[:, None, None, None], (n, H, W, c)).copy()


def image_arrays(lengths, c: int = 3, next_obs: bool = False) -> dict:
    n = int(sum(lengths))
    terminals = np.zeros(n, bool)
    terminals[np.cumsum(lengths) - 1] = True
    out = {"observations": numbered_frames(n, c), "actions": np.zeros((n, 2), np.float32),
           "rewards": np.zeros(n, np.float32), "terminals": terminals}
    if next_obs:  # the successor of step i: frame value 200 + i
        out["next_observations"] = np.broadcast_to((200 + np.arange(n)).astype(np.uint8)[:, None, None, None],
                                                   (n, H, W, c)).copy()
    return out


def frame_values(flat_obs: np.ndarray, k: int, c: int = 3) -> np.ndarray:
    """The step index shown by each of the ``k`` stacked frames of flat observations (..., H*W*k*c)."""
    x = np.asarray(flat_obs).reshape(*flat_obs.shape[:-1], H, W, k, c)
    return x[..., 0, 0, :, 0]


# ----------------------------------------------------------------------------- uint8 survives


def test_uint8_survives_without_a_float_copy():
    """A synthetic 20k-frame 64x64x3 set: validation keeps the caller's uint8 array (no copy at all),
    the device data is uint8, a sampled batch is uint8, and the host never holds a float copy."""
    n = 20_000
    rng = np.random.default_rng(0)
    obs = np.empty((n, 64, 64, 3), np.uint8)
    obs[:] = (np.arange(n) % 251).astype(np.uint8)[:, None, None, None]
    terminals = np.zeros(n, bool)
    terminals[999::1000] = True
    arrays = {"observations": obs, "actions": rng.uniform(-1, 1, (n, 5)).astype(np.float32),
              "rewards": np.zeros(n, np.float32), "terminals": terminals}
    tracemalloc.start()
    ds = validate(arrays, "synthetic", horizon=1)
    data = to_device(ds)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert ds.observations.dtype == np.uint8 and ds.observations is obs
    assert ds.image_shape == (64, 64, 3) and ds.obs_dim == 64 * 64 * 3
    assert data.observations.dtype == jnp.uint8 and data.observations.shape == (n, 64 * 64 * 3)
    assert data.end_next_observations.dtype == jnp.uint8
    # The frames are 246 MB; a float32 copy would be 983 MB. Host allocations stay far below one frame copy.
    assert peak < 0.25 * obs.nbytes, peak
    px = Pixels((64, 64, 3), frame_stack=3)
    batch = sample_windows(data, jax.random.PRNGKey(0), 4, 1, "suite", px)
    assert batch.observations.dtype == jnp.uint8 and batch.observations.shape == (4, 2, 64 * 64 * 9)


# ----------------------------------------------------------------------------- frame stacking


def test_frame_stacking_repeats_the_first_frame_at_episode_starts():
    """FQL's rule: frames t-K+1..t, an index before the episode's first step replaced by that step."""
    ds = validate(image_arrays([5, 4], next_obs=True), "stack", horizon=1)
    data = to_device(ds)
    px = Pixels((H, W, 3), frame_stack=3)
    # rql windows starting at each step: index 0 is step s, index 1 the next step (clamped to the end)
    b = rql_batch_at(data, jnp.arange(9, dtype=jnp.int32), 1, px)
    got = frame_values(np.asarray(b.observations[:, 0]), 3)
    want = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4],  # episode 1
                     [5, 5, 5], [5, 5, 6], [5, 6, 7], [6, 7, 8]])  # episode 2 never reaches back into episode 1
    np.testing.assert_array_equal(got, want)
    # suite windows: the successor of an episode's last step is frames t-1, t and the stored successor frame
    s = suite_batch_at(data, jnp.array([4, 8, 3], jnp.int32), 1, px)
    succ = frame_values(np.asarray(s.observations[:, 1]), 3)
    np.testing.assert_array_equal(succ, [[3, 4, 204], [7, 8, 208], [2, 3, 4]])


def test_environment_stacking_matches_the_data():
    """Replaying an episode's frames through the environments' stacker gives the data's stacked observations."""
    ds = validate(image_arrays([6]), "stack", horizon=1)
    data = to_device(ds)
    px = Pixels((H, W, 3), frame_stack=3)
    data_obs = np.asarray(rql_batch_at(data, jnp.arange(6, dtype=jnp.int32), 1, px).observations[:, 0])
    stacker = FrameStacker(3)
    env_obs = [stacker.reset(ds.observations[0])] + [stacker.step(f) for f in ds.observations[1:]]
    np.testing.assert_array_equal(np.stack(env_obs), data_obs)
    assert env_obs[0].dtype == np.uint8


# ----------------------------------------------------------------------------- augmentation


def test_shift_stays_within_the_pad_and_repeats_with_the_key():
    rng = np.random.default_rng(1)
    obs = rng.integers(0, 256, (6, 2, H * W * 3), dtype=np.uint8)
    offsets = jnp.array([[0, 0], [6, 6], [3, 3], [0, 6], [2, 5], [6, 1]])
    out = np.asarray(shift(jnp.asarray(obs), offsets, (H, W, 3), 3))
    assert out.dtype == np.uint8
    imgs = obs.reshape(6, 2, H, W, 3)
    for i, (dy, dx) in enumerate(np.asarray(offsets)):
        padded = np.pad(imgs[i], ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
        np.testing.assert_array_equal(out[i].reshape(2, H, W, 3), padded[:, dy:dy + H, dx:dx + W])
    np.testing.assert_array_equal(out[2], obs[2])  # offset (pad, pad) is no shift

    from rql.agents.base import Batch

    px = Pixels((H, W, 3), p_aug=1.0)
    z = jnp.zeros((16, 2))
    batch = Batch(jnp.asarray(rng.integers(0, 256, (16, 2, H * W * 3), dtype=np.uint8)), jnp.zeros((16, 2, 2)), z, z, z)
    a = np.asarray(augment(batch, jax.random.PRNGKey(3), px).observations)
    b = np.asarray(augment(batch, jax.random.PRNGKey(3), px).observations)
    c = np.asarray(augment(batch, jax.random.PRNGKey(4), px).observations)
    np.testing.assert_array_equal(a, b)  # same key, same shifted batch
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8
    src = np.asarray(batch.observations).reshape(16, 2, H, W, 3)
    for i in range(16):  # every window is one crop (both steps alike) of its edge-padded frames, inside the pad
        padded = np.pad(src[i], ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
        crops = [(dy, dx) for dy in range(7) for dx in range(7)
                 if np.array_equal(a[i].reshape(2, H, W, 3), padded[:, dy:dy + H, dx:dx + W])]
        assert crops, i
    never = Pixels((H, W, 3), p_aug=0.0)
    np.testing.assert_array_equal(np.asarray(augment(batch, jax.random.PRNGKey(3), never).observations),
                                  np.asarray(batch.observations))


# ----------------------------------------------------------------------------- the encoder in every agent


@pytest.mark.parametrize("name", ["rql"])
def test_every_network_has_its_own_encoder_and_uint8_obs_act(name):
    cfg = build_config(name, None, "small", {"encoder": "impala_debug", "image_shape": (H, W, 6), "batch_size": 4,
                                             "horizon": 1})
    agent = make_agent(name, cfg, H * W * 6, 2)
    state = agent.init(jax.random.PRNGKey(0))
    nets = state["params"]
    assert all("encoder" in p and "net" in p for p in nets.values()), sorted(nets)
    enc = [np.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(p["encoder"])]) for p in nets.values()]
    assert enc[0].shape == enc[1].shape and not np.allclose(enc[0], enc[1])  # separate encoders, own initialisation
    obs = jnp.asarray(np.random.default_rng(0).integers(0, 256, (3, H * W * 6)), jnp.uint8)
    a = agent.act(state, obs, jax.random.PRNGKey(1))
    assert a.shape == (3, 1, 2) and bool(jnp.all(jnp.abs(a) <= 1))


# ----------------------------------------------------------------------------- bad input: one line each


def test_bad_image_input_is_one_clear_error():
    bad = image_arrays([10])
    bad["observations"] = bad["observations"].astype(np.float32)
    with pytest.raises(RQLError, match="must be uint8"):
        validate(bad, "f.npz")
    bad["observations"] = np.zeros((10, 8, 8), np.uint8)
    with pytest.raises(RQLError, match=r"expected \(N, obs_dim\) state vectors or \(N, H, W, C\) uint8 images"):
        validate(bad, "f.npz")
    with pytest.raises(RQLError, match="--frame-stack 3 stacks image frames"):
        pixels_for(None, frame_stack=3)
    with pytest.raises(RQLError, match="flat state vectors; use --agent.encoder none"):
        pixels_for(None, encoder="impala_small")
    with pytest.raises(RQLError, match="give an image encoder"):
        pixels_for((64, 64, 3), encoder="none")


def test_bad_input_from_the_command_line_is_one_line(tmp_path, capsys):
    from rql.cli import main

    rng = np.random.default_rng(0)
    n = 40
    state = {"observations": rng.normal(size=(n, 4)).astype(np.float32), "actions": np.zeros((n, 2), np.float32),
             "rewards": np.zeros(n, np.float32), "terminals": np.arange(n) % 20 == 19}
    np.savez(tmp_path / "state.npz", **state)
    floats = dict(image_arrays([20, 20]))
    floats["observations"] = floats["observations"].astype(np.float32)
    np.savez(tmp_path / "float_images.npz", **floats)
    common = ["train", "--agent", "fql", "--preset", "small", "--steps", "2", "--eval-episodes", "0", "--no-progress"]
    cases = [
        (["--dataset-path", str(tmp_path / "state.npz"), "--frame-stack", "3"], "--frame-stack 3 stacks image frames"),
        (["--dataset-path", str(tmp_path / "state.npz"), "--agent.encoder", "impala_small"], "use --agent.encoder none"),
        (["--dataset-path", str(tmp_path / "float_images.npz"), "--agent.encoder", "impala_small"], "must be uint8"),
    ]
    for i, (extra, message) in enumerate(cases):
        code = main([*common, "--run-dir", str(tmp_path / f"run{i}"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, (extra, err)
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


# ----------------------------------------------------------------------------- frames kept on the host


def test_frames_on_the_host_train_bit_equal_to_frames_on_the_device():
    """Each block's windows gathered on the host (``--frame-placement host``) give the very same updates as
    the frames on the device: FQL on the suite's windows (episode ends inside a window, stored successors),
    a group of two seeds, stacking and shifts included. (The ``rql`` windows: the kill -9 test of
    tests/test_pixels_train.py resumes a host-placed run to the device-placed run's parameters.)"""
    name, seeds = "fql", [0, 1]
    from rql.data.host_frames import HostFrames, without_frames
    from rql.learner import init_group_state, make_group_block, windows_of

    ds = validate(image_arrays([7, 3, 12, 9, 5], next_obs=True), "synthetic", horizon=2)
    px = pixels_for(ds.image_shape, 3, 0.5, "impala_debug")
    cfg = build_config(name, None, "small", {"encoder": "impala_debug", "image_shape": px.image_shape,
                                             "batch_size": 4, "horizon": 2})
    agent = make_agent(name, cfg, px.obs_dim, 2)
    on_device = make_group_block(agent, 2, 4, 3, px)
    feed = HostFrames(ds, make_group_block(agent, 2, 4, 3, px, host=True), 4, 2, 3, windows_of(agent), 3)
    a, b = init_group_state(agent, seeds), init_group_state(agent, seeds)
    full, light = to_device(ds), without_frames(ds)
    assert light.observations.size == 0  # no frame on the device
    try:
        for _ in range(3):
            a, ma = on_device(a, full)
            b, mb = feed(b, light)
        # a state that is not the last block's output (a restored checkpoint) restarts the chain of keys
        c = jax.tree_util.tree_map(jnp.copy, b)
        b2, _ = feed(c, light)
        a, _ = on_device(a, full)
    finally:
        feed.close()
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert float(ma[next(iter(ma))][0]) == float(mb[next(iter(mb))][0])
    if name == "fql":
        assert float(mb["data/valid_fraction"][0]) < 1.0  # some windows did cross an episode end


def test_an_exported_pixel_policy_reads_uint8_images(tmp_path):
    """``rql export`` of an agent on images: the file's program takes uint8 (flat or (B, H, W, K*C)) and acts
    exactly as the agent; float observations are one clear line (a [0, 1] float image would be misread)."""
    from rql.exported import load_exported
    from rql.exporting import policy_file

    cfg = build_config("fql", None, "small", {"encoder": "impala_debug", "image_shape": (H, W, 6), "batch_size": 4,
                                              "horizon": 2})
    agent = make_agent("fql", cfg, H * W * 6, 2)
    state = agent.init(jax.random.PRNGKey(0))
    data, header = policy_file(agent, state)
    assert header["observation_dtype"] == "uint8" and header["image_shape"] == [H, W, 6]
    (tmp_path / "p.rqlx").write_bytes(data)
    policy = load_exported(tmp_path / "p.rqlx")
    obs = np.random.default_rng(0).integers(0, 256, (3, H, W, 6)).astype(np.uint8)
    key = jax.random.PRNGKey(4)
    want = np.asarray(jax.jit(agent.act)(state, jnp.asarray(obs.reshape(3, -1)), key))  # as training's evaluation acts
    np.testing.assert_array_equal(np.asarray(policy(obs, key)), want)
    np.testing.assert_array_equal(np.asarray(policy(obs.reshape(3, -1), key)), want)
    with pytest.raises(RQLError, match="reads uint8 images"):
        policy(obs.astype(np.float32) / 255, key)


def test_a_visual_task_takes_its_state_tasks_settings():
    for name in ("rql", "fql"):
        state = build_config(name, "cube-double-play-singletask-task2-v0")
        visual = build_config(name, "visual-cube-double-play-singletask-task2-v0")
        assert visual == state and state.horizon == 5
