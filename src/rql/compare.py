"""``rql compare``: tabulate and plot finished (or running) training runs by agent and task.

A run directory is any folder holding ``config.json`` and ``metrics.csv`` (as ``rql train``
writes them). Runs are grouped by (agent, task); a top-level ``"label"`` in config.json (``rql
sweep`` writes one per agent-field variant, e.g. ``rql-alpha=3``) stands in for the agent's name,
so variants get rows of their own. Each group's final success rate is the mean over seeds of each
run's last evaluation, with a 95% interval: a t-interval over the seeds' values when there are two
or more seeds (widened, when the episode counts are known, to at least the Wilson interval of all
their evaluation episodes pooled, so agreeing seeds never look exact), else the single run's Wilson
interval over its evaluation episodes.

Only files inside each run directory are read, by paths relative to it, so runs copied from other
machines compare as they are.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import re
import sys
from typing import Annotated

import tyro

from rql.errors import RQLError


@dataclasses.dataclass
class CompareArgs:
    runs: Annotated[list[str], tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]
    """Run directories made by 'rql train', or folders containing run directories (searched recursively)."""
    out: Annotated[str, tyro.conf.arg(metavar="DIR")] = "comparison"
    """Folder written: comparison.md, comparison.csv, plot_data.json and one learning-curve PNG per task."""
    published: bool = False
    """Put the published results beside each (task, agent) that has a counterpart (the QAM suite's curves; RQL's
    own table at 1M): the plot gains the published mean curve with its 95% band, the table the published success
    at the last published step at or below the run's last step, whether ours lies inside, above or below that
    interval, and what in the run's agent settings differs from the published protocol."""
    published_file: str | None = None
    """With --published: another copy of the suite's curves file (default: the one shipped with rql)."""


@dataclasses.dataclass
class Run:
    path: pathlib.Path
    agent: str
    task: str
    seed: int
    evals: list[dict]
    """Evaluation points in step order: step, success, success_ci_low, success_ci_high."""
    episodes: int = 0
    """Episodes per evaluation (from config.json; 0 when unknown)."""
    base_agent: str = ""
    """The registered agent's name (``agent`` may be a sweep's variant label)."""
    agent_config: dict = dataclasses.field(default_factory=dict)
    """The run's resolved agent settings (config.json)."""

    @property
    def final(self) -> dict:
        return self.evals[-1]


@dataclasses.dataclass
class Group:
    task: str
    agent: str
    runs: list[Run]
    success_mean: float
    ci_low: float
    ci_high: float
    interval: str
    """'t' (over seeds) or 'wilson' (one run, over its episodes)."""

    @property
    def seeds(self) -> list[int]:
        return [r.seed for r in self.runs]

    @property
    def steps(self) -> tuple[int, int]:
        s = [r.final["step"] for r in self.runs]
        return min(s), max(s)


# ----------------------------------------------------------------------------- finding runs


def is_run_dir(path: pathlib.Path) -> bool:
    return (path / "config.json").is_file() and (path / "metrics.csv").is_file()


def find_runs(paths: list[str]) -> list[pathlib.Path]:
    """Run directories named by ``paths`` (each a run directory or a folder containing some)."""
    found: list[pathlib.Path] = []
    seen: set[pathlib.Path] = set()
    for p in paths:
        root = pathlib.Path(p).expanduser()
        if not root.exists():
            raise RQLError(f"{p}: no such file or directory; give run directories made by 'rql train'")
        if not root.is_dir():
            raise RQLError(f"{p}: not a directory; give run directories (or folders containing them)")
        candidates = []
        if is_run_dir(root):
            candidates.append(root)
        else:
            for dirpath, dirnames, _ in os.walk(root):
                d = pathlib.Path(dirpath)
                if is_run_dir(d):
                    candidates.append(d)
                    dirnames[:] = []  # a run's own subfolders (checkpoints, tb) hold no runs
                else:
                    dirnames.sort()
        for c in candidates:
            key = c.resolve()
            if key not in seen:
                seen.add(key)
                found.append(c)
    return found


def _float(value: str, what: str, path: pathlib.Path) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RQLError(f"{path}: unreadable metrics.csv ({what} is '{value}', not a number)") from None


def read_run(run_dir: pathlib.Path) -> Run:
    """Agent, task and seed from config.json (summary.json when present), evaluations from metrics.csv."""
    try:
        doc = json.loads((run_dir / "config.json").read_text())
        agent = str(doc["agent"])
        label = doc.get("label")  # a variant name (e.g. 'rql-alpha=3', written by 'rql sweep'): its own row
        run_cfg = doc.get("run", {})
        seed = int(run_cfg.get("seed", 0))
        episodes = int(run_cfg.get("final_eval_episodes") or run_cfg.get("eval_episodes") or 0)
        task = run_cfg.get("task")
        if not task:
            source = run_cfg.get("dataset_path") or (doc.get("dataset") or {}).get("source") or "dataset"
            task = pathlib.PurePath(str(source)).stem
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise RQLError(f"{run_dir / 'config.json'}: unreadable run configuration ({e})") from None
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
            agent = str(summary.get("agent") or agent)
            task = str(summary.get("task") or task)
            seed = int(summary.get("seed", seed))
        except (OSError, json.JSONDecodeError, TypeError, ValueError, AttributeError) as e:
            raise RQLError(f"{summary_path}: unreadable summary ({e})") from None
    base_agent = agent
    if label:
        agent = str(label)

    path = run_dir / "metrics.csv"
    need = ("step", "eval/success", "eval/success_ci_low", "eval/success_ci_high")
    evals: dict[int, dict] = {}
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in need if c not in (reader.fieldnames or [])]
            if missing:
                raise RQLError(f"{path}: unreadable metrics.csv (no column {', '.join(missing)}); "
                               "is it a metrics file written by 'rql train'?")
            for row in reader:
                if not (row.get("eval/success") or "").strip():
                    continue
                step = int(_float(row["step"], "step", path))
                evals[step] = {
                    "step": step,
                    "success": _float(row["eval/success"], "eval/success", path),
                    "success_ci_low": _float(row["eval/success_ci_low"], "eval/success_ci_low", path),
                    "success_ci_high": _float(row["eval/success_ci_high"], "eval/success_ci_high", path),
                }
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RQLError(f"{path}: unreadable metrics.csv ({e})") from None
    agent_config = doc.get("agent_config") if isinstance(doc.get("agent_config"), dict) else {}
    return Run(run_dir, agent, task, seed, [evals[s] for s in sorted(evals)], episodes, base_agent, agent_config)


# ----------------------------------------------------------------------------- statistics


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student-t interval of the mean, clipped to [0, 1] (success rates)."""
    from scipy.stats import t as student_t

    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def summarise(task: str, agent: str, runs: list[Run]) -> Group:
    runs = sorted(runs, key=lambda r: (r.seed, str(r.path)))
    finals = [r.final["success"] for r in runs]
    if len(runs) >= 2:
        mean, lo, hi = t_interval(finals)
        interval = "t"
        if all(r.episodes > 0 for r in runs):
            # Seeds that happen to agree do not make the estimate exact: never report less
            # uncertainty than the Wilson interval of all their evaluation episodes pooled.
            from rql.evaluation import wilson_interval

            n = sum(r.episodes for r in runs)
            k = round(sum(r.final["success"] * r.episodes for r in runs))
            w_lo, w_hi = wilson_interval(k, n)
            if w_lo < lo or w_hi > hi:
                lo, hi, interval = min(lo, w_lo), max(hi, w_hi), "t+pooled"
    else:
        f = runs[0].final
        mean, lo, hi, interval = f["success"], f["success_ci_low"], f["success_ci_high"], "wilson"
    return Group(task, agent, runs, mean, lo, hi, interval)


def group_runs(runs: list[Run]) -> list[Group]:
    by_key: dict[tuple[str, str], list[Run]] = {}
    for r in runs:
        by_key.setdefault((r.task, r.agent), []).append(r)
    return [summarise(task, agent, rs) for (task, agent), rs in sorted(by_key.items())]


def curve(runs: list[Run]) -> tuple[list[int], list[float], list[float], list[float]]:
    """Mean success over seeds at every evaluation step any seed reached, with a 95% band
    (t-interval over the seeds evaluated at that step; a single seed's Wilson interval)."""
    steps = sorted({e["step"] for r in runs for e in r.evals})
    means, lows, highs = [], [], []
    for s in steps:
        points = [e for r in runs for e in r.evals if e["step"] == s]
        if len(points) >= 2:
            m, lo, hi = t_interval([p["success"] for p in points])
        else:
            m, lo, hi = points[0]["success"], points[0]["success_ci_low"], points[0]["success_ci_high"]
        means.append(m)
        lows.append(lo)
        highs.append(hi)
    return steps, means, lows, highs


# ----------------------------------------------------------------------------- published results


@dataclasses.dataclass
class Beside:
    """A group's published counterpart."""

    name: str
    """The published method name (e.g. 'DSRL', 'RQL')."""
    cell: object | None
    """The published point at or below the group's last step (``rql.published.Cell``), or None before 50,000."""
    verdict: str
    """'inside', 'above' or 'below' the published interval ('' without a point)."""
    differs: list[str]
    """Agent settings of the runs that differ from the published protocol's (``--task``'s defaults)."""
    curve: list
    """Published points up to the first one at or after the group's last step."""


def protocol_differences(runs: list[Run]) -> list[str]:
    """Agent fields whose value in any run differs from what ``--task`` gives the agent (the protocol)."""
    from rql.agents import REGISTRY, build_config

    differs: set[str] = set()
    for r in runs:
        if r.base_agent not in REGISTRY or not r.agent_config:
            continue
        protocol = dataclasses.asdict(build_config(r.base_agent, r.task))
        for k, v in protocol.items():
            if k in r.agent_config and json.loads(json.dumps(v)) != r.agent_config[k]:
                differs.add(k)
    return sorted(differs)


def published_beside(groups: list[Group], pub, warn) -> dict[tuple[str, str], Beside]:
    """The counterpart of each group that has one; one note for each group without one."""
    from rql.published import verdict

    out = {}
    for g in groups:
        base = g.runs[0].base_agent or g.agent
        if not pub.has(g.task, base):
            warn(f"note: no published result for {g.agent} on {g.task} (published: RQL and the QAM suite's 16 methods "
                 "on the RQL paper's 10 environments x 5 tasks); compared without one")
            continue
        last = g.steps[1]
        cell = pub.cell(g.task, base, last)
        out[(g.task, g.agent)] = Beside(
            pub.method_name(base), cell, verdict(g.success_mean, cell) if cell else "",
            protocol_differences(g.runs), pub.curve(g.task, base, up_to=last),
        )
    return out


def _beside_text(b: Beside | None) -> tuple[str, str, str]:
    if b is None:
        return "none", "", ""
    if b.cell is None:
        point, where = f"none at or below this step ({b.name}'s first point is 50000)", ""
    elif b.cell.seeds:
        point = f"{_pct(b.cell.mean)} [{_pct(b.cell.low)}, {_pct(b.cell.high)}] ({b.name}, step {b.cell.step})"
        where = b.verdict
    else:
        point, where = f"{_pct(b.cell.mean)} ({b.name}, step {b.cell.step}, no interval)", b.verdict
    protocol = "as published" if not b.differs else "differs: " + ", ".join(b.differs)
    return point, where, protocol


# ----------------------------------------------------------------------------- outputs


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}"


def _steps_text(g: Group) -> str:
    lo, hi = g.steps
    return str(lo) if lo == hi else f"{lo}-{hi}"


def plot_name(task: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", task) + ".png"


def markdown(groups: list[Group], beside: dict | None = None) -> str:
    head = "| task | agent | success % | 95% interval | seeds | steps |"
    rule = "|---|---|---|---|---|---|"
    if beside is not None:
        head += " published % [95%] | ours vs published | settings vs protocol |"
        rule += "---|---|---|"
    lines = [head, rule]
    for g in groups:
        kind = {"t": "t over seeds", "t+pooled": "t over seeds, widened to pooled Wilson"}.get(
            g.interval, "Wilson, 1 run")
        line = (
            f"| {g.task} | {g.agent} | {_pct(g.success_mean)} | [{_pct(g.ci_low)}, {_pct(g.ci_high)}] ({kind}) "
            f"| {len(g.runs)} | {_steps_text(g)} |"
        )
        if beside is not None:
            line += " {} | {} | {} |".format(*_beside_text(beside.get((g.task, g.agent))))
        lines.append(line)
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["task", "agent", "success_mean", "success_ci_low", "success_ci_high", "interval", "seeds",
               "seed_list", "steps_min", "steps_max", "run_success"]
PUBLISHED_COLUMNS = ["published_method", "published_step", "published_mean", "published_ci_low", "published_ci_high",
                     "vs_published", "differs_from_protocol"]


def _published_row(b: Beside | None) -> dict:
    if b is None:
        return {k: "" for k in PUBLISHED_COLUMNS}
    c = b.cell
    return {
        "published_method": b.name,
        "published_step": c.step if c else "",
        "published_mean": f"{c.mean:.6g}" if c else "",
        "published_ci_low": f"{c.low:.6g}" if c else "",
        "published_ci_high": f"{c.high:.6g}" if c else "",
        "vs_published": b.verdict,
        "differs_from_protocol": ";".join(b.differs),
    }


def write_csv(path: pathlib.Path, groups: list[Group], beside: dict | None = None) -> None:
    columns = CSV_COLUMNS + (PUBLISHED_COLUMNS if beside is not None else [])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, columns)
        w.writeheader()
        for g in groups:
            extra = _published_row(beside.get((g.task, g.agent))) if beside is not None else {}
            w.writerow({
                **extra,
                "task": g.task,
                "agent": g.agent,
                "success_mean": f"{g.success_mean:.6g}",
                "success_ci_low": f"{g.ci_low:.6g}",
                "success_ci_high": f"{g.ci_high:.6g}",
                "interval": g.interval,
                "seeds": len(g.runs),
                "seed_list": ";".join(str(s) for s in g.seeds),
                "steps_min": g.steps[0],
                "steps_max": g.steps[1],
                "run_success": ";".join(f"{r.final['success']:.6g}" for r in g.runs),
            })


def plot_task(path: pathlib.Path, task: str, groups: list[Group], beside: dict | None = None) -> dict:
    """One learning curve per agent (mean over seeds, shaded 95% band), and with ``beside`` each
    agent's published curve (dashed, its band hatched), drawn with the Agg canvas directly so that no
    global pyplot state or interactive backend is touched. Returns the plotted series."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    series: dict = {"runs": {}, "published": {}}
    for g in groups:
        steps, means, lows, highs = curve(g.runs)
        label = f"{g.agent} ({len(g.runs)} seed{'s' if len(g.runs) != 1 else ''})"
        (line,) = ax.plot(steps, means, marker="o", markersize=3, label=label)
        ax.fill_between(steps, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
        series["runs"][g.agent] = {"step": steps, "mean": means, "low": lows, "high": highs}
        b = (beside or {}).get((g.task, g.agent))
        if b is not None and b.curve:
            p = {"step": [c.step for c in b.curve], "mean": [c.mean for c in b.curve],
                 "low": [c.low for c in b.curve], "high": [c.high for c in b.curve], "method": b.name}
            seeds = b.curve[0].seeds
            ax.plot(p["step"], p["mean"], linestyle="--", marker="s", markersize=3, color=line.get_color(),
                    label=f"{b.name} published" + (f" ({seeds} seeds)" if seeds else ""))
            ax.fill_between(p["step"], p["low"], p["high"], color=line.get_color(), alpha=0.12, hatch="//",
                            linewidth=0)
            series["published"][g.agent] = p
    ax.set_title(task, fontsize=10)
    ax.set_xlabel("gradient updates")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png")
    return series


def compare(paths: list[str], out_dir: str | pathlib.Path = "comparison", warn=None, published: bool = False,
            published_file: str | None = None) -> dict:
    """Find, group, tabulate and plot runs (with ``published``, beside their published counterparts);
    returns ``{"groups", "markdown", "files", "plot_data", "published"}``."""
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    if not paths:
        raise RQLError("give at least one run directory (or a folder of them): rql compare RUN_DIR... [--out DIR]")
    run_dirs = find_runs(paths)
    if not run_dirs:
        raise RQLError(
            f"no run directories found under {', '.join(paths)} (a run directory holds config.json and "
            "metrics.csv, as 'rql train' writes them)"
        )
    runs = []
    for d in run_dirs:
        r = read_run(d)
        if r.evals:
            runs.append(r)
        else:
            warn(f"note: {d} has no evaluation yet; left out")
    if not runs:
        raise RQLError(f"none of the {len(run_dirs)} run(s) found has an evaluation yet; train longer or "
                       "pass --eval-every/--eval-episodes to 'rql train'")
    groups = group_runs(runs)
    beside = None
    if published:
        from rql.published import Published

        beside = published_beside(groups, Published(published_file), warn)
    out = pathlib.Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RQLError(f"{out}: cannot create the output folder ({e.strerror}); choose another with --out") from None

    tasks = sorted({g.task for g in groups})
    plots, plot_data = {}, {}
    for task in tasks:
        plots[task] = out / plot_name(task)
        plot_data[task] = plot_task(plots[task], task, [g for g in groups if g.task == task], beside)
    table = markdown(groups, beside)
    doc = ["# Comparison", "", table, "Success is each run's last evaluation; the interval is a 95% t-interval over "
           "seeds when there are two or more (widened to at least the Wilson interval of all their episodes "
           "pooled), else the single run's 95% Wilson interval over its episodes.", ""]
    doc += ["## Learning curves", ""] + [f"![{t}]({plots[t].name})" for t in tasks] + [""]
    if beside is not None:
        doc += ["Published: the QAM suite's curves (Li and Levine, 2026; 12 seeds, 4x512 networks, 10 critics, 1M "
                "updates) and RQL's own table (1M updates, no interval), at the last published point at or below "
                "the run's last step. 'settings vs protocol' names the agent fields that differ from what --task "
                "gives (e.g. a --preset small run is not a replication).", ""]
    (out / "comparison.md").write_text("\n".join(doc))
    write_csv(out / "comparison.csv", groups, beside)
    (out / "plot_data.json").write_text(json.dumps(plot_data, indent=1))
    files = [out / "comparison.md", out / "comparison.csv", out / "plot_data.json", *plots.values()]
    return {"groups": groups, "markdown": table, "files": files, "plot_data": plot_data, "published": beside}


def cmd_compare(argv: list[str], parse) -> int:
    args = parse(
        CompareArgs, argv, "rql compare",
        "Group runs by (agent, task), write comparison.md, comparison.csv and one learning-curve PNG per task "
        "into --out, and print the table. Final success is the mean over seeds of each run's last evaluation, "
        "with a 95% t-interval over seeds (one seed: that run's Wilson interval). --published puts the published "
        "results (the QAM suite's curves, RQL's table) beside each run that has a counterpart.",
    )
    result = compare(args.runs, args.out, published=args.published, published_file=args.published_file)
    print(result["markdown"], end="")
    print(f"wrote {', '.join(str(f) for f in result['files'])}")
    return 0
