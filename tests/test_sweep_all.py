"""``rql sweep --agents all``: every registered agent is expanded into a cell and takes the shared
overrides (a dry run), and a real sweep over two agents of different families trains, evaluates and
compares them in one go (tiny networks, 20 updates, one evaluation episode, on the small recorded
dataset of conftest.py). Each agent's own training is covered by its contract test."""

from __future__ import annotations

import csv
import json

from rql.agents import BUILTIN
from rql.cli import main

T2 = "cube-single-play-singletask-task2-v0"
# Fields every agent that has them takes; networks this small keep the compiles short.
TINY = ["agent.actor_hidden_dims=[8]", "agent.value_hidden_dims=[8]", "agent.ensemble=2", "agent.batch_size=8",
        "agent.horizon=1", "agent.flow_steps=2", "agent.num_samples=2", "run.tensorboard=false",
        "run.updates_per_dispatch=10"]
SCHEDULE = ["--steps", "20", "--eval-every", "0", "--eval-episodes", "1", "--eval-envs", "1", "--log-every", "10"]
# The reference algorithm and one of the QAM suite's (a value-guided sampler); the dry run above
# covers every agent's settings, and each agent's contract test trains it.
REAL = ["rql", "fql"]  # two families: RQL and a suite method (the cheapest of the suite to compile)


def test_sweep_over_all_agents_expands_every_agent(tiny_ogbench, tmp_path, capsys):
    argv = ["sweep", "--tasks", T2, "--agents", "all", "--seeds", "0", "--out", str(tmp_path / "sweep"),
            "--dataset-dir", str(tiny_ogbench.parent), *SCHEDULE, "--dry-run", "--set", *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    agents = sorted(line.split()[1] for line in lines if line.startswith(T2))
    assert agents == sorted(BUILTIN)  # the built-in agents, not plugins another test loaded
    assert f"sweep: {len(BUILTIN)} cells" in lines[-1]
    assert not (tmp_path / "sweep").exists()  # a dry run starts nothing


def test_sweep_over_several_agents_finishes(tiny_ogbench, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    out = tmp_path / "sweep"
    argv = ["sweep", "--tasks", T2, "--agents", ",".join(REAL), "--seeds", "0", "--out", str(out), "--dataset-dir",
            str(tiny_ogbench.parent), *SCHEDULE, "--num-cpus", "2", "--compile-cache", str(tmp_path / "cache"),
            "--set", *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    cells = json.loads((out / "sweep.json").read_text())["cells"]
    assert sorted(c["agent"] for c in cells) == sorted(REAL)
    assert all(c["status"] == "done" for c in cells), [(c["agent"], c["error"]) for c in cells if c["status"] != "done"]
    rows = {r["agent"]: r for r in csv.DictReader((out / "compare" / "comparison.csv").open())}
    assert sorted(rows) == sorted(REAL)
    for agent in REAL:
        summary = json.loads((out / T2 / agent / "s0" / "summary.json").read_text())
        assert summary["steps"] == 20 and summary["final_eval"]["episodes"] == 1
