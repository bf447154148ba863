"""Several seeds in one compiled process (``rql train --seeds``): seed k of a group is seed k alone."""

import csv
import dataclasses
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
from rql.checkpoint import Checkpoints
from rql.data.dataset import Dataset
from rql.data.loading import load_dataset
from rql.training import RunConfig, init_train_state, train, train_group

from conftest import TASK

TINY = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, batch_size=16, horizon=2)


def _params(run_dir, agent="rql", cfg=None, step=None):
    cfg = cfg or build_config(agent, TASK, None, TINY)
    ag = make_agent(agent, cfg, 28, 5)
    ck = Checkpoints(os.path.join(run_dir, "checkpoints"))
    ts = ck.restore(step or ck.latest(), init_train_state(ag, 0))
    ck.close()
    return ts


def _max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _shuffled_episodes(ds: Dataset) -> Dataset:
    starts, ends = ds.episode_bounds()
    order = list(range(len(starts)))[::-1]
    idx = np.concatenate([np.arange(starts[i], ends[i] + 1) for i in order])
    return dataclasses.replace(ds, observations=ds.observations[idx], actions=ds.actions[idx],
                               rewards=ds.rewards[idx], terminals=ds.terminals[idx], masks=ds.masks[idx])


def test_grouped_seed_equals_solo_seed(tiny_ogbench, tmp_path, monkeypatch):
    import rql.data.loading as loading

    make_env = loading.make_env  # evaluation episodes of 30 steps keep this test fast
    monkeypatch.setattr(loading, "make_env", lambda task, **kw: make_env(task, max_episode_steps=30, **kw))
    cfg = build_config("rql", TASK, None, TINY)
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), steps=300, eval_every=0, eval_episodes=2,
                    eval_envs=2, log_every=100, progress=False)
    dirs = [tmp_path / "g" / "s0", tmp_path / "g" / "s3"]
    group = train_group(run, "rql", cfg, [0, 3], dirs, log=lambda *a: None)
    solo = train(dataclasses.replace(run, seed=3, run_dir=str(tmp_path / "solo3")), "rql", cfg, log=lambda *a: None)

    # Parameters, optimiser state and the training key after 300 updates.
    assert _max_diff(_params(dirs[1], cfg=cfg), _params(tmp_path / "solo3", cfg=cfg)) < 1e-4
    # Logged training metrics and the evaluation (same episodes, same policy noise).
    rows_g = list(csv.DictReader(open(dirs[1] / "metrics.csv")))
    rows_s = list(csv.DictReader(open(tmp_path / "solo3" / "metrics.csv")))
    assert [r["step"] for r in rows_g] == [r["step"] for r in rows_s] == ["100", "200", "300"]
    np.testing.assert_allclose(float(rows_g[-1]["loss/total"]), float(rows_s[-1]["loss/total"]), rtol=1e-3)
    assert group[1]["final_eval"]["episodes"] == solo["final_eval"]["episodes"] == 2
    assert abs(group[1]["final_eval"]["return"] - solo["final_eval"]["return"]) < 1e-3
    # Seeds of a group differ from one another, and each run directory names its own seed.
    assert _max_diff(_params(dirs[0], cfg=cfg), _params(dirs[1], cfg=cfg)) > 1e-3
    assert json.loads((dirs[0] / "config.json").read_text())["run"]["seed"] == 0
    assert json.loads((dirs[1] / "summary.json").read_text())["seed"] == 3

    # The comparison can fail: the same seed on the same data in another episode order differs.
    ds = load_dataset(TASK, str(tiny_ogbench), horizon=cfg.horizon, sparse=cfg.sparse, download=False)
    train(dataclasses.replace(run, seed=3, run_dir=str(tmp_path / "shuf"), eval_episodes=0), "rql", cfg,
          dataset=_shuffled_episodes(ds), log=lambda *a: None)
    assert _max_diff(_params(tmp_path / "shuf", cfg=cfg), _params(tmp_path / "solo3", cfg=cfg)) > 1e-3


COMMON = ["train", "--task", TASK, "--eval-episodes", "0",
          "--agent.actor-hidden-dims", "16", "16", "--agent.value-hidden-dims", "16", "16",
          "--agent.ensemble", "2", "--agent.batch-size", "16", "--agent.horizon", "2",
          "--save-every", "200", "--log-every", "200", "--no-progress", "--keep-checkpoints", "20"]


def _cli(*args):
    return [sys.executable, "-m", "rql.cli", *args]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


@pytest.fixture(scope="module")
def uninterrupted_group(tiny_ogbench, tmp_path_factory):
    d = tmp_path_factory.mktemp("group") / "a"
    # the interrupted runs' block size too, so that they load this run's compiled block from the cache
    r = subprocess.run(_cli(*COMMON, "--dataset-path", str(tiny_ogbench), "--steps", "1200", "--seeds", "0,1",
                            "--updates-per-dispatch", "50", "--run-dir", str(d)), env=_env(), capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "seed 0: done: 1200 updates" in r.stdout and "seed 1: done: 1200 updates" in r.stdout
    return d


def _wait_for_checkpoints(proc, ck, n, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        steps = [s for s in (os.listdir(ck) if os.path.isdir(ck) else []) if s.isdigit()]
        if len(steps) >= n:
            return
        time.sleep(0.05)


def _assert_groups_equal(a, b):
    for s in ("s0", "s1"):
        assert _max_diff(_params(a / s, step=1200), _params(b / s, step=1200)) < 1e-5
        steps = [int(r["step"]) for r in csv.DictReader(open(b / s / "metrics.csv"))]
        assert steps == list(range(200, 1201, 200))


def test_sigterm_then_kill_9_during_a_group_then_resume(uninterrupted_group, tiny_ogbench, tmp_path):
    """SIGTERM saves at the step it stopped (off the --save-every grid) and says how to resume;
    kill -9 loses only the updates since the last checkpoint; both resumes end equal to a run
    that was never interrupted."""
    b = tmp_path / "b"
    proc = subprocess.Popen(_cli(*COMMON, "--dataset-path", str(tiny_ogbench), "--steps", "1200", "--seeds", "0,1",
                                 "--updates-per-dispatch", "50", "--run-dir", str(b)),
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoints(proc, b / "s0" / "checkpoints", 1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: stopped by SIGTERM at step ") and f"rql train --resume {b}" in last, err
    stopped_at = int(last.split("at step ")[1].split(";")[0])
    assert stopped_at % 50 == 0 and stopped_at < 1200
    for s in ("s0", "s1"):
        assert stopped_at in [int(x) for x in os.listdir(b / s / "checkpoints") if x.isdigit()]
    assert "Traceback" not in err

    proc = subprocess.Popen(_cli("train", "--resume", str(b)), env=dict(_env(), PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    _wait_for_checkpoints(proc, b / "s1" / "checkpoints", len(os.listdir(b / "s1" / "checkpoints")) + 1)
    os.kill(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    assert f"from step {stopped_at}" in out
    done = [int(s) for s in os.listdir(b / "s1" / "checkpoints") if s.isdigit()]
    assert max(done) < 1200, "the run finished before it could be killed"

    r = subprocess.run(_cli("train", "--resume", str(b)), env=_env(), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout  # after kill -9 the kernel dropped the run lock: no stale lock
    _assert_groups_equal(uninterrupted_group, b)
