"""``rql sweep --agents all``: every built-in agent is expanded into a cell and takes the shared
overrides (a dry run). A sweep runs every agent through the same trial code (tests/test_sweep.py: rql, flow
BC and a plugin agent on Ray); each agent's own training is its contract test."""

from __future__ import annotations

from rql.agents import BUILTIN
from rql.cli import main

T2 = "cube-single-play-singletask-task2-v0"
# Fields every agent that has them takes; networks this small keep the compiles short.
TINY = ["agent.actor_hidden_dims=[8]", "agent.value_hidden_dims=[8]", "agent.ensemble=2", "agent.batch_size=8",
        "agent.horizon=1", "agent.flow_steps=2", "agent.num_samples=2", "run.tensorboard=false",
        "run.updates_per_dispatch=10"]
SCHEDULE = ["--steps", "20", "--eval-every", "0", "--eval-episodes", "1", "--eval-envs", "1", "--log-every", "10"]


def test_sweep_over_all_agents_expands_every_agent(tiny_ogbench, tmp_path, capsys):
    argv = ["sweep", "--tasks", T2, "--agents", "all", "--seeds", "0", "--out", str(tmp_path / "sweep"),
            "--dataset-dir", str(tiny_ogbench.parent), *SCHEDULE, "--dry-run", "--set", *TINY]
    assert main(argv) == 0, capsys.readouterr().err
    lines = capsys.readouterr().out.splitlines()
    agents = sorted(line.split()[1] for line in lines if line.startswith(T2))
    assert agents == sorted(BUILTIN)  # the built-in agents, not plugins another test loaded
    assert f"sweep: {len(BUILTIN)} cells" in lines[-1]
    assert not (tmp_path / "sweep").exists()  # a dry run starts nothing
