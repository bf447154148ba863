"""The record and the report of a sweep: ``OUT/sweep.json`` (each cell's status, error, node and wall
time), ``rql sweep status OUT``, and the comparison of its runs (``rql compare``) in ``OUT/compare/``."""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import json
import os
import pathlib

from rql.errors import RQLError
from rql.sweep.plan import Cell, Plan
from rql.sweep.rundirs import finished, last_step, write_label

SWEEP_FILE = "sweep.json"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def write_sweep_file(out: pathlib.Path, plan: Plan | None, cells: list[Cell], settings: dict | None = None) -> None:
    from rql import __version__

    counts = collections.Counter(c.status for c in cells)
    doc = {"rql_version": __version__, "updated": _now(), "settings": plan.settings() if plan else settings,
           "counts": dict(sorted(counts.items())), "cells": [c.record() for c in cells]}
    tmp = out / (SWEEP_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    os.replace(tmp, out / SWEEP_FILE)


def read_sweep_file(out: pathlib.Path) -> dict:
    path = out / SWEEP_FILE
    if not path.is_file():
        raise RQLError(f"{out}: no {SWEEP_FILE}; is this a folder written by 'rql sweep'?")
    try:
        doc = json.loads(path.read_text())
        doc["cells"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RQLError(f"{path}: unreadable sweep record ({e})") from None
    return doc


def previous_cells(out: pathlib.Path) -> dict[str, dict]:
    """The cells of an earlier sweep.json in ``out`` by run directory (none when there is no readable one)."""
    try:
        return {c["dir"]: c for c in read_sweep_file(out)["cells"]}
    except (RQLError, KeyError, TypeError):
        return {}


def write_comparison(out: pathlib.Path, cells: list[Cell], log, published: bool = False) -> dict | None:
    """'rql compare' over the sweep's run directories into OUT/compare/ (with ``published``, beside the
    published results, as 'rql compare --published'); prints the table."""
    from rql.compare import compare, is_run_dir

    dirs = [out / c.dir for c in cells if is_run_dir(out / c.dir)]
    for c in cells:
        if (out / c.dir / "config.json").is_file():
            write_label(out / c.dir, c.label)
    if not dirs:
        log("compare: no run directory yet")
        return None
    notes = []
    try:
        result = compare([str(d) for d in dirs], out / "compare", warn=notes.append, published=published)
    except RQLError as e:
        log(f"compare: {e}")
        return None
    unpublished = [n for n in notes if "no published result" in n]
    for n in unpublished:
        log(f"compare: {n}")
    if len(notes) > len(unpublished):
        log(f"compare: {len(notes) - len(unpublished)} run(s) without an evaluation yet are left out")
    log(result["markdown"].rstrip("\n"))
    log(f"compare: wrote {', '.join(str(f) for f in result['files'])}")
    return result


def recorded_cells(out: pathlib.Path, doc: dict, steps: int) -> list[Cell]:
    """The cells of a sweep record, their status checked against the run directories on disk."""
    cells = []
    names = {f.name for f in dataclasses.fields(Cell)}
    for rec in doc["cells"]:
        c = Cell(**{k: v for k, v in rec.items() if k in names and k != "overrides"}, overrides={})
        if steps and finished(out / c.dir, steps):
            if c.status not in ("done", "skipped"):
                c.status, c.error = "done", None
        elif c.status in ("done", "skipped"):
            c.status, c.error = "missing", "the run directory has no finished summary.json"
        cells.append(c)
    return cells


def sweep_status(out: str | pathlib.Path, compare_runs: bool = True, log=print, published: bool = False) -> int:
    """``rql sweep status OUT``: counts, the step of unfinished runs, the errors, and the comparison;
    returns the exit status (1 when a cell failed or a finished run is missing)."""
    out = pathlib.Path(out).expanduser()
    doc = read_sweep_file(out)
    steps = int(((doc.get("settings") or {}).get("run") or {}).get("steps") or 0)
    cells = recorded_cells(out, doc, steps)
    n = collections.Counter(c.status for c in cells)
    log(f"{out}: {len(cells)} cells: " + ", ".join(f"{v} {k}" for k, v in sorted(n.items()))
        + f" (sweep.json updated {doc.get('updated', '?')})")
    for c in cells:
        if c.status in ("running", "queued", "interrupted"):
            s = last_step(out / c.dir / "metrics.csv")
            if s is not None:
                log(f"  {c.status}: {c.dir} at step {s} of {steps}")
    for c in cells:
        if c.status in ("failed", "missing"):
            log(f"  {c.status}: {c.dir}: {c.error}")
    if compare_runs:
        write_comparison(out, cells, log, published=published)
    return 1 if n["failed"] or n["missing"] else 0
