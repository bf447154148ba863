"""Shared fixtures: tiny real OGBench-format data recorded from the real environment."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")
# The suite's programs are tiny and compiled far more than they run: without LLVM's optimisations XLA compiles
# them in about a third less time, and the whole suite ran in 859 s instead of 1124 s (2 cores). Every equality
# a test asserts compares programs built under these same flags; benchmarks/ measure with the default ones.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0")
# One compilation cache for this test session (in-process and every `rql` subprocess the tests start):
# the same tiny networks are compiled once instead of once per process. Fresh per session.
import tempfile  # noqa: E402

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="rql-test-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import numpy as np
import pytest

TASK = "cube-single-play-singletask-task2-v0"


def record_ogbench_file(path, task=TASK, episodes=3, steps=40, seed=0):
    """Roll the real environment with smoothed random actions and save an OGBench-format file
    (observations, actions, terminals, qpos, qvel), as the official data is stored."""
    import ogbench

    from rql.data.loading import split_task

    env_name, _ = split_task(task)
    import gymnasium

    env = gymnasium.make(env_name.replace("-singletask-task2", "").replace("-singletask", ""),
                         terminate_at_goal=False, mode="data_collection", max_episode_steps=steps + 1)
    rng = np.random.default_rng(seed)
    obs, acts, terms, qpos, qvel = [], [], [], [], []
    for ep in range(episodes):
        o, info = env.reset(seed=seed * 1000 + ep)
        a_prev = np.zeros(env.action_space.shape, np.float32)
        for t in range(steps):
            a = np.clip(0.7 * a_prev + 0.3 * rng.uniform(-1, 1, a_prev.shape), -1, 1).astype(np.float32)
            o2, r, term, trunc, info = env.step(a)
            obs.append(o)
            acts.append(a)
            terms.append(t == steps - 1)
            qpos.append(info["prev_qpos"])
            qvel.append(info["prev_qvel"])
            o, a_prev = o2, a
    np.savez(path, observations=np.array(obs, np.float32), actions=np.array(acts, np.float32),
             terminals=np.array(terms, bool), qpos=np.array(qpos, np.float32), qvel=np.array(qvel, np.float32))
    del ogbench
    return path


def kill_9_after_checkpoints(proc, checkpoints, count: int = 1, timeout: float = 120.0, poll: float = 0.02) -> int:
    """SIGKILL the training process ``proc`` once ``checkpoints`` (a folder) holds ``count`` checkpoints (or
    it ended, or ``timeout`` passed); returns the newest checkpoint step on disk."""
    import os
    import pathlib
    import signal
    import time

    ck = pathlib.Path(checkpoints)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ck.is_dir() and sum(s.isdigit() for s in os.listdir(ck)) >= count:
            break
        time.sleep(poll)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return max(int(s) for s in os.listdir(ck) if s.isdigit())


@pytest.fixture(scope="session")
def tiny_ogbench(tmp_path_factory):
    d = tmp_path_factory.mktemp("ogdata")
    path = d / "cube-single-play-v0.npz"
    record_ogbench_file(path)
    return path
