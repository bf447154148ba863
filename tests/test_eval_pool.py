"""One pool of evaluation environments for every seed of a group, on the real OGBench environments
(episodes cut short with ``max_episode_steps``): a seed's evaluation does not depend on the seeds
it shares the pool with, environments share one compiled MuJoCo model without any change to the
episodes, and no environment is made that a run does not use."""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest

from rql.agents import build_config, make_agent
from rql.data.loading import make_env
from rql.evaluation import (MODEL_FIELDS_CHANGED_BY_OGBENCH, EnvPool, SharedModelEnv, evaluate_group,
                            make_group_policy, run_episodes)
from rql.learner import init_group_state, member_state

CUBE = "cube-single-play-singletask-task2-v0"


def short_env(task, steps=20):
    return make_env(task, max_episode_steps=steps, disable_env_checker=True)


LOGS: dict[str, dict] = {}


class Logged:
    """Forwards an environment and keeps each episode's observations in ``LOGS[log][reset seed]``
    (by name: the pool's environments are copies of the first)."""

    def __init__(self, env, log: str):
        self.env, self.log, self.seed = env, log, None

    def __getattr__(self, name):
        if "env" not in self.__dict__:  # being copied
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, seed=None, **kw):
        o, info = self.env.reset(seed=seed, **kw)
        self.seed = seed
        LOGS.setdefault(self.log, {})[seed] = [o]
        return o, info

    def step(self, action):
        out = self.env.step(action)
        LOGS[self.log][self.seed].append(out[0])
        return out


@pytest.fixture(scope="module")
def agent_and_states():
    cfg = build_config("rql", CUBE, None, {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16),
                                           "flow_steps": 2})
    env = short_env(CUBE)
    agent = make_agent("rql", cfg, env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    seeds = [0, 1, 2, 3]
    return agent, init_group_state(agent, seeds)["agent"], seeds


def test_a_seed_evaluates_alike_alone_and_in_a_group_of_four(agent_and_states):
    agent, states, seeds = agent_and_states
    policy = make_group_policy(agent)
    keys = [jax.random.fold_in(jax.random.PRNGKey(s + 1), 7) for s in seeds]
    resets = [s * 100_003 for s in seeds]
    k = 2
    mine = jax.tree.map(lambda x: x[k:k + 1], states)
    pool = EnvPool(CUBE, 3, make=lambda t: Logged(short_env(t), "group"))
    try:
        group = run_episodes(policy, states, pool, 2, keys, resets)
        assert len(pool.envs) == 3 and all(isinstance(e, SharedModelEnv) for e in pool.envs)
        for env in pool.envs:
            env.env.log = "alone"
        alone = run_episodes(policy, mine, pool, 2, [keys[k]], [resets[k]])
    finally:
        pool.close()
    assert [len(r) for r in group] == [2] * 4
    assert alone[0] == group[k]
    in_group, by_itself, one_env = LOGS["group"], LOGS["alone"], LOGS.setdefault("one", {})
    for i in range(2):  # whole trajectories, not just the summaries
        np.testing.assert_array_equal(np.stack(by_itself[resets[k] + i]), np.stack(in_group[resets[k] + i]))
    # the seeds act differently (the checks above would hold trivially otherwise)
    assert not np.array_equal(in_group[resets[k]][-1][:5], in_group[resets[0]][-1][:5])
    # one separately made environment gives the same episodes too
    one = [Logged(short_env(CUBE), "one")]
    try:
        assert run_episodes(policy, mine, one, 2, [keys[k]], [resets[k]]) == alone
    finally:
        one[0].close()
    for i in range(2):
        np.testing.assert_array_equal(np.stack(one_env[resets[k] + i]), np.stack(in_group[resets[k] + i]))


def test_summaries_and_the_old_list_of_lists_form(agent_and_states):
    agent, states, seeds = agent_and_states
    two = jax.tree.map(lambda x: x[:2], states)
    keys = [jax.random.PRNGKey(s) for s in seeds[:2]]
    envs = [[short_env(CUBE)], [short_env(CUBE)]]
    try:
        res = evaluate_group(make_group_policy(agent), two, envs, 3, keys, [0, 50])
        eps = run_episodes(make_group_policy(agent), two, envs, 3, keys, [0, 50])
    finally:
        for e in envs:
            e[0].close()
    for r, ep in zip(res, eps):
        assert r["episodes"] == 3
        assert r["return"] == pytest.approx(np.mean([e[1] for e in ep]))
        assert r["length"] == 20.0


def test_the_pool_makes_only_the_environments_an_evaluation_uses(agent_and_states):
    agent, states, _ = agent_and_states
    one = jax.tree.map(lambda x: x[:1], states)
    pool = EnvPool(CUBE, 10, make=short_env)
    try:
        assert run_episodes(make_group_policy(agent), one, pool, 0, [jax.random.PRNGKey(0)], [0]) == [[]]
        assert pool.envs == []
        run_episodes(make_group_policy(agent), one, pool, 2, [jax.random.PRNGKey(0)], [0])
        assert len(pool.envs) == 2
    finally:
        pool.close()


def _model_arrays(model) -> dict[str, np.ndarray]:
    out = {}
    for name in dir(model):
        if name.startswith("_"):
            continue
        try:
            v = getattr(model, name)
        except Exception:  # noqa: BLE001
            continue
        if isinstance(v, np.ndarray):
            out[name] = v.copy()
    return out


def test_environments_sharing_one_model_run_exactly_as_separately_built_ones():
    """Scene in data-collection mode: every reset draws new button states, so OGBench writes a
    different drawer/window damping and colours into each environment's model; each shared
    environment must see its own, and no other model field may change."""

    def make(task):
        import ogbench  # noqa: F401  (registers the environments)

        return gymnasium.make("scene-v0", mode="data_collection", max_episode_steps=15,
                              disable_env_checker=True)

    shared = EnvPool("scene", 2, make=make)
    separate = [make(None), make(None)]
    try:
        envs = shared.take(2)
        assert isinstance(envs[1], SharedModelEnv)
        rng = np.random.default_rng(0)
        dampings = set()
        for episode in range(3):
            for i in range(2):
                a, _ = envs[i].reset(seed=10 * episode + i)
                b, _ = separate[i].reset(seed=10 * episode + i)
                np.testing.assert_array_equal(a, b)
            for _ in range(15):
                for i in range(2):
                    act = rng.uniform(-1, 1, 5)
                    out_a, out_b = envs[i].step(act), separate[i].step(act)
                    np.testing.assert_array_equal(out_a[0], out_b[0])
                    assert out_a[1:4] == out_b[1:4]
            for i in range(2):
                envs[i]._load()  # env i's view of the shared model
                mine, theirs = _model_arrays(envs[i].unwrapped._model), _model_arrays(separate[i].unwrapped._model)
                assert mine.keys() == theirs.keys()
                for name in mine:
                    np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
                dampings.add(tuple(mine["dof_damping"]))
        assert len(dampings) > 1  # the environments did need models that differ
        assert envs[0].unwrapped._model is envs[1].unwrapped._model
        assert envs[0].unwrapped._data is not envs[1].unwrapped._data
        assert set(MODEL_FIELDS_CHANGED_BY_OGBENCH) <= set(mine)
    finally:
        shared.close()
        for e in separate:
            e.close()


def test_a_seed_of_a_group_is_a_member_state(agent_and_states):
    """The pool is fed the group's stacked states: member k's slice is what acts for seed k."""
    agent, states, _ = agent_and_states
    k = 1
    one = member_state(states, k)
    env = short_env(CUBE)
    try:
        obs, _ = env.reset(seed=3)
    finally:
        env.close()
    key = jax.random.PRNGKey(5)
    row = make_group_policy(agent)(states, np.array([k]), obs[None].astype(np.float32), jax.numpy.stack([key] * 4),
                                   np.array([0]), np.array([0]))
    direct = agent.act(one, obs[None].astype(np.float32), jax.random.fold_in(jax.random.fold_in(key, 0), 0))
    np.testing.assert_allclose(np.asarray(row), np.asarray(direct), rtol=1e-5, atol=1e-6)


def test_an_evaluation_split_into_episode_ranges_runs_the_episodes_of_one(agent_and_states):
    """``first_episode`` (rql eval --first-episode, --workers): ranges [0, 2) and [2, 3) are episodes
    0, 1 and 2 of one evaluation, reset seeds and noise alike."""
    agent, states, _ = agent_and_states
    one = jax.tree.map(lambda x: x[:1], states)
    policy, key = make_group_policy(agent), [jax.random.PRNGKey(3)]
    envs = [Logged(short_env(CUBE), "whole")]
    try:
        whole = run_episodes(policy, one, envs, 3, key, [40])
        envs[0].log = "parts"
        parts = run_episodes(policy, one, envs, 2, key, [40]) + run_episodes(policy, one, envs, 1, key, [40],
                                                                            first_episode=2)
    finally:
        envs[0].close()
    assert [e for p in parts for e in p] == whole[0]
    assert sorted(LOGS["parts"]) == sorted(LOGS["whole"]) == [40, 41, 42]
    for s in (40, 41, 42):
        np.testing.assert_array_equal(np.stack(LOGS["parts"][s]), np.stack(LOGS["whole"][s]))
