"""A run directory end to end (checkpoints, metrics, summary, TensorBoard, ``rql eval``). Kill -9 and resume:
tests/test_groups.py (a run is a group of one seed; the same resume code), tests/test_online.py, test_pixels_train.py."""

import csv
import json
import os

import numpy as np

from rql.agents import build_config
from rql.training import RunConfig, train

from conftest import TASK

TINY = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, batch_size=16, horizon=2)


def test_end_to_end_run_directory(tiny_ogbench, tmp_path, capsys):
    cfg = build_config("rql", TASK, None, TINY)
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), run_dir=str(tmp_path / "run"), steps=40,
                    eval_every=20, eval_episodes=2, final_eval_episodes=3, eval_envs=2, log_every=10,
                    progress=False)
    summary = train(run, "rql", cfg, log=lambda *a: None)
    d = tmp_path / "run"
    assert {"config.json", "metrics.csv", "summary.json", "tb", "checkpoints"} <= set(os.listdir(d))
    assert sorted(int(s) for s in os.listdir(d / "checkpoints") if s.isdigit()) == [20, 40]
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40]
    assert rows[1]["eval/success"] != "" and rows[0]["eval/success"] == ""
    assert all(np.isfinite(float(r["loss/total"])) for r in rows)
    s = json.loads((d / "summary.json").read_text())
    assert s["steps"] == 40 and s["final_eval"]["episodes"] == 3  # --final-eval-episodes at the last step
    assert [e["episodes"] for e in s["evals"]] == [2, 3]
    assert 0.0 <= s["final_eval"]["success_ci_low"] <= s["final_eval"]["success"] <= s["final_eval"]["success_ci_high"]
    assert summary["final_eval"] == s["final_eval"]
    cfgdoc = json.loads((d / "config.json").read_text())
    assert cfgdoc["agent"] == "rql" and cfgdoc["agent_config"]["horizon"] == 2
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(d / "tb"))

    # rql eval on the saved run: same numbers for the same seed, a JSON line for machines.
    from rql.cli import main

    outs = []
    for _ in range(2):
        assert main(["eval", str(d), "--episodes", "2", "--envs", "2", "--checkpoint", "20", "--json"]) == 0
        outs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert outs[0] == outs[1]
    assert outs[0]["checkpoint"] == 20 and outs[0]["episodes"] == 2 and outs[0]["length"] > 0

    # --workers 2 splits the episodes into consecutive --first-episode ranges in two processes and pools them.
    def ev(*extra):
        assert main(["eval", str(d), "--checkpoint", "20", "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert ev("--episodes", "2", "--envs", "2", "--first-episode", "0") == outs[0]
    parts = [outs[0], ev("--episodes", "1", "--envs", "1", "--first-episode", "2")]
    from rql.evaluation import pool_results, wilson_interval

    pooled = ev("--episodes", "3", "--envs", "2", "--workers", "2")
    assert pooled == pool_results(parts) and pooled["episodes"] == 3
    k = round(pooled["success"] * 3)
    assert (pooled["success_ci_low"], pooled["success_ci_high"]) == wilson_interval(k, 3)


def test_log_every_zero_logs_only_the_last_step(tiny_ogbench, tmp_path):
    cfg = build_config("rql", TASK, None, TINY)
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), run_dir=str(tmp_path / "run"), steps=20,
                    eval_every=0, eval_episodes=0, log_every=0, updates_per_dispatch=5, progress=False)
    train(run, "rql", cfg, log=lambda *a: None)
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [20] and np.isfinite(float(rows[0]["loss/total"]))
