"""The lean evaluation step (:mod:`rql.lean_ogbench`) against OGBench's own, on real environments of
each family: the same observations, rewards, end flags, success, simulator state and controls,
bit for bit, step after step over whole episodes (with buttons pressed in scene and puzzle)."""

from __future__ import annotations

import gymnasium
import jax
import numpy as np
import pytest

from rql import lean_ogbench
from rql.agents import build_config, make_agent
from rql.data.loading import make_env
from rql.evaluation import EnvPool, make_group_policy, run_episodes
from rql.learner import init_group_state

# task, episodes, episode length (cut short where a whole episode is not needed)
CASES = [
    ("cube-single-play-singletask-task2-v0", 2, 200),
    ("cube-double-play-singletask-task1-v0", 1, 150),
    ("scene-play-singletask-task1-v0", 2, None),
    ("puzzle-3x3-play-singletask-task1-v0", 2, None),
]


def _actions(rng, n: int, dtype) -> np.ndarray:
    """Sticky random actions that travel far enough to press buttons, with exact zeros (the
    rotation's small-angle branch) and values past [-1, 1] (the workspace and yaw clips)."""
    out, a = [], rng.uniform(-1, 1, 5)
    for _ in range(n):
        u = rng.uniform()
        if u < 0.15:
            a = rng.uniform(-1, 1, 5)
        elif u < 0.18:
            a = np.zeros(5)
        elif u < 0.21:
            a = rng.uniform(-1.6, 1.6, 5)
        out.append(a)
    return np.asarray(out, dtype=dtype)


class _Presser:
    """Drives the effector onto a button, then lets go (random actions alone press none in scene
    with MuJoCo 4.0.1): above the button's top, down past it until the button state changes, up.
    Reads the first environment's simulator; both environments get the same actions."""

    def __init__(self, env, button: int = 0, max_steps: int = 150):
        self.u, self.button, self.steps, self.max_steps = env.unwrapped, button, 0, max_steps
        self.start = self.u._cur_button_states.copy()

    @property
    def done(self) -> bool:
        return self.steps >= self.max_steps or bool(np.any(self.u._cur_button_states != self.start))

    def action(self, dtype) -> np.ndarray:
        self.steps += 1
        top = self.u._data.site_xpos[self.u._button_site_ids[self.button]]
        eff = self.u._data.site_xpos[self.u._pinch_site_id]
        above = top + np.array([0.0, 0.0, 0.06])
        target = above if np.linalg.norm(above[:2] - eff[:2]) > 0.02 else top - np.array([0.0, 0.0, 0.03])
        a = np.zeros(5)
        a[:3] = np.clip((target - eff) * 8.0, -1.0, 1.0)
        a[4] = 1.0
        return a.astype(dtype)


needs_mirrored = pytest.mark.skipif(not lean_ogbench.mirrors_installed_ogbench(),
                                    reason="the installed OGBench differs from the one the lean hooks mirror: "
                                           "they are not installed (test_install_follows_the_mirrored_code)")


@needs_mirrored
@pytest.mark.parametrize("task,episodes,length", CASES, ids=[c[0].split("-play")[0] for c in CASES])
def test_lean_steps_equal_ogbench_steps(task, episodes, length):
    kwargs = {"disable_env_checker": True, **({"max_episode_steps": length} if length else {})}
    plain, lean = make_env(task, **kwargs), make_env(task, **kwargs)
    try:
        plain.reset(seed=0), lean.reset(seed=0)
        assert lean_ogbench.install(lean) and lean_ogbench.family(lean) == task.split("-")[0]
        rng = np.random.default_rng(7)
        presses = steps = 0
        for ep in range(episodes):
            o1, _ = plain.reset(seed=100 + ep)
            o2, _ = lean.reset(seed=100 + ep)
            np.testing.assert_array_equal(o1, o2)
            dtype = np.float32 if ep % 2 else np.float64  # a policy's actions, and plain floats
            press = _Presser(plain) if ep == 0 and hasattr(plain.unwrapped, "_button_site_ids") else None
            for a in _actions(rng, 10_000, dtype):
                if press is not None and not press.done:
                    a = press.action(dtype)
                (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = plain.step(a), lean.step(a)
                steps += 1
                assert o1.dtype == o2.dtype and o1.tobytes() == o2.tobytes(), f"observation differs at step {steps}"
                assert (r1, te1, tr1, i1["success"]) == (r2, te2, tr2, i2["success"])
                u1, u2 = plain.unwrapped, lean.unwrapped
                for field in ("qpos", "qvel", "ctrl", "act"):
                    assert getattr(u1._data, field).tobytes() == getattr(u2._data, field).tobytes(), field
                if hasattr(u1, "_cur_button_states"):
                    np.testing.assert_array_equal(u1._cur_button_states, u2._cur_button_states)
                    presses += int(np.any(u1._cur_button_states != u1._prev_button_states))
                if te1 or tr1:
                    break
            assert te1 or tr1, "the episode did not end"
        assert set(i2) == {"success"} and len(i1) > 10  # what the lean step leaves out
        if "scene" in task or "puzzle" in task:
            assert presses > 0, "no button was pressed: the button path was not exercised"
    finally:
        plain.close(), lean.close()


def test_install_follows_the_mirrored_code(monkeypatch):
    """Against another OGBench (a mirrored function's source changed), nothing is installed."""
    cube = make_env("cube-single-play-singletask-task1-v0", disable_env_checker=True)
    try:
        assert lean_ogbench.mirrors_installed_ogbench() == lean_ogbench.install(cube)
        monkeypatch.setitem(lean_ogbench.MIRRORED, "SO3.exp", "0" * 16)
        lean_ogbench.mirrors_installed_ogbench.cache_clear()
        assert not lean_ogbench.mirrors_installed_ogbench() and lean_ogbench.family(cube) is None
    finally:
        lean_ogbench.mirrors_installed_ogbench.cache_clear()
        cube.close()


@needs_mirrored
def test_install_leaves_other_environments_alone():
    env = gymnasium.make("Pendulum-v1")
    assert lean_ogbench.family(env) is None and not lean_ogbench.install(env)
    # OGBench's own environments outside task mode (data collection) keep OGBench's hooks
    cube = make_env("cube-single-play-singletask-task1-v0", disable_env_checker=True)
    u = cube.unwrapped
    u._mode = "data_collection"
    assert not lean_ogbench.install(cube) and "pre_step" not in u.__dict__
    u._mode = "task"
    assert lean_ogbench.install(cube) and "pre_step" in u.__dict__
    env.close(), cube.close()


@needs_mirrored
def test_evaluation_over_a_lean_pool_equals_ogbench_stepping():
    task = "cube-single-play-singletask-task2-v0"
    cfg = build_config("rql", task, None, {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16),
                                           "flow_steps": 2})
    env = make_env(task, disable_env_checker=True)
    agent = make_agent("rql", cfg, env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    states = init_group_state(agent, [0, 1])["agent"]
    policy = make_group_policy(agent)
    keys = [jax.random.fold_in(jax.random.PRNGKey(s + 1), 3) for s in range(2)]
    short = {"max_episode_steps": 23}
    lean, plain = EnvPool(task, 3, env_kwargs=short), EnvPool(task, 3, env_kwargs=short, lean=False)
    try:
        got = run_episodes(policy, states, lean, 2, keys, [0, 100_003])
        assert got == run_episodes(policy, states, plain, 2, keys, [0, 100_003])
        assert all("pre_step" in e.unwrapped.__dict__ for e in lean.envs)
        assert not any("pre_step" in e.unwrapped.__dict__ for e in plain.envs)
    finally:
        lean.close(), plain.close()
