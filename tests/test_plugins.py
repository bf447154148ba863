"""Agents from outside the package (``rql.agents.plugins``): a file, a module on ``sys.path`` and an installed
plugin's entry point each train a group of two seeds, resume equal to an uninterrupted run (the file after
kill -9), evaluate and are compared; a run whose agent file or module changed or vanished is refused in one
line; bad plugins are refused in one line."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

import rql
from rql.cli import main
from rql.training import restore_agent

from conftest import TASK, kill_9_after_checkpoints

# A plugin as a user would write one, kept tiny: the shipped flow-BC make under its own name and config.
PLUGIN = '''
import dataclasses

from rql.agents import flow_bc
from rql.agents.kit import AgentSpec


@dataclasses.dataclass
class TinyBCConfig(flow_bc.FlowBCConfig):
    """Flow BC as a plugin agent (tests)."""

    horizon: int = 1
    batch_size: int = 8
    flow_steps: int = 1
    actor_hidden_dims: tuple[int, ...] = (8,)


SPECS = [AgentSpec("{name}", "flow BC as a plugin (tests)", TinyBCConfig, flow_bc.make, lambda task: {{}},
                   {{"small": {{}}}}, settings="rql-paper")]
'''

QUIET = dict(eval_every=0, eval_episodes=0, log_every=10, progress=False, tensorboard=False)


def write_plugin(path: pathlib.Path, name: str) -> pathlib.Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(PLUGIN.format(name=name))
    return path


def params(run_dir):
    _, _, ts, step = restore_agent(run_dir, log=lambda *a, **k: None)
    return step, jax.tree_util.tree_leaves(ts)


def assert_same(a, b):
    (sa, la), (sb, lb) = params(a), params(b)
    assert sa == sb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _cli(*args):
    return [sys.executable, "-m", "rql.cli", *args]


def test_file_plugin_group_kill_9_resume_eval_compare_and_changed_file(tiny_ogbench, tmp_path, capsys):
    plugin = write_plugin(tmp_path / "agents" / "file_bc.py", "file-bc")
    common = ["train", "--agent", str(plugin), "--task", TASK, "--dataset-path", str(tiny_ogbench), "--seeds", "2",
              "--steps", "400", "--save-every", "100", "--log-every", "100", "--eval-every", "0",
              "--eval-episodes", "1", "--eval-envs", "1", "--no-progress", "--keep-checkpoints", "10",
              "--no-tensorboard"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*common, "--run-dir", str(a)]) == 0  # the uninterrupted run, in this process
    proc = subprocess.Popen(_cli(*common, "--run-dir", str(b)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed_at = kill_9_after_checkpoints(proc, b / "s1" / "checkpoints")
    assert killed_at < 400, "the run finished before it could be killed"
    doc = json.loads((b / "s0" / "config.json").read_text())
    assert doc["agent"] == "file-bc"
    assert doc["agent_source"] == {"kind": "file", "path": str(plugin.resolve()),
                                   "sha256": __import__("hashlib").sha256(plugin.read_bytes()).hexdigest()}
    assert main(["train", "--resume", str(b)]) == 0
    assert f"from step {killed_at}" in capsys.readouterr().out
    for s in ("s0", "s1"):
        assert_same(a / s, b / s)

    assert main(["eval", str(a / "s0"), "--episodes", "1", "--envs", "1", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["checkpoint"] == 400 and res["episodes"] == 1
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    capsys.readouterr()
    with (tmp_path / "cmp" / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["agent"], r["seeds"]) for r in rows] == [("file-bc", "4")]

    # The method changed: resume and eval refuse it in one line, naming what was recorded and what was found.
    from rql.agents import REGISTRY, plugins

    del REGISTRY["file-bc"], plugins.SOURCES["file-bc"]  # as in a new process
    plugin.write_text(plugin.read_text() + "\n# changed\n")
    assert main(["train", "--resume", str(a), "--steps", "500"]) == 2
    line = one_error_line(capsys)
    assert "trained with agent 'file-bc' from file" in line and "the file now has sha256" in line
    plugin.unlink()
    assert main(["eval", str(a / "s0"), "--episodes", "1"]) == 2
    assert "that file is gone" in one_error_line(capsys)
    assert sorted(int(s) for s in os.listdir(a / "s0" / "checkpoints") if s.isdigit())[-1] == 400  # nothing lost


def _distribution(site: pathlib.Path, module: str, name: str, version: str) -> None:
    """A throwaway installed distribution: its module and its metadata with one ``rql.agents`` entry point."""
    write_plugin(site / f"{module}.py", name)
    info = site / f"{module}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[rql.agents]\n{name} = {module}\n")
    (info / "top_level.txt").write_text(f"{module}\n")


@pytest.mark.parametrize("kind", ["module", "entry_point"])
def test_module_and_entry_point_plugins(kind, tiny_ogbench, tmp_path, monkeypatch, capsys):
    site = tmp_path / "site"
    if kind == "module":
        name, ref = "mod-bc", "rqlplug_pkg.agents"
        write_plugin(site / "rqlplug_pkg" / "agents.py", name)
        (site / "rqlplug_pkg" / "__init__.py").write_text("")
    else:
        name = ref = "ep-bc"
        _distribution(site, "rqlplug_ep", name, "0.3")
    monkeypatch.syspath_prepend(str(site))
    opts = dict(task=TASK, dataset_path=tiny_ogbench, seeds=2, **QUIET)

    whole = rql.train(agent=ref, steps=40, run_dir=tmp_path / "whole", log=lambda *a, **k: None,
                      **{**opts, "eval_episodes": 1, "eval_envs": 1})
    assert whole.run_dirs == [tmp_path / "whole" / "s0", tmp_path / "whole" / "s1"]
    assert [s["steps"] for s in whole.summaries] == [40, 40] and all(0 <= x <= 1 for x in whole.success)
    doc = json.loads((whole.run_dirs[0] / "config.json").read_text())
    assert doc["agent"] == name and doc["agent_source"]["kind"] == kind
    if kind == "entry_point":
        assert doc["agent_source"]["version"] == "0.3" and doc["agent_source"]["distribution"] == "rqlplug_ep"

    if kind == "entry_point":  # stopped at 20 and resumed to 40: equal to the uninterrupted run (the file
        # plugin's test does it after kill -9; resuming reads the agent from the record the same way for all)
        rql.train(agent=ref, steps=20, run_dir=tmp_path / "part", log=lambda *a, **k: None, **opts)
        resumed = rql.train(resume=tmp_path / "part", steps=40, log=lambda *a, **k: None)
        assert [s["steps"] for s in resumed.summaries] == [40, 40]
        for s in ("s0", "s1"):
            assert_same(tmp_path / "whole" / s, tmp_path / "part" / s)

    ev = rql.evaluate(whole.run_dirs[1], episodes=1, envs=1, log=lambda *a, **k: None)
    assert ev["episodes"] == 1 and ev["checkpoint"] == 40
    assert main(["compare", str(tmp_path / "whole"), "--out", str(tmp_path / "cmp")]) == 0
    assert f"| {name} |" in capsys.readouterr().out

    # The installed method changed (a new version, or new code under the same name): one line, no run.
    if kind == "entry_point":
        _distribution(site, "rqlplug_ep", name, "0.3")
        (site / "rqlplug_ep-0.3.dist-info").rename(site / "rqlplug_ep-0.4.dist-info")
        (site / "rqlplug_ep-0.4.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: rqlplug_ep\n"
                                                                   "Version: 0.4\n")
        expected = "rqlplug_ep 0.4"
    else:
        (site / "rqlplug_pkg" / "agents.py").write_text(PLUGIN.format(name=name) + "\n# changed\n")
        expected = "found module rqlplug_pkg.agents"
    from rql.agents import plugins

    plugins.SOURCES.pop(name, None)  # as in a new process
    assert main(["train", "--resume", str(tmp_path / "whole"), "--steps", "60"]) == 2
    line = one_error_line(capsys)
    assert f"trained with agent '{name}' from" in line and expected in line, line


def test_bad_plugins_are_one_line(tmp_path, capsys):
    from rql.agents import plugins

    cases = []
    clash = write_plugin(tmp_path / "clash.py", "rql")
    cases.append(([str(clash)], "agent name 'rql' is a built-in agent's"))
    empty = tmp_path / "empty.py"
    empty.write_text("X = 1\n")
    cases.append(([str(empty)], "defines no agent"))
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    cases.append(([str(broken)], "the agent file failed to load (SyntaxError"))
    cases.append(([str(tmp_path / "missing.py")], "no such file"))
    cases.append((["nosuch_pkg_rql.agents"], "no module named 'nosuch_pkg_rql'"))
    cases.append((["no-such-agent"], "unknown agent 'no-such-agent'"))
    two = tmp_path / "two.py"
    two.write_text(PLUGIN.format(name="two-a") + PLUGIN.format(name="two-b").replace("SPECS = [", "SPECS += ["))
    cases.append(([str(two)], "defines the agents two-a, two-b; pick one with --agent"))
    first = write_plugin(tmp_path / "first" / "same.py", "same-name")
    second = write_plugin(tmp_path / "second" / "same.py", "same-name")
    second.write_text(second.read_text() + "\n# another method\n")
    cases.append(([str(first), str(second)], "agent name 'same-name' is already taken by the agent from file"))
    for refs, expected in cases:
        rc = [main(["train", "--agent", ref, "--task", TASK, "--print-config"]) for ref in refs]
        out = capsys.readouterr()
        err = out.err.strip().splitlines()
        assert rc[-1] == 2 and len(err) == 1 and expected in err[0], (refs, err)
    # FILE:NAME picks one of several; the choice shows in --print-config.
    assert main(["train", "--agent", f"{two}:two-b", "--task", TASK, "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["horizon"] == 1
    assert "two-b" in plugins.SOURCES and plugins.SOURCES["two-b"]["path"] == str(two.resolve())


def test_a_file_shipped_with_a_sweep_trial_loads_where_the_file_is_absent(tmp_path):
    """What a trial on another node gets: the record and the file's bytes; it registers the agent under the
    recorded path (the file need not exist there) and refuses bytes that do not match the recorded hash."""
    from rql.agents import REGISTRY, plugins

    plugin = write_plugin(tmp_path / "shipped.py", "shipped-bc")
    name = plugins.resolve(str(plugin))
    record = plugins.shipped(name)
    assert record["sha256"] == plugins.SOURCES[name]["sha256"] and record["code"]
    del REGISTRY[name], plugins.SOURCES[name]  # as on a worker that never saw it
    plugin.unlink()
    plugins.ensure(name, record, "trial 0")
    assert name in REGISTRY and plugins.SOURCES[name]["path"] == record["path"]
    del REGISTRY[name], plugins.SOURCES[name]
    tampered = dict(record, code=__import__("base64").b64encode(b"SPECS = []\n").decode())
    with pytest.raises(rql.RQLError, match="does not match its recorded sha256"):
        plugins.ensure(name, tampered, "trial 0")
