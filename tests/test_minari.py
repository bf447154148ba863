"""Tests for rql.data.minari_io with small Minari datasets built locally by minari.DataCollector."""

from __future__ import annotations

import os

import gymnasium as gym
import minari
import numpy as np
import pytest

from rql.data.dataset import validate
from rql.data.minari_io import load_minari
from rql.errors import RQLError


MAX_STEPS = 6
TERMINATE_AT = 4


class TinyEnv(gym.Env):
    """Even-numbered episodes terminate after 4 steps; odd ones run into the 6-step time limit.

    The observation is (step, episode, 0.5) and the reward is 10 * episode + step, so every
    flattened value can be checked.
    """

    def __init__(self, dict_obs: bool = False):
        box = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.observation_space = gym.spaces.Dict({"state": box}) if dict_obs else box
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.dict_obs = dict_obs
        self.episode = -1
        self.t = 0

    def _ob(self):
        ob = np.array([self.t, self.episode, 0.5], dtype=np.float32)
        return {"state": ob} if self.dict_obs else ob

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._ob(), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 0 and self.t == TERMINATE_AT
        return self._ob(), float(10 * self.episode + self.t), terminated, False, {}


def _make_dataset(root, dataset_id, episodes=4, dict_obs=False):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        env = minari.DataCollector(gym.wrappers.TimeLimit(TinyEnv(dict_obs=dict_obs), MAX_STEPS))
        env.action_space.seed(0)
        for ep in range(episodes):
            env.reset(seed=ep)
            done = False
            while not done:
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                done = terminated or truncated
        env.create_dataset(dataset_id, algorithm_name="random")
        env.close()
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("minari")
    _make_dataset(path, "rqltest/tiny-v0")
    return path


def test_flattening_terminals_and_masks(root, monkeypatch):
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)
    arrays = load_minari("rqltest/tiny-v0", data_path=str(root))
    assert os.environ.get("MINARI_DATASETS_PATH") is None  # restored after the call
    lengths = [TERMINATE_AT, MAX_STEPS, TERMINATE_AT, MAX_STEPS]  # terminated, truncated, ...
    n = sum(lengths)
    assert arrays["observations"].shape == (n, 3) and arrays["observations"].dtype == np.float32
    assert arrays["actions"].shape == (n, 2) and arrays["actions"].dtype == np.float32
    for k in ("rewards", "terminals", "masks"):
        assert arrays[k].shape == (n,) and arrays[k].dtype == np.float32

    ends = np.cumsum(lengths) - 1
    expected_terminals = np.zeros(n, np.float32)
    expected_terminals[ends] = 1.0
    np.testing.assert_array_equal(arrays["terminals"], expected_terminals)
    expected_masks = np.ones(n, np.float32)
    expected_masks[ends[[0, 2]]] = 0.0  # only the terminated episodes; truncations keep mask 1
    np.testing.assert_array_equal(arrays["masks"], expected_masks)

    # Each step's own observation (steps 0..T-1), never the final one.
    steps = np.concatenate([np.arange(L) for L in lengths]).astype(np.float32)
    episode = np.concatenate([np.full(L, i) for i, L in enumerate(lengths)]).astype(np.float32)
    np.testing.assert_array_equal(arrays["observations"][:, 0], steps)
    np.testing.assert_array_equal(arrays["observations"][:, 1], episode)
    np.testing.assert_array_equal(arrays["rewards"], 10 * episode + steps + 1)
    assert np.all(np.abs(arrays["actions"]) <= 1) and np.std(arrays["actions"]) > 0.1

    ds = validate(arrays, "minari:rqltest/tiny-v0")
    assert ds.num_episodes == 4
    np.testing.assert_array_equal(ds.masks, expected_masks)
    # Each episode's final observation is kept once, as the successor of its last step (step T).
    np.testing.assert_array_equal(ds.end_next_observations[:, 0], np.asarray(lengths, np.float32))
    np.testing.assert_array_equal(ds.end_next_observations[:, 1], np.arange(4, dtype=np.float32))


def test_env_var_is_honoured_without_data_path(root, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    arrays = load_minari("rqltest/tiny-v0")
    assert arrays["observations"].shape[0] == 2 * TERMINATE_AT + 2 * MAX_STEPS


def test_not_found(root, tmp_path):
    with pytest.raises(RQLError) as exc:
        load_minari("rqltest/absent-v0", data_path=str(root))
    msg = str(exc.value)
    assert "not found" in msg and str(root) in msg and "\n" not in msg
    with pytest.raises(RQLError) as exc:
        load_minari("rqltest/tiny-v0", data_path=str(tmp_path / "no-such-folder"))
    assert "not a folder" in str(exc.value)


def test_dict_observations_are_refused(tmp_path):
    _make_dataset(tmp_path, "rqltest/dict-v0", episodes=2, dict_obs=True)
    with pytest.raises(RQLError) as exc:
        load_minari("rqltest/dict-v0", data_path=str(tmp_path))
    msg = str(exc.value)
    assert "Dict observations, which are not supported" in msg and "\n" not in msg
