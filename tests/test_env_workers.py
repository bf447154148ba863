"""Evaluation environments stepped in worker processes (``--eval-workers``, ``rql eval --env-workers``)
on the real OGBench environments (episodes cut short with ``max_episode_steps``): the episodes are
those of one process, a worker that dies is one clear error, and no worker outlives its pool."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from rql.agents import build_config, make_agent
from rql.data.loading import make_env
from rql.errors import RQLError
from rql.evaluation import EnvPool, make_group_policy, run_episodes
from rql.evaluation.workers import recv, send
from rql.learner import init_group_state
from rql.runner.evaluator import AUTO_WORKERS_MIN_EPISODES, eval_workers

CUBE = "cube-single-play-singletask-task2-v0"
SHORT = {"max_episode_steps": 23}  # not a multiple of the chunk: episodes end inside a chunk


@pytest.fixture(scope="module")
def agent_and_states():
    cfg = build_config("rql", CUBE, None, {"actor_hidden_dims": (16, 16), "value_hidden_dims": (16, 16),
                                           "flow_steps": 2})
    env = make_env(CUBE, disable_env_checker=True)
    agent = make_agent("rql", cfg, env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    return agent, init_group_state(agent, [0, 1, 2])["agent"]


def test_workers_give_the_episodes_of_one_process(agent_and_states):
    agent, states = agent_and_states
    policy = make_group_policy(agent)
    keys = [jax.random.fold_in(jax.random.PRNGKey(s + 1), 3) for s in range(3)]
    resets = [s * 100_003 for s in range(3)]
    alone = EnvPool(CUBE, 5, env_kwargs=SHORT)
    pool = EnvPool(CUBE, 5, workers=2, env_kwargs=SHORT)
    try:
        expected = run_episodes(policy, states, alone, 3, keys, resets)
        timings: dict = {}
        got = run_episodes(policy, states, pool, 3, keys, resets, timings=timings)
        assert got == expected
        # slots 0 and 3 here, 1 and 4 in the first worker, 2 in the second
        assert len(pool.envs) == 2 and [w.made for w in pool.workers] == [2, 1]
        assert all(w.proc.poll() is None for w in pool.workers)
        assert timings["step"] > 0 and timings["reset"] > 0
        assert [len(r) for r in got] == [3, 3, 3] and {e[2] for r in got for e in r} == {23}
        # a second evaluation reuses the workers and their environments
        procs = [w.proc for w in pool.workers]
        assert run_episodes(policy, states, pool, 3, keys, resets) == expected
        assert [w.proc for w in pool.workers] == procs
    finally:
        alone.close()
        pool.close()
    assert all(p.returncode is not None for p in procs)  # closed with the pool


def test_slots_in_workers_step_exactly_as_in_this_process():
    """Observation for observation (the summaries above are the same for any failed episode)."""
    rng = np.random.default_rng(0)
    here, there = EnvPool(CUBE, 3, env_kwargs=SHORT), EnvPool(CUBE, 3, workers=2, env_kwargs=SHORT)
    try:
        a, b = here.stepper(3), there.stepper(3)
        assert (a.P, b.P) == (1, 3)
        obs_a, obs_b = a.reset([0, 1, 2], [5, 6, 7]), b.reset([0, 1, 2], [5, 6, 7])
        np.testing.assert_array_equal(np.stack(obs_a), np.stack(obs_b))
        ended = 0
        for _ in range(5):
            chunks = rng.uniform(-1, 1, (3, 5, 5)).astype(np.float32)
            for (oa, ra, da, sa), (ob, rb, db, sb) in zip(a.play([0, 1, 2], chunks), b.play([0, 1, 2], chunks)):
                np.testing.assert_array_equal(oa, ob)
                assert (ra, da, sa) == (rb, db, sb)
                ended += da
        assert ended == 3  # 23 steps: every episode ended inside its fifth chunk
        assert not np.array_equal(obs_a[0], obs_a[1])
    finally:
        here.close()
        there.close()


def test_only_the_workers_an_evaluation_needs_are_started():
    pool = EnvPool(CUBE, 6, workers=3, env_kwargs=SHORT)
    try:
        pool.stepper(1)
        assert pool.workers == [] and len(pool.envs) == 1
        pool.stepper(2)
        assert len(pool.workers) == 1 and pool.workers[0].made == 1
    finally:
        pool.close()


def test_workers_prepared_ahead_make_their_environments_meanwhile():
    pool = EnvPool(CUBE, 4, workers=1, env_kwargs=SHORT)
    try:
        pool.prepare(4)  # returns at once: the worker starts and makes its environments meanwhile
        (w,) = pool.workers
        assert (w.asked, w.made) == (2, 0)
        pool.prepare(4)  # asked once
        assert w.asked == 2
        stepper = pool.stepper(4)
        assert (w.asked, w.made) == (2, 2) and len(pool.envs) == 2 and stepper.P == 2
    finally:
        pool.close()


def test_a_worker_ignores_ctrl_c_and_its_death_is_one_clear_error(agent_and_states):
    agent, states = agent_and_states
    one = jax.tree.map(lambda x: x[:1], states)
    policy, key = make_group_policy(agent), [jax.random.PRNGKey(0)]
    pool = EnvPool(CUBE, 2, workers=1, env_kwargs=SHORT)
    try:
        run_episodes(policy, one, pool, 2, key, [0])
        proc = pool.workers[0].proc
        proc.send_signal(signal.SIGINT)  # the main process decides how a run stops
        time.sleep(0.5)
        assert proc.poll() is None
        assert run_episodes(policy, one, pool, 2, key, [0])[0][0][2] == 23
        proc.kill()
        proc.wait()
        with pytest.raises(RQLError, match="evaluation worker process stopped.*--eval-workers 0"):
            run_episodes(policy, one, pool, 2, key, [0])
    finally:
        pool.close()


def test_a_worker_reports_a_bad_request_and_ends_when_its_input_closes():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen([sys.executable, "-m", "rql.env_workers"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    try:
        send(proc.stdin, {"cmd": "make", "task": "no-such-task-v0", "size": 1, "share_model": True, "count": 1})
        header, _ = recv(proc.stdout)
        assert header["error"].startswith("'no-such-task-v0' is not an OGBench single-task name")
        send(proc.stdin, {"cmd": "jump"})
        assert "unknown command" in recv(proc.stdout)[0]["error"]
        send(proc.stdin, {"cmd": "make", "task": CUBE, "size": 1, "share_model": True, "count": 1,
                          "env_kwargs": SHORT})
        assert recv(proc.stdout)[0]["made"] == 1
        send(proc.stdin, {"cmd": "reset", "slots": [0], "seeds": [4]})
        header, arrays = recv(proc.stdout)
        direct = make_env(CUBE, disable_env_checker=True)
        try:
            np.testing.assert_array_equal(arrays["obs"][0], direct.reset(seed=4)[0])
        finally:
            direct.close()
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_frames_carry_numbers_only():
    import io

    buf = io.BytesIO()
    send(buf, {"x": 1}, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([True, False])})
    buf.seek(0)
    header, arrays = recv(buf)
    assert header == {"x": 1}
    np.testing.assert_array_equal(arrays["a"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert arrays["b"].tolist() == [True, False]
    # an object array in a frame is refused, never unpickled
    head = json.dumps({"arrays": [["o", "|O", [1]]]}).encode()
    bad = io.BytesIO(len(head).to_bytes(4, "little") + (8).to_bytes(4, "little") + head + b"\0" * 8)
    with pytest.raises(ValueError, match="unexpected array type"):
        recv(bad)


def test_the_default_number_of_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert eval_workers(None, 10, 50) == 3
    assert eval_workers(None, 2, 50) == 1  # never more than the pool minus the main process's share
    assert eval_workers(None, 10, AUTO_WORKERS_MIN_EPISODES - 1) == 0  # not worth a start
    assert eval_workers(2, 10, 1) == 2  # asked for
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert eval_workers(None, 10, 50) == 0


def _worker_children() -> list[int]:
    """This process's running children that are evaluation workers."""
    me, found = os.getpid(), []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        if int(fields[1]) == me and fields[0] != "Z" and b"rql.env_workers" in cmd:
            found.append(int(d))
    return found


def test_a_run_with_an_evaluation_worker_evaluates_as_without_and_leaves_none(tiny_ogbench, tmp_path):
    from conftest import TASK
    from rql.training import RunConfig, train

    cfg = build_config("rql", TASK, None, dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2,
                                              batch_size=16, horizon=5, flow_steps=2))
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), steps=20, eval_every=0, eval_episodes=3,
                    eval_envs=2, log_every=10, progress=False, tensorboard=False)
    seen = []
    import rql.evaluation as ev

    stepper = ev.EnvPool.stepper

    def spy(self, n):
        out = stepper(self, n)
        seen.append((len(self.workers), _worker_children()))
        return out

    ev.EnvPool.stepper = spy
    try:
        import dataclasses

        one = train(dataclasses.replace(run, eval_workers=1, run_dir=str(tmp_path / "w1")), "rql", cfg,
                    log=lambda *a: None)
        none = train(dataclasses.replace(run, eval_workers=0, run_dir=str(tmp_path / "w0")), "rql", cfg,
                     log=lambda *a: None)
    finally:
        ev.EnvPool.stepper = stepper
    assert seen[0][0] == 1 and len(seen[0][1]) == 1  # the first run's evaluation had its worker
    assert seen[-1] == (0, [])
    assert _worker_children() == []  # closed with the run
    assert one["final_eval"] == none["final_eval"] and one["final_eval"]["episodes"] == 3
