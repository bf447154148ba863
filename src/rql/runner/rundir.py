"""The files of a run directory and of a group folder, and where new ones go.

A run directory holds ``config.json`` (everything needed to rebuild the run), ``metrics.csv``
(one row per logged step, evaluation columns filled at evaluation steps), ``tb/`` (TensorBoard
events), ``checkpoints/<step>/`` and, when the run finishes, ``summary.json``. A group folder
(``rql train --seeds``) holds ``group.json`` and one run directory per seed.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import os
import pathlib
from typing import Any

from rql import __version__
from rql.agents import get_spec
from rql.errors import RQLError
from rql.runner.config import RunConfig


def write_json_atomic(path: pathlib.Path, doc: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def _stamp() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def _task_name(run: RunConfig) -> str:
    return run.task or pathlib.Path(run.dataset_path or "data").stem


def default_run_dir(run: RunConfig, agent_name: str) -> pathlib.Path:
    return pathlib.Path("runs") / _task_name(run) / f"{agent_name}-s{run.seed}-{_stamp()}"


def group_run_dirs(run: RunConfig, agent_name: str, seeds: list[int]) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """``(group folder or None, one run directory per seed)`` for a new run or group."""
    if len(seeds) == 1 and run.run_dir:
        return None, [pathlib.Path(run.run_dir)]
    if len(seeds) == 1:
        return None, [default_run_dir(dataclasses.replace(run, seed=seeds[0]), agent_name)]
    if run.run_dir:
        base = pathlib.Path(run.run_dir)
    else:
        base = pathlib.Path("runs") / _task_name(run) / f"{agent_name}-seeds{'-'.join(map(str, seeds))}-{_stamp()}"
    return base, [base / f"s{s}" for s in seeds]


# ----------------------------------------------------------------------------- group.json


def write_group_file(group_dir: pathlib.Path, seeds: list[int], run_dirs: list[pathlib.Path], agent_name: str) -> None:
    write_json_atomic(pathlib.Path(group_dir) / "group.json", {
        "seeds": seeds, "runs": [os.path.relpath(d, group_dir) for d in run_dirs], "agent": agent_name})


def load_group(path: str | pathlib.Path) -> tuple[list[int], list[pathlib.Path]] | None:
    """The seeds and member run directories of a group folder written by ``rql train --seeds``."""
    doc_path = pathlib.Path(path) / "group.json"
    if not doc_path.exists():
        return None
    try:
        doc = json.loads(doc_path.read_text())
        return [int(s) for s in doc["seeds"]], [pathlib.Path(path) / d for d in doc["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RQLError(f"{doc_path}: unreadable group file ({e})") from None


# ----------------------------------------------------------------------------- config.json


def save_config(run_dir: pathlib.Path, run: RunConfig, agent_name: str, agent_cfg, extra: dict) -> None:
    """Write ``config.json``. An agent from a file, module or plugin is recorded with where it came from
    (``agent_source``, :mod:`rql.agents.plugins`), which resume and evaluation check."""
    from rql.agents import plugins

    source = plugins.source_of(agent_name)
    doc = {
        "rql_version": __version__,
        "agent": agent_name,
        **({"agent_source": source} if source is not None else {}),
        "agent_config": dataclasses.asdict(agent_cfg),
        "run": dataclasses.asdict(run),
        **extra,
    }
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, run_dir / "config.json")


def load_run_config(run_dir: str | pathlib.Path) -> tuple[RunConfig, str, Any, dict]:
    """``(run options, agent name, agent config, the whole config.json)`` of a run directory. An agent
    from outside the package is loaded from its recorded source, which must be unchanged."""
    from rql.agents import plugins

    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        raise RQLError(f"{run_dir}: no config.json; is this a run directory made by 'rql train'?")
    try:
        doc = json.loads(path.read_text())
        run = RunConfig(**doc["run"])
        agent_name = doc["agent"]
        plugins.ensure(agent_name, doc.get("agent_source"), str(run_dir))
        cfg_cls = get_spec(agent_name).config_cls
        fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["agent_config"].items() if k in fields}
        if "windows" in fields and "windows" not in values:
            values["windows"] = "rql"  # recorded before windows were a field: every agent trained on RQL's
        agent_cfg = cfg_cls(**values)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RQLError(f"{path}: unreadable run configuration ({e})") from None
    return run, agent_name, agent_cfg, doc


# ----------------------------------------------------------------------------- metrics.csv


class MetricsCSV:
    """metrics.csv with a fixed header; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: pathlib.Path, columns: list[str], resume_step: int | None):
        self.path, self.columns = path, columns
        kept = []
        if resume_step is not None and path.exists():
            with path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        os.replace(tmp, path)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )
