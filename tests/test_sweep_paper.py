"""``rql sweep init --paper``: the RQL paper's protocol as a sweep file, checked with ``rql sweep --dry-run``
(nothing is trained and Ray is never started here)."""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib

import pytest

import rql.sweep.execution as execution
from rql.agents import REGISTRY, build_config
from rql.agents.suite import SUITE_METHODS
from rql.cli import main


def cell_lines(out: str) -> dict[tuple[str, str, str], str]:
    """(task, agent, seed) -> the values printed for that cell by --dry-run."""
    cells = {}
    for line in out.splitlines():
        parts = line.split("  ")
        if len(parts) == 4 and parts[2].startswith("s"):
            cells[(parts[0], parts[1], parts[2])] = parts[3]
    return cells


def one_line_error(capsys, argv, needle):
    assert main(argv) == 2, argv
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], err


def test_paper_file_expands_to_tasks_methods_seeds_with_reference_settings(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(execution, "_start_ray", lambda *a: pytest.fail("--dry-run started Ray"))
    f = tmp_path / "paper.toml"
    assert main(["sweep", "init", "--paper", "scene-play", "--out", str(f)]) == 0
    doc = tomllib.loads(f.read_text())
    methods = ["rql"] + [m for m in SUITE_METHODS if m in REGISTRY]
    assert doc["agents"] == methods and doc["seeds"] == list(range(12))
    assert doc["tasks"] == [f"scene-play-singletask-task{k}-v0" for k in range(1, 6)]
    assert (doc["steps"], doc["eval_every"], doc["eval_episodes"]) == (1_000_000, 100_000, 50)
    text = f.read_text()
    assert "#   fql: alpha = 300.0" in text and "#   rql: alpha = 3.0, expectile = 0.7" in text
    capsys.readouterr()

    assert main(["sweep", "--config", str(f), "--dry-run"]) == 0
    out = capsys.readouterr().out
    cells = cell_lines(out)
    assert len(cells) == 5 * len(methods) * 12
    assert f"sweep: {5 * len(methods) * 12} cells (5 task(s) x {len(methods)} agent variant(s) x 12 seed(s))" in out
    assert not (tmp_path / "sweeps").exists()  # nothing written
    t3 = "scene-play-singletask-task3-v0"
    # The paper's settings of RQL on scene, and the suite's per-environment values (reproduce script).
    assert {"alpha=3.0", "expectile=0.7", "horizon=5", "sparse=true"} <= set(cells[(t3, "rql", "s11")].split())
    assert "alpha=300.0" in cells[(t3, "fql", "s0")].split()
    assert {"horizon=5", "sparse=true"} <= set(cells[(t3, "ifql", "s0")].split())
    if "dsrl" in REGISTRY:
        assert "noise_scale=0.4" in cells[(t3, "dsrl", "s0")].split()
    # Every cell shows exactly the fields its config changes from the agent's defaults.
    for (task, agent, _), values in list(cells.items())[:: 12 * 5]:
        cfg = build_config(agent, task)
        default = type(cfg)()
        changed = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(default, f.name)}
        assert {v.split("=")[0] for v in values.split()} == changed, (agent, values)


def test_methods_and_seeds_options_and_one_line_errors(tmp_path, capsys):
    f = tmp_path / "two.toml"
    assert main(["sweep", "init", "--paper", "cube-double-play,puzzle-3x3-play", "--methods", "rql,fql",
                 "--seeds", "3", "--out", str(f)]) == 0
    doc = tomllib.loads(f.read_text())
    assert doc["agents"] == ["rql", "fql"] and doc["seeds"] == [0, 1, 2] and len(doc["tasks"]) == 10
    capsys.readouterr()
    assert main(["sweep", "--config", str(f), "--out", str(tmp_path / "o"), "--dry-run"]) == 0
    assert len(cell_lines(capsys.readouterr().out)) == 2 * 5 * 2 * 3

    base = ["sweep", "init", "--out", str(tmp_path / "x.toml")]
    one_line_error(capsys, base + ["--paper", "scene"], "unknown environment 'scene'")
    one_line_error(capsys, base + ["--paper", "scene-play", "--methods", "rql,nope"], "unknown agent 'nope'")
    one_line_error(capsys, base + ["--paper", "scene-play", "--seeds", "0"], "--seeds must be at least 1")
    one_line_error(capsys, ["sweep", "init", "--paper", "scene-play", "--out", str(f)], "the file exists")
    assert not (tmp_path / "x.toml").exists()


def test_sweep_says_in_one_line_what_data_to_provide(tmp_path, capsys):
    f = tmp_path / "mazes.toml"
    assert main(["sweep", "init", "--paper", "antmaze-large-navigate,cube-quadruple-play,scene-play",
                 "--methods", "rql", "--seeds", "1", "--out", str(f)]) == 0
    text = f.read_text()
    assert "PROVIDE antmaze-large-navigate-v0.npz" in text and "PROVIDE OGBench's 100M set cube-quadruple" in text
    assert "PROVIDE" not in next(line for line in text.splitlines() if line.startswith("#   scene-play"))
    capsys.readouterr()
    data = tmp_path / "data"
    data.mkdir()
    # Every cell has an invalid setting, so the sweep ends before Ray; the data line comes first.
    argv = ["sweep", "--config", str(f), "--out", str(tmp_path / "o"), "--dataset-dir", str(data),
            "--set", "rql.horizon=abc", "--no-compare"]
    assert main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    notes = [line for line in lines if line.startswith("note:")]
    assert len(notes) == 1 and lines[0] == notes[0]
    assert "antmaze-large-navigate-v0.npz" in notes[0] and "cube-quadruple-play-100m-v0" in notes[0]
    assert "scene-play" not in notes[0]
    # With the download in the dataset folder and a dataset path, there is nothing left to provide.
    (data / "antmaze-large-navigate-v0.npz").write_bytes(b"")
    assert main(argv + ["--dry-run"]) == 0
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "antmaze" not in notes[0] and "cube-quadruple-play-100m-v0" in notes[0]
    assert main(argv + ["--dry-run", "--dataset-path", str(data / "antmaze-large-navigate-v0.npz")]) == 0
    assert not any(line.startswith("note:") for line in capsys.readouterr().out.splitlines())
    assert pathlib.Path(tmp_path / "o" / "sweep.json").is_file()  # the failed run above recorded its cells
