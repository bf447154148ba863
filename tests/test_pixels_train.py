"""Pixels end to end on a tiny visual dataset that ``rql data generate visual-cube-single-play-v0`` makes with
OGBench's oracles and offscreen rendering: rql trains as a group of two seeds, resumes after kill -9 to the
same parameters as an uninterrupted run, and a trained policy plays one evaluation episode on stacked frames
it renders itself. (Every suite method builds its networks through the same kit function; tests/test_pixels.py
checks their encoders; training them here too costs more than the suite's time budget allows.)

Rendering costs about 0.3 s a step here, so the data is 2 + 1 episodes of 20 steps (the issue's
``--max-steps 60`` takes three times as long) and the encoder is the tiny ``impala_debug``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import kill_9_after_checkpoints

TASK = "visual-cube-single-play-singletask-task1-v0"
STEPS = 8


@pytest.fixture(scope="module")
def visual_data(tmp_path_factory):
    from rql.cli import main
    from rql.errors import RQLError
    from rql.video import select_gl_backend

    try:
        select_gl_backend()  # visual observations are rendered offscreen: EGL, else OSMesa
    except RQLError as e:
        pytest.skip(f"no OpenGL backend renders MuJoCo here: {e}")

    out = tmp_path_factory.mktemp("visual")
    assert main(["data", "generate", "visual-cube-single-play-v0", "--episodes", "2", "--max-steps", "20",
                 "--out", str(out)]) == 0
    return out / "visual-cube-single-play-v0.npz"


def _train_args(agent: str, data, run_dir, *extra) -> list[str]:
    return ["train", "--agent", agent, "--task", TASK, "--dataset-path", str(data), "--preset", "small",
            "--agent.encoder", "impala_debug", "--agent.batch-size", "8", "--agent.horizon", "1",
            "--agent.actor-hidden-dims", "32", "--agent.value-hidden-dims", "32",
            "--frame-stack", "3", "--p-aug", "0.5", "--seeds", "2", "--steps", str(STEPS), "--eval-episodes", "0",
            "--log-every", "2", "--save-every", "2", "--keep-checkpoints", "10", "--no-progress", "--run-dir", str(run_dir),
            *extra]


def _env():
    cache = os.environ.get("RQL_TEST_JAX_CACHE") or os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax")
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), JAX_COMPILATION_CACHE_DIR=cache,
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))


def _cli(*args):
    return [sys.executable, "-c", "import sys; from rql.cli import main; sys.exit(main(sys.argv[1:]))", *args]


def _final_state(run_dir):
    from rql.training import restore_agent

    _, agent, ts, step = restore_agent(run_dir, log=lambda *_: None)
    return agent, ts, step


def test_generated_visual_file_is_ogbench_layout(visual_data):
    from ogbench.utils import load_dataset

    train = load_dataset(str(visual_data), ob_dtype=np.uint8, compact_dataset=False, add_info=True)
    assert train["observations"].dtype == np.uint8 and train["observations"].shape[1:] == (64, 64, 3)
    assert train["observations"].shape[0] == 2 * 19 and "qpos" in train


def test_rql_group_trains_and_resumes_after_kill_9(visual_data, tmp_path):
    env = _env()
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(_cli(*_train_args("rql", visual_data, a)), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "pixels: 38 frames 64x64x3 uint8" in r.stdout + r.stderr

    # the second run keeps its frames on the host (each block's windows gathered there): same updates
    proc = subprocess.Popen(_cli(*_train_args("rql", visual_data, b, "--frame-placement", "host")), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = kill_9_after_checkpoints(proc, b / "s1" / "checkpoints", timeout=300)
    assert killed_at < STEPS, "the run finished before it could be killed"
    r = subprocess.run(_cli("train", "--resume", str(b)), env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"pixels: 38 frames 64x64x3 uint8 \(\d+ KiB\) kept on the host", r.stdout + r.stderr)
    for seed in ("s0", "s1"):
        _, ta, sa = _final_state(a / seed)
        _, tb, sb = _final_state(b / seed)
        assert sa == sb == STEPS
        for x, y in zip(jax.tree_util.tree_leaves(ta), jax.tree_util.tree_leaves(tb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    # the two seeds are different runs
    _, t0, _ = _final_state(a / "s0")
    _, t1, _ = _final_state(a / "s1")
    p0, p1 = (jax.tree_util.tree_leaves(t["agent"]["params"]) for t in (t0, t1))
    assert any(not np.array_equal(x, y) for x, y in zip(p0, p1))

    # one evaluation episode on frames the policy's own environment renders, stacked as in training
    from rql.evaluation import EnvPool, evaluate_group, make_group_policy
    from rql.training import stack_states

    agent, ts, _ = _final_state(a / "s0")
    pool = EnvPool(TASK, 1, share_model=False, env_kwargs={"frame_stack": 3, "max_episode_steps": 6}, lean=False)
    try:
        states = stack_states([ts["agent"]])
        res = evaluate_group(make_group_policy(agent), states, pool, 1, [jax.random.PRNGKey(1)], [0])
    finally:
        pool.close()
    assert res[0]["length"] == 6 and 0.0 <= res[0]["success"] <= 1.0


def test_flow_suite_method_group_trains_on_pixels(visual_data, tmp_path):
    """A suite method whose policy is a flow (FBRAC: a BC flow and a critic, each with its own encoder) trains
    on the generated frames as a group of two seeds on the suite's windows: finite losses, seeds that differ,
    checkpoints that restore. (Kill -9 and resume are one code path for every agent: the rql test above kills
    and resumes; FQL, the one-step policy, is checked on stacked, shifted suite windows in tests/test_pixels.py.)"""
    import csv

    import rql

    res = rql.train(TASK, "fbrac", steps=2, seeds=2, run_dir=tmp_path / "g", dataset_path=visual_data, preset="small",
                    eval_episodes=0, agent_config={"encoder": "impala_debug", "batch_size": 8, "horizon": 2,
                                                   "actor_hidden_dims": (32,), "value_hidden_dims": (32,)},
                    frame_stack=3, p_aug=0.5, log_every=1, save_every=2, progress=False, log=lambda *a, **k: None)
    params = []
    for d in res.run_dirs:
        rows = list(csv.DictReader(open(d / "metrics.csv")))
        assert [int(r["step"]) for r in rows] == [1, 2]
        assert all(np.isfinite(float(v)) for r in rows for k, v in r.items() if k.startswith(("loss/", "actor/")) and v)
        assert any(k.startswith("loss/") for k in rows[0])
        _, ts, step = _final_state(d)
        assert step == 2
        params.append(jax.tree_util.tree_leaves(ts["agent"]["params"]))
    assert any(not np.array_equal(x, y) for x, y in zip(*params))
