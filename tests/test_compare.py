"""``rql compare`` on run directories written in the format ``rql train`` documents."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from rql.cli import main
from rql.compare import compare
from rql.errors import RQLError

TASK = "cube-single-play-singletask-task2-v0"
OTHER = "scene-play-singletask-task2-v0"
T_975_DF1 = 12.706204736  # Student t quantile 0.975 with 1 degree of freedom
COLUMNS = ["step", "time_s", "updates_per_s", "loss/total", "eval/success", "eval/success_ci_low",
           "eval/success_ci_high", "eval/return", "eval/length"]


def write_run(path, agent, task, seed, evals, steps=300, summary=True):
    """A run directory as 'rql train' leaves it; ``evals`` maps step -> (success, ci_low, ci_high).
    The absolute paths inside config.json point at another machine on purpose."""
    path.mkdir(parents=True)
    config = {
        "rql_version": "0.1.0",
        "agent": agent,
        "agent_config": {"horizon": 5},
        "run": {"task": task, "seed": seed, "steps": steps, "run_dir": f"/elsewhere/runs/{agent}-s{seed}",
                "dataset_path": "/elsewhere/data/cube-single-play-v0.npz"},
        "dataset": {"source": "/elsewhere/data/cube-single-play-v0.npz", "size": 100, "episodes": 2},
        "obs_dim": 28, "action_dim": 5,
    }
    (path / "config.json").write_text(json.dumps(config))
    with (path / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        for step in range(50, steps + 1, 50):
            row = {"step": step, "time_s": step / 100, "updates_per_s": 100.0, "loss/total": 1.0 / step}
            if step in evals:
                s, lo, hi = evals[step]
                row.update({"eval/success": s, "eval/success_ci_low": lo, "eval/success_ci_high": hi,
                            "eval/return": -10.0, "eval/length": 200.0})
            w.writerow(row)
    if summary:
        ev = [{"step": s, "success": v[0], "success_ci_low": v[1], "success_ci_high": v[2], "return": -10.0,
               "length": 200.0, "episodes": 10} for s, v in sorted(evals.items())]
        (path / "summary.json").write_text(json.dumps(
            {"agent": agent, "task": task, "steps": steps, "seed": seed, "final_eval": ev[-1] if ev else None,
             "evals": ev}))
    return path


FINALS = {("rql", 0): 0.6, ("rql", 1): 0.8, ("fql", 0): 0.3, ("fql", 1): 0.4}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for (agent, seed), final in FINALS.items():
        evals = {100: (final / 2, 0.0, 0.5), 200: (final * 0.75, 0.1, 0.9), 300: (final, final - 0.2, final + 0.1)}
        write_run(root / TASK / f"{agent}-s{seed}", agent, TASK, seed, evals)
    # One seed on another task, unfinished (no summary.json yet): reported with its Wilson interval.
    write_run(root / "other" / "rebrac-s3", "rebrac", OTHER, 3, {150: (0.2, 0.05, 0.5), 250: (0.5, 0.24, 0.76)},
              summary=False)
    return root


def t_expected(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = T_975_DF1 * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def test_table_csv_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    # Two roots naming overlapping runs: each run is counted once.
    assert main(["compare", str(runs), str(runs / TASK / "rql-s0"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out

    rows = {(r["task"], r["agent"]): r for r in csv.DictReader((out / "comparison.csv").open())}
    assert set(rows) == {(TASK, "rql"), (TASK, "fql"), (OTHER, "rebrac")}
    for agent in ("rql", "fql"):
        mean, lo, hi = t_expected([FINALS[(agent, 0)], FINALS[(agent, 1)]])
        r = rows[(TASK, agent)]
        assert float(r["success_mean"]) == pytest.approx(mean, abs=1e-5)
        assert float(r["success_ci_low"]) == pytest.approx(lo, abs=1e-5)
        assert float(r["success_ci_high"]) == pytest.approx(hi, abs=1e-5)
        assert r["interval"] == "t" and r["seeds"] == "2" and r["seed_list"] == "0;1"
        assert r["steps_min"] == r["steps_max"] == "300"
        # And the same numbers in the printed markdown table (percent, one decimal).
        line = next(ln for ln in printed.splitlines() if f"| {TASK} | {agent} |" in ln)
        assert f"| {100 * mean:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}]" in line
        assert line.rstrip().endswith("| 2 | 300 |")
    # rql: values 0.6, 0.8 -> mean 0.7, half-width 12.706 * 0.1414 / 1.414 = 1.27 -> clipped to [0, 1].
    assert float(rows[(TASK, "rql")]["success_ci_low"]) == 0.0
    single = rows[(OTHER, "rebrac")]
    assert single["interval"] == "wilson" and single["seeds"] == "1" and single["steps_max"] == "250"
    assert (float(single["success_mean"]), float(single["success_ci_low"]), float(single["success_ci_high"])) == (
        0.5, 0.24, 0.76)

    md = (out / "comparison.md").read_text()
    assert "| task | agent | success % | 95% interval | seeds | steps |" in md
    for task in (TASK, OTHER):
        png = out / f"{task}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image

        img = matplotlib.image.imread(png)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
        assert f"]({png.name})" in md


def test_curve_band_over_seeds(runs):
    from rql.compare import curve, find_runs, read_run

    rql_runs = [read_run(d) for d in find_runs([str(runs / TASK)]) if "rql" in d.name]
    steps, means, lows, highs = curve(rql_runs)
    assert steps == [100, 200, 300]
    np.testing.assert_allclose(means, [0.35, 0.525, 0.7])
    assert all(lo <= m <= hi for lo, m, hi in zip(lows, means, highs))


def test_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RQLError, match="no run directories found"):
        compare([str(empty)], tmp_path / "out")
    assert main(["compare", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run directories found") and "\n" not in err

    assert main(["compare", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err

    bad = write_run(tmp_path / "bad" / "run", "rql", TASK, 0, {100: (0.5, 0.2, 0.8)})
    text = (bad / "metrics.csv").read_text().replace("0.5,0.2,0.8", "oops,0.2,0.8")
    (bad / "metrics.csv").write_text(text)
    assert main(["compare", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unreadable metrics.csv" in err and "\n" not in err

    (bad / "metrics.csv").write_text("step,loss\n1,2\n")
    with pytest.raises(RQLError, match="no column eval/success"):
        compare([str(bad)], tmp_path / "o")

    # A run that has not evaluated yet is left out; with nothing else, that is an error.
    (bad / "metrics.csv").write_text(",".join(COLUMNS) + "\n50,1,1,1,,,,,\n")
    with pytest.raises(RQLError, match="has an evaluation yet"):
        compare([str(bad)], tmp_path / "o")


def test_agreeing_seeds_keep_the_pooled_episode_uncertainty(tmp_path):
    from rql.compare import read_run, summarise
    from rql.evaluation import wilson_interval

    runs = []
    for seed in (0, 1):
        d = write_run(tmp_path / f"rql-s{seed}", "rql", TASK, seed, {300: (0.12, 0.05, 0.24)})
        cfg = json.loads((d / "config.json").read_text())
        cfg["run"]["eval_episodes"] = 50
        (d / "config.json").write_text(json.dumps(cfg))
        runs.append(read_run(d))
    g = summarise(TASK, "rql", runs)
    lo, hi = wilson_interval(12, 100)
    assert g.interval == "t+pooled"
    assert g.success_mean == pytest.approx(0.12)
    assert (g.ci_low, g.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert g.ci_low < 0.12 < g.ci_high
