"""Published results beside our runs: ``rql published`` and ``rql compare --published``."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys

import pytest

from rql.cli import main
from rql.published import SUITE_FILE

from conftest import record_ogbench_file
from test_compare import write_run

CUBE_DOUBLE_1 = "cube-double-play-singletask-task1-v0"
CUBE_DOUBLE_2 = "cube-double-play-singletask-task2-v0"  # the task tests/conftest.py records data for


@pytest.fixture(scope="module")
def raw():
    return json.loads(SUITE_FILE.read_text())["results"]


def mean(xs):
    return sum(xs) / len(xs)


def published_json(capsys, *args) -> dict:
    assert main(["published", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_published_cells_equal_the_file(raw, capsys):
    doc = published_json(capsys)
    cells = doc["cells"]
    assert doc["step"] == 1_000_000 and len(doc["rows"]) == 10
    # The RQL paper's "best other method" column, computed here from the curves (index 19 = 1M).
    assert cells["cube-double-play"]["DSRL"]["mean"] == pytest.approx(mean(raw["cube-double-play"]["DSRL"][19]))
    assert cells["cube-double-play"]["DSRL"]["mean"] == pytest.approx(0.740, abs=5e-4)
    assert cells["antmaze-large-navigate"]["ReBRAC"]["mean"] == pytest.approx(0.945, abs=5e-4)
    assert cells["humanoidmaze-medium-navigate"]["IFQL"]["mean"] == pytest.approx(0.858, abs=5e-4)
    assert cells["cube-double-play"]["DSRL"]["seeds"] == 12
    lo, hi = cells["cube-double-play"]["DSRL"]["low"], cells["cube-double-play"]["DSRL"]["high"]
    assert lo < 0.740 < hi and hi - lo < 0.1
    # RQL's own numbers: the environment mean of its five tasks, no seeds.
    assert cells["scene-play"]["RQL"]["mean"] == pytest.approx(mean([1.00, 0.72, 0.96, 1.00, 0.79]))
    # The best mean of each row is marked: DSRL on cube-double, ReBRAC on antmaze-large.
    assert doc["best"]["cube-double-play"] == ["DSRL"]
    assert doc["best"]["antmaze-large-navigate"] == ["ReBRAC"]


def test_published_step_env_and_methods(raw, capsys):
    doc = published_json(capsys, "--step", "500000", "--env", "scene-play", "--methods", "dsrl,cgql-m,rql")
    assert doc["step"] == 500_000 and doc["methods"] == ["DSRL", "CGQL-M", "RQL"]
    task = "scene-play-singletask-task3-v0"
    assert doc["rows"][2] == task
    # --step 500000 is the 10th point (index 9).
    assert doc["cells"][task]["CGQL-M"]["mean"] == pytest.approx(mean(raw[task]["CGQL-M"][9]))
    assert doc["cells"][task]["CGQL-M"]["step"] == 500_000
    assert doc["cells"][task]["RQL"] is None  # RQL's table is at 1M only
    # A step between points takes the one below it.
    doc = published_json(capsys, "--step", "549999", "--methods", "FQL")
    assert doc["cells"]["scene-play"]["FQL"]["mean"] == pytest.approx(mean(raw["scene-play"]["FQL"][9]))


def test_published_text_and_csv(raw, capsys):
    assert main(["published", "--env", "cube-double-play", "--methods", "rql,dsrl,fql"]) == 0
    text = capsys.readouterr().out.splitlines()
    row = next(line for line in text if line.startswith(CUBE_DOUBLE_1))
    dsrl = mean(raw[CUBE_DOUBLE_1]["DSRL"][19])
    assert f"{100 * dsrl:.1f}±" in row and "*" in row.split()[2]  # DSRL is the best of this row
    assert main(["published", "--csv", "--methods", "qsm"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    quad = next(r for r in rows if r["row"] == "cube-quadruple-play")
    assert float(quad["success_mean"]) == pytest.approx(mean(raw["cube-quadruple-play"]["QSM"][19]), rel=1e-5)
    assert float(quad["success_ci_low"]) < float(quad["success_mean"]) < float(quad["success_ci_high"])


@pytest.mark.parametrize("content", [None, "{not json", '{"results": 3}'])
def test_bad_published_file_one_line(tmp_path, content):
    path = tmp_path / "curves.json"
    if content is not None:
        path.write_text(content)
    for cmd in (["published"], ["compare", str(tmp_path), "--published"]):
        r = subprocess.run([sys.executable, "-m", "rql.cli", *cmd, "--published-file", str(path)],
                           capture_output=True, text=True)
        assert r.returncode != 0
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
        if cmd[0] == "published":
            assert str(path) in lines[0] and "published" in lines[0]


def test_bad_published_options_one_line(capsys):
    assert main(["published", "--step", "1000"]) == 2
    assert main(["published", "--methods", "nope"]) == 2
    assert main(["published", "--env", "nowhere-play"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)


def test_compare_published_verdicts_and_protocol(raw, tmp_path, capsys):
    """Verdicts against the published interval, and the settings that differ from the protocol, on run
    directories in the documented format at 100,000 updates."""
    from rql.agents import build_config

    root = tmp_path / "runs"
    pub_fql = raw[CUBE_DOUBLE_1]["FQL"][1]  # the point at 100,000 updates
    protocol = json.loads(json.dumps(dataclasses.asdict(build_config("fql", CUBE_DOUBLE_1))))
    cases = {"inside": mean(pub_fql), "above": 1.0, "below": 0.0}
    for i, (want, success) in enumerate(cases.items()):
        d = write_run(root / want, "fql", CUBE_DOUBLE_1, i, {50_000: (0.0, 0.0, 0.1), 100_000: (success, 0.0, 1.0)},
                      steps=100_000)
        cfg = json.loads((d / "config.json").read_text())
        cfg["label"] = f"fql-{want}"
        cfg["agent_config"] = dict(protocol, alpha=protocol["alpha"] * (2 if want == "above" else 1))
        (d / "config.json").write_text(json.dumps(cfg))
    assert main(["compare", str(root), "--published", "--out", str(tmp_path / "cmp")]) == 0
    rows = {r["agent"]: r for r in csv.DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    for want in cases:
        r = rows[f"fql-{want}"]
        assert r["vs_published"] == want
        assert r["published_method"] == "FQL" and r["published_step"] == "100000"
        assert float(r["published_mean"]) == pytest.approx(mean(pub_fql), rel=1e-5)
    assert rows["fql-above"]["differs_from_protocol"] == "alpha"
    assert rows["fql-inside"]["differs_from_protocol"] == ""
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "differs: alpha" in md and "as published" in md


def test_compare_published_on_real_runs(raw, tmp_path, monkeypatch, capsys):
    """Two short real runs (two seeds of one group) of a method with a published counterpart, and a run
    directory of an agent without one: the plot's data holds the published band, the table says that no
    published point lies at or below 60 updates, the small networks are named as differing from the
    protocol, and the run without a counterpart gets one note."""
    import rql.data.loading as loading
    from rql.agents import build_config
    from rql.training import RunConfig, train_group

    make_env = loading.make_env  # evaluation episodes of 20 steps keep this test fast
    monkeypatch.setattr(loading, "make_env", lambda task, **kw: make_env(task, max_episode_steps=20, **kw))
    data = record_ogbench_file(tmp_path / "cube-double-play-v0.npz", task=CUBE_DOUBLE_2, episodes=2, steps=30)
    tiny = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, batch_size=16, horizon=2)
    run = RunConfig(task=CUBE_DOUBLE_2, dataset_path=str(data), steps=60, eval_every=0, eval_episodes=2, eval_envs=2,
                    log_every=30, progress=False, tensorboard=False)
    root = tmp_path / "runs"
    train_group(run, "fql", build_config("fql", CUBE_DOUBLE_2, None, tiny), [0, 1],
                [root / "fql-s0", root / "fql-s1"], log=lambda *a, **k: None)
    write_run(root / "bc", "flow-bc", CUBE_DOUBLE_2, 0, {50: (0.0, 0.0, 0.5), 100: (0.5, 0.1, 0.9)}, steps=100)
    capsys.readouterr()
    assert main(["compare", str(root), "--published", "--out", str(tmp_path / "cmp")]) == 0
    out, err = capsys.readouterr()
    notes = [line for line in err.splitlines() if "no published result" in line]
    assert len(notes) == 1 and "flow-bc" in notes[0]

    plotted = json.loads((tmp_path / "cmp" / "plot_data.json").read_text())[CUBE_DOUBLE_2]
    band = plotted["published"]["fql"]
    first = raw[CUBE_DOUBLE_2]["FQL"][0]  # the published curve up to its first point (50,000 updates)
    assert band["step"] == [50_000] and band["method"] == "FQL"
    assert band["mean"][0] == pytest.approx(mean(first))
    assert band["low"][0] < band["mean"][0] < band["high"][0] or min(first) == max(first)
    assert plotted["runs"]["fql"]["step"] == [60] and "flow-bc" not in plotted["published"]

    rows = {r["agent"]: r for r in csv.DictReader((tmp_path / "cmp" / "comparison.csv").open())}
    assert rows["fql"]["seeds"] == "2"
    assert rows["fql"]["published_method"] == "FQL" and rows["fql"]["published_step"] == ""
    assert rows["fql"]["vs_published"] == ""
    assert {"actor_hidden_dims", "ensemble", "value_hidden_dims"} <= set(rows["fql"]["differs_from_protocol"].split(";"))
    assert rows["flow-bc"]["published_method"] == ""
    assert "none at or below this step" in out


def test_sweep_status_published(raw, tmp_path, capsys):
    """'rql sweep status OUT --published' on a sweep folder (sweep.json and its run directories)."""
    out = tmp_path / "sweep"
    cells = []
    for agent, success in (("dsrl", 0.0), ("flow-bc", 0.5)):
        d = f"{CUBE_DOUBLE_1}/{agent}/s0"
        write_run(out / d, agent, CUBE_DOUBLE_1, 0, {50_000: (0.0, 0.0, 0.1), 100_000: (success, 0.0, 1.0)},
                  steps=100_000)
        cells.append({"task": CUBE_DOUBLE_1, "agent": agent, "label": agent, "seed": 0, "dir": d, "status": "done"})
    (out / "sweep.json").write_text(json.dumps({"cells": cells, "settings": {"run": {"steps": 100_000}}}))
    assert main(["sweep", "status", str(out), "--published"]) == 0
    text = capsys.readouterr().out
    assert "no published result for flow-bc" in text
    rows = {r["agent"]: r for r in csv.DictReader((out / "compare" / "comparison.csv").open())}
    assert rows["dsrl"]["vs_published"] == "below" and rows["dsrl"]["published_method"] == "DSRL"
    assert float(rows["dsrl"]["published_mean"]) == pytest.approx(mean(raw[CUBE_DOUBLE_1]["DSRL"][1]), rel=1e-5)
