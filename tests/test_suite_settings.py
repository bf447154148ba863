"""`rql train --print-config` shows the settings a run would train with: the QAM suite's protocol by
default under --task (common values and each method's per-environment values, written out here from
the suite's reproduce script), --preset small on top, --settings fql-paper as the named alternative,
the command line last; a bad --settings value is one line. A run records the settings it used."""

import json

import numpy as np
import pytest

from rql.cli import main

CUBE_DOUBLE = "cube-double-play-singletask-task1-v0"
CUBE_TRIPLE = "cube-triple-play-singletask-task3-v0"
SCENE = "scene-play-singletask-task2-v0"
ANTMAZE_LARGE = "antmaze-large-navigate-singletask-task1-v0"
HUMANOIDMAZE_MEDIUM = "humanoidmaze-medium-navigate-singletask-task4-v0"

# (agent, task, extra arguments, values the resolved config must hold)
CELLS = [
    ("qsm", CUBE_DOUBLE, [], dict(inv_temp=1.0, alpha=10.0, ensemble=10, rho=0.5, horizon=5, discount=0.99)),
    ("dsrl", SCENE, [], dict(noise_scale=0.4, ensemble=10, horizon=5, sparse=True)),
    ("fql", ANTMAZE_LARGE, [], dict(alpha=3.0, ensemble=10, rho=0.5, q_agg="pessimistic", horizon=1,
                                    settings="suite")),
    ("ifql", HUMANOIDMAZE_MEDIUM, [], dict(kappa=0.7, rho=0.0, ensemble=10, horizon=1, discount=0.995)),
    ("rebrac", CUBE_TRIPLE, [], dict(alpha_actor=0.01, actor_noise=0.2, ensemble=10, rho=0.5, horizon=5,
                                     alpha_critic=0.0, actor_dims=[512] * 4)),
    # The FQL paper's values, the named alternative: its own alpha and clipped double Q on antmaze-large.
    ("fql", ANTMAZE_LARGE, ["--settings", "fql-paper"], dict(alpha=10.0, ensemble=2, q_agg="min", horizon=1,
                                                             settings="fql-paper")),
    ("ifql", HUMANOIDMAZE_MEDIUM, ["--settings", "fql-paper"], dict(kappa=0.9, ensemble=2, q_agg="min",
                                                                    critic_sum=True, discount=0.995)),
    ("rebrac", CUBE_TRIPLE, ["--settings=fql-paper"], dict(ensemble=2, q_agg="min", act_noise=False,
                                                           actor_every_step=False)),
    # The command line comes last: over the task's values, and IFQL's expectile is kappa's alias.
    ("fql", CUBE_DOUBLE, ["--agent.alpha", "7"], dict(alpha=7.0, horizon=5)),
    ("ifql", HUMANOIDMAZE_MEDIUM, ["--agent.expectile", "0.6"], dict(kappa=0.6, expectile=None)),
    ("ifql", HUMANOIDMAZE_MEDIUM, ["--settings", "fql-paper", "--agent.kappa", "0.8"], dict(kappa=0.8)),
]


def print_config(capsys, *args):
    # A dataset path that does not exist: --print-config must not read data.
    code = main(["train", *args, "--dataset-path", "/nonexistent/data.npz", "--print-config"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def expect(cfg: dict, values: dict):
    for k, v in values.items():
        if k == "actor_dims":
            assert cfg["actor_hidden_dims"] == v and cfg["value_hidden_dims"] == v
        else:
            assert cfg[k] == v, (k, cfg[k], v)


@pytest.mark.parametrize("agent,task,extra,values", CELLS, ids=[f"{c[0]}-{c[1].split('-v0')[0]}{''.join(c[2])}"
                                                                for c in CELLS])
def test_resolved_settings(capsys, agent, task, extra, values):
    expect(print_config(capsys, "--agent", agent, "--task", task, *extra), values)


@pytest.mark.parametrize("agent", ["fql", "ifql", "rebrac", "qsm", "dsrl", "rql"])
def test_small_preset_shrinks_every_method_alike(capsys, agent):
    cfg = print_config(capsys, "--agent", agent, "--task", CUBE_TRIPLE, "--preset", "small")
    expect(cfg, dict(actor_dims=[256, 256], ensemble=2, horizon=5))


def test_small_preset_applies_over_the_paper_settings(capsys):
    cfg = print_config(capsys, "--agent", "fql", "--task", ANTMAZE_LARGE, "--settings", "fql-paper",
                       "--preset", "small")
    expect(cfg, dict(actor_dims=[256, 256], ensemble=2, alpha=10.0, q_agg="min"))


@pytest.mark.parametrize("args,needle", [
    (["--agent", "fql", "--settings", "fql-papers"],
     "unknown settings 'fql-papers' for agent 'fql'; choose one of: suite, fql-paper"),
    (["--agent", "rql", "--settings", "suite"], "unknown settings 'suite' for agent 'rql'"),
])
def test_bad_settings_is_one_line(capsys, args, needle):
    code = main(["train", *args, "--task", CUBE_DOUBLE, "--print-config"])
    out, err = capsys.readouterr()
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith(f"error: {needle}") and "Traceback" not in err, err


def test_run_records_its_settings_and_resumes(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 60
    terminals = np.zeros(n, bool)
    terminals[29] = terminals[-1] = True
    np.savez(tmp_path / "d.npz", observations=rng.standard_normal((n, 3)).astype(np.float32),
             actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32), rewards=-np.ones(n, np.float32),
             terminals=terminals)
    run_dir = tmp_path / "run"
    tiny = ["--agent.actor-hidden-dims", "8", "--agent.value-hidden-dims", "8", "--agent.batch-size", "8",
            "--eval-episodes", "0", "--no-progress", "--no-tensorboard", "--log-every", "5"]
    code = main(["train", "--agent", "ifql", "--settings", "fql-paper", "--dataset-path", str(tmp_path / "d.npz"),
                 "--run-dir", str(run_dir), "--steps", "5", "--agent.num-samples", "2", *tiny])
    assert code == 0, capsys.readouterr().err
    saved = json.loads((run_dir / "config.json").read_text())["agent_config"]
    assert saved["settings"] == "fql-paper" and saved["q_agg"] == "min" and saved["critic_sum"] is True
    assert main(["train", "--resume", str(run_dir), "--steps", "10"]) == 0, capsys.readouterr().err
    resumed = json.loads((run_dir / "config.json").read_text())["agent_config"]
    assert resumed == saved
    assert (run_dir / "metrics.csv").read_text().strip().splitlines()[-1].startswith("10,")
