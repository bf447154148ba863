"""Tests for rql.data.info: numbers from hand-built files, single-task relabelling, safe loading."""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*(DISPLAY|precision lowered).*")

from rql.data.info import dataset_info, format_info, read_npz  # noqa: E402
from rql.errors import RQLError  # noqa: E402


def _hand_built(tmp_path, **extra):
    """Two episodes (3 and 4 steps), obs dim 3, action dim 2."""
    obs = np.arange(21, dtype=np.float32).reshape(7, 3)
    actions = np.array(
        [[-0.5, 0.1], [0.2, 0.3], [0.9, -0.25], [0.0, 0.0], [-1.0, 0.5], [0.3, 0.75], [0.1, -0.8]], dtype=np.float32
    )
    terminals = np.array([0, 0, 1, 0, 0, 0, 1], dtype=bool)
    arrays = dict(observations=obs, actions=actions, terminals=terminals, **extra)
    path = tmp_path / "hand.npz"
    np.savez(path, **arrays)
    return path


def test_numbers_match_hand_built_file(tmp_path):
    rewards = np.array([0, 1, 2, 3, 4, 5, 6], dtype=np.float32)
    path = _hand_built(tmp_path, rewards=rewards)
    info = dataset_info(str(path))
    assert info["rows"] == 7
    assert info["episodes"] == 2
    assert info["transitions"] == 5  # no next_observations: the last step of each episode has no successor
    assert info["episode_length"] == {"min": 3, "max": 4, "mean": 3.5}
    assert info["obs_dim"] == 3 and info["action_dim"] == 2
    assert info["action_min"] == pytest.approx(-1.0) and info["action_max"] == pytest.approx(0.9)
    assert info["action_min_per_dim"] == pytest.approx([-1.0, -0.8])
    assert info["action_max_per_dim"] == pytest.approx([0.9, 0.75])
    assert info["rewards"]["mean"] == pytest.approx(3.0) and info["rewards"]["max"] == pytest.approx(6.0)
    assert info["arrays"]["observations"] == {"shape": [7, 3], "dtype": "float32"}
    back = json.loads(json.dumps(info))
    assert back == info
    text = format_info(info)
    assert "episodes       2" in text and "transitions    5" in text and "[-1, 0.9]" in text


def test_next_observations_and_trailing_episode(tmp_path):
    obs = np.zeros((5, 2), np.float32)
    arrays = dict(
        observations=obs,
        next_observations=obs + 1,
        actions=np.zeros((5, 1), np.float32),
        terminals=np.array([0, 1, 0, 0, 0], np.float32),  # the last episode is cut off by the file's end
    )
    np.savez(tmp_path / "x.npz", **arrays)
    info = dataset_info(str(tmp_path / "x.npz"))
    assert info["episodes"] == 2 and info["transitions"] == 5
    assert info["episode_length"] == {"min": 2, "max": 3, "mean": 2.5}


def test_single_task_statistics_match_by_hand(tmp_path):
    import ogbench

    task = "pointmaze-medium-navigate-singletask-task1-v0"
    env = ogbench.make_env_and_datasets(task, env_only=True)
    env.reset()
    goal = np.asarray(env.unwrapped.cur_goal_xy, dtype=np.float32)
    env.close()
    far = goal + np.float32(8.0)
    # Episode 1: at the goal on steps 2 and 3 (and 4, its last step, which forms no transition).
    # Episode 2: never at the goal.
    qpos = np.stack([far, far, goal, goal, goal, far, far, far, far, far]).astype(np.float32)
    terminals = np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 1], dtype=bool)
    arrays = dict(
        observations=qpos.copy(),
        actions=np.zeros((10, 2), np.float32),
        terminals=terminals,
        qpos=qpos,
        qvel=np.zeros_like(qpos),
    )
    np.savez(tmp_path / "pm.npz", **arrays)
    info = dataset_info(str(tmp_path / "pm.npz"), task=task)
    t = info["task"]
    assert info["transitions"] == 8
    assert t["success_steps"] == 2
    assert t["success_fraction"] == pytest.approx(2 / 8)
    assert t["success_episodes"] == 1
    assert t["rewards"]["mean"] == pytest.approx(-6 / 8)
    assert t["rewards"]["max"] == 0.0 and t["rewards"]["min"] == -1.0
    json.dumps(info)
    assert "episodes reaching success  1 of 2" in format_info(info)


def _one_line_error(path, task=None) -> str:
    with pytest.raises(RQLError) as exc:
        dataset_info(str(path), task=task)
    msg = str(exc.value)
    assert msg and "\n" not in msg
    return msg


def test_missing_and_folder(tmp_path):
    assert "no such file" in _one_line_error(tmp_path / "nope.npz")
    assert "folder" in _one_line_error(tmp_path)


def test_truncated_file(tmp_path):
    path = _hand_built(tmp_path)
    data = path.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    msg = _one_line_error(cut)
    assert "corrupt or truncated" in msg and str(cut) in msg


def test_random_bytes(tmp_path):
    bad = tmp_path / "noise.npz"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "not an .npz archive" in _one_line_error(bad)
    # Random bytes behind a zip signature are caught too.
    bad.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "corrupt or truncated" in _one_line_error(bad)


def test_corrupt_member_crc(tmp_path):
    import zipfile

    path = tmp_path / "crc.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        with zf.open("observations.npy", "w") as f:
            np.lib.format.write_array(f, np.ones((4, 3), np.float32))
    data = bytearray(path.read_bytes())
    idx = data.find(b"\x00\x00\x80\x3f")  # a float32 1.0 inside the stored array
    data[idx + 3] = 0x40
    path.write_bytes(bytes(data))
    assert "corrupt or truncated" in _one_line_error(path)


def test_wrong_shapes_and_keys(tmp_path):
    np.savez(tmp_path / "a.npz", observations=np.zeros(5, np.float32), actions=np.zeros((5, 2)), terminals=np.zeros(5))
    assert "'observations' has shape (5,)" in _one_line_error(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", observations=np.zeros((5, 2)), actions=np.zeros((4, 2)), terminals=np.zeros(5))
    assert "'actions' has shape (4, 2)" in _one_line_error(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", observations=np.zeros((5, 2)), actions=np.zeros((5, 2)))
    assert "missing array(s) terminals" in _one_line_error(tmp_path / "c.npz")
    np.save(tmp_path / "d.npy", np.zeros((5, 2)))
    assert "single .npy" in _one_line_error(tmp_path / "d.npy")


def test_nan(tmp_path):
    obs = np.zeros((5, 2), np.float32)
    obs[3, 1] = np.nan
    np.savez(tmp_path / "n.npz", observations=obs, actions=np.zeros((5, 2)), terminals=np.zeros(5))
    assert "1 NaN" in _one_line_error(tmp_path / "n.npz")


class _Trap:
    """Unpickling this creates a marker file, so the test can tell whether anything was unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_pickle_is_never_loaded(tmp_path):
    marker = tmp_path / "unpickled"
    arr = np.empty(5, dtype=object)
    arr[:] = [_Trap(marker)] * 5
    np.savez(tmp_path / "p.npz", observations=np.zeros((5, 2)), actions=np.zeros((5, 2)), terminals=arr)
    msg = _one_line_error(tmp_path / "p.npz")
    assert "pickled" in msg and "'terminals'" in msg
    assert not marker.exists()
    # A bare pickle file is refused as well.
    import pickle

    (tmp_path / "raw.npz").write_bytes(pickle.dumps(_Trap(marker)))
    assert "not an .npz archive" in _one_line_error(tmp_path / "raw.npz")
    assert not marker.exists()


def test_task_errors(tmp_path):
    path = _hand_built(tmp_path)
    assert "single-task" in _one_line_error(path, task="cube-single-play-v0")
    assert "qpos" in _one_line_error(path, task="cube-single-play-singletask-task1-v0")
    qpos = np.zeros((7, 2), np.float32)
    path2 = _hand_built(tmp_path, qpos=qpos, qvel=qpos)
    assert "expects (2,)" in _one_line_error(path2, task="pointmaze-medium-navigate-singletask-task1-v0")
    assert "unknown OGBench task" in _one_line_error(path2, task="nothing-play-singletask-task1-v0")


def test_read_npz_returns_all_arrays(tmp_path):
    path = _hand_built(tmp_path, qpos=np.ones((7, 4), np.float32))
    arrays = read_npz(path)
    assert sorted(arrays) == ["actions", "observations", "qpos", "terminals"]
    assert arrays["qpos"].shape == (7, 4)
