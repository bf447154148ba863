"""Published results to put beside our runs: the QAM suite's learning curves and RQL's own table.

Two sources ship with the package (``rql/published_data/``, with their citation in its README):

``qam_suite_curves.json``  the 17 methods of the QAM suite (Li and Levine, 2026) on the RQL paper's
                           10 environments x 5 tasks: 12 seeds, a success rate every 50,000 steps
                           (index ``i`` is step ``50,000 (i + 1)``; index 19 ends the 1M offline
                           updates, 20-29 are online steps after it; RLPD is online only)
``rql_paper.json``         RQL's per-task success at 1M updates (one number per task, no seeds)

Keys are full task names (``scene-play-singletask-task1-v0``) or environments (``scene-play``: per
seed, the mean of its 5 tasks). Our agent names are the published names in lower case
(``cgql-m`` is ``CGQL-M``). A cell is the mean over seeds with a 95% t-interval over seeds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib

from rql.errors import RQLError

DATA_DIR = pathlib.Path(__file__).parent / "published_data"
SUITE_FILE = DATA_DIR / "qam_suite_curves.json"
RQL_FILE = DATA_DIR / "rql_paper.json"
EVERY = 50_000
OFFLINE_STEPS = 1_000_000

# The paper's row order.
ENVIRONMENTS = (
    "antmaze-large-navigate", "antmaze-giant-navigate", "humanoidmaze-medium-navigate",
    "humanoidmaze-large-navigate", "cube-double-play", "cube-triple-play", "cube-quadruple-play",
    "scene-play", "puzzle-3x3-play", "puzzle-4x4-play",
)
ONLINE_ONLY = ("RLPD",)


@dataclasses.dataclass(frozen=True)
class Cell:
    mean: float
    low: float
    high: float
    seeds: int
    step: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _load_json(path: pathlib.Path, what: str) -> dict:
    try:
        doc = json.loads(pathlib.Path(path).read_text())
    except FileNotFoundError:
        raise RQLError(f"{path}: the published {what} file is missing; reinstall rql or pass a copy with --published-file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RQLError(f"{path}: the published {what} file is unreadable ({e}); reinstall rql or pass a good copy") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), dict):
        raise RQLError(f"{path}: not a published {what} file (no 'results' table); reinstall rql or pass a good copy")
    return doc


class Published:
    """The suite's curves (``path``, default the shipped file) and RQL's table."""

    def __init__(self, path: str | pathlib.Path | None = None, rql_path: str | pathlib.Path | None = None):
        self.path = pathlib.Path(path) if path else SUITE_FILE
        doc = _load_json(self.path, "results")
        self.results: dict = doc["results"]
        self.source = str(doc.get("source", ""))
        self.rql = _load_json(pathlib.Path(rql_path) if rql_path else RQL_FILE, "RQL results")["results"]
        try:
            any_env = next(iter(self.results.values()))
            self._method_names = sorted({m for per in self.results.values() for m in per})
            self._n_points = len(next(iter(any_env.values())))
        except (StopIteration, AttributeError, TypeError) as e:
            raise RQLError(f"{self.path}: the published results table is malformed ({e}); reinstall rql") from None

    # ------------------------------------------------------------------ names

    @property
    def methods(self) -> list[str]:
        """Published method names (``DSRL``, ``CGQL-M``, ...), offline methods first in name order."""
        return [m for m in self._method_names if m not in ONLINE_ONLY] + [m for m in self._method_names if m in ONLINE_ONLY]

    def method_name(self, name: str) -> str | None:
        """The published name of an agent or method name given in any case; ``rql`` is ``RQL``."""
        if name.lower() == "rql":
            return "RQL"
        for m in self._method_names:
            if m.lower() == name.lower():
                return m
        return None

    @staticmethod
    def environment(task: str) -> str:
        """``scene-play-singletask-task1-v0`` -> ``scene-play``; an environment name is returned as is."""
        return task.split("-singletask")[0]

    @staticmethod
    def task_index(task: str) -> int | None:
        if "-singletask-task" not in task:
            return None
        try:
            return int(task.split("-singletask-task")[1].split("-")[0]) - 1
        except ValueError:
            return None

    def has(self, task: str, method: str) -> bool:
        name = self.method_name(method)
        if name == "RQL":
            return self.environment(task) in self.rql and (self.task_index(task) is not None or task in self.rql)
        return name is not None and method_in(self.results.get(task, {}), name)

    # ------------------------------------------------------------------ steps

    def index_at_or_below(self, step: int) -> int | None:
        """Index of the last published point at or below ``step`` (None before the first, 50,000)."""
        i = int(step) // EVERY - 1
        if i < 0:
            return None
        return min(i, self._n_points - 1)

    @staticmethod
    def step_of(index: int) -> int:
        return EVERY * (index + 1)

    # ------------------------------------------------------------------ cells

    def cell(self, task: str, method: str, step: int = OFFLINE_STEPS) -> Cell | None:
        """Mean success over seeds with its 95% interval at the last published point at or below
        ``step``; None where nothing is published (or the step is before the first point)."""
        name = self.method_name(method)
        if name == "RQL":
            return self._rql_cell(task, step)
        per = self.results.get(task, {})
        if name is None or not method_in(per, name):
            return None
        curve = per[name]
        i = self.index_at_or_below(step)
        if i is None or i >= len(curve):
            return None
        values = [float(v) for v in curve[i]]
        mean, low, high = mean_interval(values)
        return Cell(mean, low, high, len(values), self.step_of(i))

    def _rql_cell(self, task: str, step: int) -> Cell | None:
        if step < OFFLINE_STEPS:
            return None
        env = self.environment(task)
        if env not in self.rql:
            return None
        vals = self.rql[env]
        i = self.task_index(task)
        v = sum(vals) / len(vals) if i is None else vals[i]
        return Cell(float(v), float(v), float(v), 0, OFFLINE_STEPS)

    def curve(self, task: str, method: str, up_to: int | None = None) -> list[Cell]:
        """Every published point of (task, method), each with its interval; with ``up_to``, the points
        up to and including the first one at or after that step."""
        name = self.method_name(method)
        if name == "RQL":
            c = self._rql_cell(task, OFFLINE_STEPS)
            return [c] if c else []
        per = self.results.get(task, {})
        if name is None or not method_in(per, name):
            return []
        cells = []
        for i, values in enumerate(per[name]):
            step = self.step_of(i)
            mean, low, high = mean_interval([float(v) for v in values])
            cells.append(Cell(mean, low, high, len(values), step))
            if up_to is not None and step >= up_to:
                break
        return cells


def method_in(per_task: dict, name: str) -> bool:
    return isinstance(per_task, dict) and name in per_task


def mean_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean with its Student-t interval over seeds, clipped to [0, 1]."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, mean, mean
    from scipy.stats import t as student_t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(student_t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def verdict(ours: float, cell: Cell) -> str:
    """Where our success lies against a published interval: 'inside', 'above' or 'below'."""
    if ours > cell.high + 1e-12:
        return "above"
    if ours < cell.low - 1e-12:
        return "below"
    return "inside"


# ----------------------------------------------------------------------------- the table


def table(pub: Published, env: str | None = None, methods: list[str] | None = None,
          step: int = OFFLINE_STEPS) -> dict:
    """The paper's layout: environments (or, with ``env``, its 5 tasks) as rows, methods as columns
    (RQL first, then the suite's offline methods), each cell a :class:`Cell` or None, and the best
    mean of each row."""
    if pub.index_at_or_below(step) is None:
        raise RQLError(f"--step {step}: nothing is published before step {EVERY:,}; give a step of at least {EVERY}")
    if env is not None:
        env = pub.environment(env)
        if env not in pub.results:
            raise RQLError(f"unknown environment '{env}'; choose one of: {', '.join(ENVIRONMENTS)}")
        rows = [f"{env}-singletask-task{k}-v0" for k in range(1, 6)]
    else:
        rows = [e for e in ENVIRONMENTS if e in pub.results]
    if methods:
        cols = []
        for m in methods:
            name = pub.method_name(m)
            if name is None:
                raise RQLError(f"unknown method '{m}'; choose from: RQL, {', '.join(pub.methods)}")
            if name in ONLINE_ONLY:
                raise RQLError(f"{name} is online only (its curves count online steps); it has no offline column")
            cols.append(name)
    else:
        cols = ["RQL"] + [m for m in pub.methods if m not in ONLINE_ONLY]
    cells = {r: {c: pub.cell(r, c, step) for c in cols} for r in rows}
    best = {}
    for r in rows:
        means = {c: cell.mean for c, cell in cells[r].items() if cell is not None}
        top = max(means.values()) if means else None
        best[r] = [c for c, v in means.items() if top is not None and v >= top - 1e-9]
    point = pub.step_of(pub.index_at_or_below(step))
    return {"rows": rows, "methods": cols, "cells": cells, "best": best, "step": point, "requested_step": step}


def _cell_text(cell: Cell | None) -> str:
    if cell is None:
        return "-"
    if cell.seeds == 0:
        return f"{100 * cell.mean:.1f}"
    return f"{100 * cell.mean:.1f}±{100 * (cell.high - cell.low) / 2:.1f}"


def render_text(t: dict) -> str:
    """A fixed-width table for the terminal; the best mean of each row carries a '*'."""
    header = ["environment" if not t["rows"] or "-singletask-" not in t["rows"][0] else "task"] + t["methods"]
    body = []
    for r in t["rows"]:
        row = [r]
        for c in t["methods"]:
            text = _cell_text(t["cells"][r][c])
            row.append(text + ("*" if c in t["best"][r] else ""))
        body.append(row)
    widths = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]
    fmt = lambda row: "  ".join(x.ljust(widths[0]) if i == 0 else x.rjust(widths[i]) for i, x in enumerate(row))  # noqa: E731
    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
    online = t["step"] > OFFLINE_STEPS
    lines += [
        "",
        f"success % at step {t['step']:,}" + (f" ({OFFLINE_STEPS:,} offline updates, then {t['step'] - OFFLINE_STEPS:,} online steps)" if online else "")
        + ": mean over 12 seeds ± half its 95% t-interval; * best mean of the row.",
        "RQL: the RQL paper's per-task numbers (no seeds, 1M updates only); the rest: the QAM suite's curves "
        "(Li and Levine, 2026). 'rql published --csv' or '--json' give the interval ends.",
    ]
    return "\n".join(lines) + "\n"


def render_csv(t: dict) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", "method", "step", "success_mean", "success_ci_low", "success_ci_high", "seeds", "best"])
    for r in t["rows"]:
        for c in t["methods"]:
            cell = t["cells"][r][c]
            if cell is None:
                w.writerow([r, c, "", "", "", "", "", ""])
            else:
                w.writerow([r, c, cell.step, f"{cell.mean:.6g}", f"{cell.low:.6g}", f"{cell.high:.6g}", cell.seeds,
                            int(c in t["best"][r])])
    return buf.getvalue()


def render_json(t: dict) -> str:
    doc = {
        "step": t["step"],
        "rows": t["rows"],
        "methods": t["methods"],
        "cells": {r: {c: (cell.as_dict() if cell else None) for c, cell in t["cells"][r].items()} for r in t["rows"]},
        "best": t["best"],
    }
    return json.dumps(doc, indent=1) + "\n"


# ----------------------------------------------------------------------------- command


@dataclasses.dataclass
class PublishedArgs:
    env: str | None = None
    """One environment (e.g. cube-double-play): its 5 tasks become the rows. Default: the 10 environments."""
    methods: str | None = None
    """Comma-separated methods to show, in that order (any case, e.g. rql,dsrl,cgql-m). Default: RQL and
    the suite's 16 offline methods."""
    step: int = OFFLINE_STEPS
    """Show the last published point at or below this step (points every 50,000; above 1,000,000 they count
    online steps after the 1M offline updates)."""
    csv: bool = False
    """Print CSV (one row per cell, with the interval ends) instead of the table."""
    json: bool = False
    """Print JSON instead of the table."""
    published_file: str | None = None
    """Another copy of the suite's curves file (default: the one shipped with rql)."""


def cmd_published(argv: list[str], parse) -> int:
    args = parse(
        PublishedArgs, argv, "rql published",
        "The published results of the RQL paper's comparison in its layout: environments as rows, methods as "
        "columns (RQL's own numbers, then the 16 offline methods of the QAM suite, 12 seeds each), success % "
        "with the 95% interval over seeds, the best mean of each row marked. Source and citation: "
        f"{DATA_DIR / 'README.md'}.",
    )
    if args.csv and args.json:
        raise RQLError("give --csv or --json, not both")
    pub = Published(args.published_file)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    t = table(pub, args.env, methods, args.step)
    print(render_csv(t) if args.csv else render_json(t) if args.json else render_text(t), end="")
    return 0
