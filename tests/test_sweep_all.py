"""``rql sweep --agents all``: every registered agent trains, evaluates and is compared in one sweep
(tiny networks, 20 updates, one evaluation episode, on the small recorded dataset of conftest.py)."""

from __future__ import annotations

import csv
import json

from rql.agents import REGISTRY
from rql.cli import main

T2 = "cube-single-play-singletask-task2-v0"
# Fields every agent that has them takes; networks this small keep the compiles short.
TINY = ["agent.actor_hidden_dims=[8]", "agent.value_hidden_dims=[8]", "agent.ensemble=2", "agent.batch_size=8",
        "agent.horizon=1", "agent.flow_steps=2", "agent.num_samples=2", "run.tensorboard=false",
        "run.updates_per_dispatch=10"]
SCHEDULE = ["--steps", "20", "--eval-every", "0", "--eval-episodes", "1", "--eval-envs", "1", "--log-every", "10"]


def test_sweep_over_all_agents_finishes(tiny_ogbench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    out = tmp_path / "sweep"
    argv = ["sweep", "--tasks", T2, "--agents", "all", "--seeds", "0", "--out", str(out), "--dataset-dir",
            str(tiny_ogbench.parent), *SCHEDULE, "--num-cpus", "2", "--compile-cache", str(tmp_path / "cache"),
            "--set", *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    assert sorted(c["agent"] for c in cells) == sorted(REGISTRY)
    assert all(c["status"] == "done" for c in cells), [(c["agent"], c["error"]) for c in cells if c["status"] != "done"]
    rows = {r["agent"]: r for r in csv.DictReader((out / "compare" / "comparison.csv").open())}
    assert sorted(rows) == sorted(REGISTRY)
    for agent in REGISTRY:
        summary = json.loads((out / T2 / agent / "s0" / "summary.json").read_text())
        assert summary["steps"] == 20 and summary["final_eval"]["episodes"] == 1
