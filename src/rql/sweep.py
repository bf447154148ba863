"""``rql sweep``: a grid of tasks x agents x seeds x agent fields, trained on Ray.

Each cell of the grid is one ordinary run directory, ``OUT/<task>/<label>/s<seed>``, where the
label is the agent's name followed by its grid fields (``rql-alpha=3``); ``rql compare`` reads the
folder as it reads any runs, and the label (written into each run's config.json) keeps variants
of one agent apart.

How it runs:

- The driver (this process) plans the cells, skips those already finished (``summary.json`` with
  at least the requested steps), and submits the rest as Ray core tasks ("trials"), each holding
  up to ``--seeds-per-run`` seeds of one cell, trained by :func:`rql.train.train_group`. Ray core
  tasks rather than Tune: a trial is one function call with a fixed resource request, retried by
  Ray when its worker process or node dies (``max_retries``); an error in the settings
  (:class:`~rql.errors.RQLError`) is caught inside the trial and reported, never retried.
- Every trial runs in a fresh worker process (``max_calls=1``) that sets the same environment
  as the command line (quiet logs, ``MUJOCO_GL=egl``) and, before JAX starts, limits its threads
  to its CPUs and its share of a GPU's memory.
- A trial whose worker sees the sweep folder (the driver writes a random token into it; the
  worker reads it back) trains in place. Otherwise it trains in a local temporary folder
  (continuing from the copy of an interrupted run the driver sends along) and returns the run
  directories as a tar archive, which the driver unpacks into place.
- Progress: each trial reads the step of its runs' metrics.csv every second and reports it to a
  small actor; the driver shows cells done / running / failed / queued and the total updates/s.
- ``OUT/sweep.json`` records each cell's status (queued, running, done, skipped, failed), its
  one-line error, the Ray node id and host it ran on and its wall time. At the end, and with
  ``rql sweep status OUT``, ``rql compare``'s table and plots are written into ``OUT/compare/``.

Setting the environment variable ``RQL_SWEEP_COPY=1`` makes every trial take the copy-back path
even on a shared file system (for testing that path).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as _dt
import io
import itertools
import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import sys
import tarfile
import tempfile
import threading
import time
import types
import typing
from typing import Annotated, Any

import tyro

from rql.errors import RQLError

TOKEN_FILE = ".rql-sweep-token"
SWEEP_FILE = "sweep.json"
COPY_ENV = "RQL_SWEEP_COPY"

# Options settable in a sweep file and on the command line (the command line wins).
RUN_OPTIONS = ("steps", "eval_every", "eval_episodes", "eval_envs", "save_every", "log_every")
FILE_OPTIONS = ("tasks", "agents", "seeds", "out", "dataset_dir", "dataset_path", "preset", *RUN_OPTIONS,
                "address", "num_cpus", "num_gpus", "cpus_per_run", "gpus_per_run", "seeds_per_run", "max_retries",
                "resources_per_run", "compile_cache")
FILE_TABLES = ("grid", "set")
# RunConfig fields the sweep sets itself, per cell or through its own options.
RUN_RESERVED = ("task", "seed", "run_dir", "progress", "dataset_dir", "dataset_path", "preset")


# ----------------------------------------------------------------------------- command line


def _opt(metavar: str):
    """A flag shown as ``--flag METAVAR``; its default is told in its help text (None means: see there)."""
    return tyro.conf.arg(metavar=metavar, help_behavior_hint=lambda default: "")


@dataclasses.dataclass
class SweepArgs:
    config: Annotated[str | None, _opt("FILE")] = None
    """A TOML (or YAML, when PyYAML is installed) file with the sweep: the options below as keys
    (tasks = ["..."], agents = ["rql", "flow-bc"], seeds = [0, 1, 2], out = "sweeps/x", steps = 100000, ...)
    and the tables [grid] and [set] (e.g. [grid] "rql.alpha" = [1, 3]). Options on the command line win."""
    tasks: Annotated[str | None, _opt("T1,T2")] = None
    """OGBench single-task names, comma separated; each picks its data, the paper's per-environment settings
    and its evaluation environment. May be left out with --dataset-path (then no evaluation environment)."""
    agents: Annotated[str | None, _opt("A1,A2")] = None
    """Agents, comma separated (default: rql)."""
    seeds: Annotated[str | None, _opt("S1,S2")] = None
    """Seeds, comma separated, or a range such as 0-4 (default: 0)."""
    out: Annotated[str | None, _opt("DIR")] = None
    """The sweep folder (required): OUT/<task>/<agent>[-field=value...]/s<seed> per cell, OUT/sweep.json with
    each cell's status, OUT/compare/ with the table and plots. Re-running skips finished cells and resumes
    interrupted ones."""
    grid: Annotated[list[str], _opt("KEY=V1,V2")] = dataclasses.field(default_factory=list)
    """Agent-field axes of the grid, each KEY=v1,v2,...: agent.FIELD applies to every swept agent that has
    FIELD; AGENT.FIELD (e.g. rql.alpha=1,3) to that agent only. Every combination is a cell, and its
    grid values name the run folder (rql-alpha=3), also when a field has one value. Values: numbers,
    true/false, strings, [16,16] for a tuple. Several entries: --grid A=1,2 B=3,4 (or repeat --grid)."""
    set: Annotated[list[str], _opt("KEY=VALUE")] = dataclasses.field(default_factory=list)
    """Fixed settings for every cell, not part of the folder names: agent.FIELD=V or AGENT.FIELD=V as in
    --grid (e.g. rql.ensemble=2, agent.batch-size=128), or run.FIELD=V for any other 'rql train' option
    (e.g. run.log-every=500, run.updates-per-dispatch=100, run.tensorboard=false)."""
    dataset_dir: Annotated[str | None, _opt("DIR")] = None
    """A folder holding each task's OGBench file <dataset name>.npz, found by name on every worker
    (default: OGBench's ~/.ogbench/data of the worker)."""
    dataset_path: Annotated[str | None, _opt("PATH")] = None
    """One dataset for every cell (a path valid on every worker; see 'rql train --help')."""
    preset: Annotated[str | None, _opt("NAME")] = None
    """Network-size preset of every agent: 'small' (2x256, ensemble 2; for CPUs) or 'reference'."""
    steps: Annotated[int | None, _opt("N")] = None
    """Gradient updates per run (default: 1000000, as for 'rql train')."""
    eval_every: Annotated[int | None, _opt("N")] = None
    """Evaluate every N updates (0: only at the end; default: 100000)."""
    eval_episodes: Annotated[int | None, _opt("N")] = None
    """Episodes per evaluation (0: no evaluation, and no comparison table; default: 50)."""
    eval_envs: Annotated[int | None, _opt("N")] = None
    """Environments stepped side by side during evaluation (default: 10)."""
    save_every: Annotated[int | None, _opt("N")] = None
    """Checkpoint every N updates (default: eval-every)."""
    log_every: Annotated[int | None, _opt("N")] = None
    """Write training metrics every N updates (default: 1000)."""
    address: Annotated[str | None, _opt("ADDR")] = None
    """A running Ray cluster: HOST:PORT of its head (this machine must be one of its nodes), 'auto', or
    ray://HOST:10001 (Ray client). Default: start a local Ray inside this process, no setup needed."""
    num_cpus: Annotated[int | None, _opt("N")] = None
    """CPUs of the local Ray (default: all of this machine's); ignored with --address."""
    num_gpus: Annotated[float | None, _opt("G")] = None
    """GPUs of the local Ray (default: those detected); ignored with --address."""
    cpus_per_run: Annotated[float | None, _opt("C")] = None
    """CPUs reserved by each trial (default: 1); JAX's threads are limited to them."""
    gpus_per_run: Annotated[float | None, _opt("G")] = None
    """GPUs reserved by each trial (default: 0); a fraction such as 0.25 puts several trials on one GPU,
    each limited to its share of the GPU's memory."""
    seeds_per_run: Annotated[int | None, _opt("K")] = None
    """Seeds of the same cell trained by one trial, one after the other or batched, as rql.train.train_group
    does (default: 1)."""
    max_retries: Annotated[int | None, _opt("N")] = None
    """Times a trial is restarted when its worker process or node dies (default: 2); a wrong setting
    is never retried."""
    resources_per_run: Annotated[str | None, _opt("JSON")] = None
    """Advanced: custom Ray resources each trial needs, as JSON, e.g. '{"big_node": 1}' to run only on
    nodes started with 'ray start --resources'."""
    compile_cache: Annotated[str | None, _opt("DIR")] = None
    """A folder (valid on every worker) for JAX's persistent compilation cache: trials of the same shapes
    (seeds and tasks of one agent variant) then load their compiled updates instead of compiling again."""
    compare: bool = True
    """At the end, write the comparison table and plots (as 'rql compare' makes them) into OUT/compare/
    and print the table."""


@dataclasses.dataclass
class StatusArgs:
    out: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """The sweep folder (holding sweep.json)."""
    compare: bool = True
    """Write the comparison table and plots (as 'rql compare' makes them) into DIR/compare/ and print
    the table."""


DESCRIPTION = (
    "Train a grid of tasks x agents x seeds x agent fields on Ray: a local Ray started in this process "
    "(default), or a cluster with --address. Every cell is a normal run directory "
    "OUT/<task>/<agent>[-field=value...]/s<seed>; OUT/sweep.json records each cell's status, error, node "
    "and wall time; OUT/compare/ gets the comparison table and plots ('rql compare'), one row per agent "
    "variant. Re-running "
    "the same command skips finished cells and resumes interrupted ones. Exit status 1 when a cell failed. "
    "'rql sweep status OUT' shows the state and writes the comparison at any time. "
    "Example: rql sweep --tasks cube-single-play-singletask-task1-v0 --agents rql,flow-bc --seeds 0-2 "
    "--preset small --steps 100000 --grid rql.alpha=1,3 --out sweeps/cube."
)


def _pop_multi(argv: list[str], name: str) -> tuple[list[str], list[str]]:
    """Take every ``--name V1 V2 ...`` (and ``--name=V``) out of argv, in order."""
    from rql.cli import UsageError

    values, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == name:
            j = i + 1
            while j < len(argv) and not argv[j].startswith("--"):
                values.append(argv[j])
                j += 1
            if j == i + 1:
                raise UsageError(f"{name} needs KEY=VALUE entries; see 'rql sweep --help'")
            i = j
            continue
        if a.startswith(name + "="):
            values.append(a.split("=", 1)[1])
        else:
            rest.append(a)
        i += 1
    return values, rest


def cmd_sweep(argv: list[str], parse) -> int:
    if argv and argv[0] == "status":
        args = parse(StatusArgs, argv[1:], "rql sweep status",
                     "Show a sweep's cells (done, running, failed, ...) and the errors of failed ones, write "
                     "the comparison table and plots ('rql compare') into DIR/compare/ and print the table. "
                     "Exit status 1 when a cell failed.")
        return sweep_status(args.out, compare_runs=args.compare)
    grid, argv = _pop_multi(argv, "--grid")
    fixed, argv = _pop_multi(argv, "--set")
    args = parse(SweepArgs, argv, "rql sweep", DESCRIPTION)
    plan = make_plan(args, grid, fixed)
    return run_sweep(plan)


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class Plan:
    out: pathlib.Path
    tasks: list[str | None]
    agents: list[str]
    seeds: list[int]
    grid: list[tuple[str, str, list]]
    """(scope, field, values): scope 'agent' (every agent having the field) or an agent name."""
    fixed: list[tuple[str, str, Any]]
    """(scope, field, value) of agent fields set in every cell."""
    run: dict
    """RunConfig fields common to every cell (task, seed and run_dir are per cell)."""
    preset: str | None = None
    address: str | None = None
    num_cpus: int | None = None
    num_gpus: float | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    seeds_per_run: int = 1
    max_retries: int = 2
    resources_per_run: dict = dataclasses.field(default_factory=dict)
    compile_cache: str | None = None
    compare: bool = True

    @property
    def steps(self) -> int:
        from rql.train import RunConfig

        return int(self.run.get("steps", RunConfig.steps))

    def settings(self) -> dict:
        """The sweep as recorded in sweep.json."""
        return {
            "tasks": self.tasks, "agents": self.agents, "seeds": self.seeds,
            "grid": {f"{s}.{f}": v for s, f, v in self.grid},
            "set": {f"{s}.{f}": v for s, f, v in self.fixed},
            "run": {**self.run, "steps": self.steps}, "preset": self.preset, "address": self.address,
            "cpus_per_run": self.cpus_per_run, "gpus_per_run": self.gpus_per_run,
            "seeds_per_run": self.seeds_per_run, "max_retries": self.max_retries,
            "resources_per_run": self.resources_per_run, "compile_cache": self.compile_cache,
        }


@dataclasses.dataclass
class Cell:
    task: str | None
    agent: str
    label: str
    seed: int
    overrides: dict
    dir: str
    """Run directory relative to the sweep folder."""
    status: str = "queued"
    error: str | None = None
    node_id: str | None = None
    hostname: str | None = None
    wall_time_s: float | None = None
    steps: int | None = None
    resumed: bool = False
    trial: int | None = None

    def record(self) -> dict:
        return {k: getattr(self, k) for k in ("task", "agent", "label", "seed", "dir", "status", "error", "node_id",
                                               "hostname", "wall_time_s", "steps", "resumed", "trial")}


def _usage(msg: str):
    from rql.cli import UsageError

    return UsageError(msg)


def load_sweep_file(path: str) -> dict:
    """A sweep file's options (TOML, or YAML when PyYAML is installed), keys with '_' for '-'."""
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise _usage(f"--config {path}: no such file")
    suffix = p.suffix.lower()
    text = p.read_text()
    if suffix == ".toml":
        import tomllib

        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RQLError(f"{path}: not valid TOML ({e})") from None
    elif suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise RQLError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the sweep as "
                           "a .toml file") from None
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RQLError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    else:
        raise _usage(f"--config {path}: give a .toml, .yaml or .yml file")
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise RQLError(f"{path}: the sweep file must hold a table of options (tasks, agents, seeds, out, ...)")
    out = {}
    for key, value in doc.items():
        k = str(key).replace("-", "_")
        if k not in FILE_OPTIONS + FILE_TABLES:
            raise RQLError(f"{path}: unknown option '{key}'; known: {', '.join(FILE_OPTIONS + FILE_TABLES)}")
        if k in FILE_TABLES and not isinstance(value, dict):
            raise RQLError(f"{path}: '{key}' must be a table of KEY = value(s)")
        out[k] = value
    return out


def _flatten(table: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"rql": {"alpha": [1, 3]}, "agent.lr": 1e-3}`` -> ``[("rql.alpha", [1, 3]), ("agent.lr", 1e-3)]``."""
    items = []
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            items.extend(_flatten(v, key))
        else:
            items.append((key, v))
    return items


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: ``1,[16,16],"a,b"`` -> three parts."""
    parts, depth, quote, cur = [], 0, None, []
    for ch in text:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, [16,16], "s"), else the string."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    if t.lower() in ("none", "null"):
        return None
    try:
        return json.loads(t)
    except ValueError:
        return t[1:-1] if len(t) >= 2 and t[0] == t[-1] == "'" else t


def _key(entry: str, what: str) -> tuple[str, str]:
    """``rql.flow-steps`` -> (``rql``, ``flow_steps``)."""
    if "." not in entry:
        raise _usage(f"{what} entry '{entry}': expected SCOPE.FIELD (agent.FIELD, AGENT.FIELD or run.FIELD)")
    scope, field = entry.rsplit(".", 1)
    scope, field = scope.strip(), field.strip().replace("-", "_")
    if not scope or not field:
        raise _usage(f"{what} entry '{entry}': expected SCOPE.FIELD")
    return scope, field


def _seeds(value) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    parts = value if isinstance(value, list) else _split_top(str(value))
    seeds = []
    for p in parts:
        try:
            if isinstance(p, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", p):
                lo, hi = (int(x) for x in p.split("-"))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                if isinstance(p, bool) or isinstance(p, float):
                    raise ValueError
                seeds.append(int(p))
        except (TypeError, ValueError):
            raise _usage(f"--seeds: '{p}' is not a seed; give integers such as 0,1,2 or a range such as 0-4") from None
    if not seeds:
        raise _usage("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise _usage(f"--seeds: a seed is repeated in {value}")
    return seeds


def _names(value, what: str) -> list[str]:
    items = value if isinstance(value, list) else _split_top(str(value))
    names = [str(x).strip() for x in items if str(x).strip()]
    if len(set(names)) != len(names):
        raise _usage(f"--{what}: a name is repeated in {value}")
    return names


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(value: Any, tp: Any) -> Any:
    """``value`` (from a file or the command line) as the dataclass field type ``tp``; ValueError if it is not."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a)
            except ValueError:
                pass
        raise ValueError(" or ".join(_type_name(a) for a in args))
    if origin is typing.Literal:
        for a in args:
            if value == a or str(value) == str(a):
                return a
        raise ValueError("one of " + ", ".join(repr(a) for a in args))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ValueError("true or false")
    if tp is int:
        if isinstance(value, bool):
            raise ValueError("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        raise ValueError("an integer")
    if tp is float:
        if isinstance(value, bool):
            raise ValueError("a number")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError("a number") from None
    if tp is str:
        if isinstance(value, (list, tuple, dict)) or value is None:
            raise ValueError("a string")
        return str(value)
    if origin in (tuple, list):
        if isinstance(value, str):
            value = [v for v in re.split(r"[x,\s]+", value.strip("[]() ")) if v]
        if not isinstance(value, (list, tuple)):
            raise ValueError(_type_name(tp))
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(v, args[0]) for v in value)
        if origin is tuple and args:
            if len(args) != len(value):
                raise ValueError(_type_name(tp))
            return tuple(coerce(v, a) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return [coerce(v, inner) for v in value]
    return value


def _type_name(tp) -> str:
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if typing.get_origin(tp) in (tuple, list):
        return "a list such as [256,256]"
    if tp is type(None):
        return "none"
    return str(tp)


def agent_config(agent: str, task: str | None, preset: str | None, overrides: dict):
    """The agent's config for one cell: defaults, the task's settings, the preset, then ``overrides``
    (values from the sweep file or command line, checked against each field's type)."""
    from rql.agents import build_config, get_spec

    types_ = _field_types(get_spec(agent).config_cls)
    values = {}
    for field, value in overrides.items():
        if field not in types_:
            raise RQLError(f"agent '{agent}' has no field {field}; see 'rql train --agent {agent} --help'")
        try:
            values[field] = coerce(value, types_[field])
        except ValueError as e:
            raise RQLError(f"{agent}.{field}={_fmt(value)}: expected {e}") from None
    return build_config(agent, task, preset, values)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "x".join(_fmt(x) for x in v)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]+", "_", name) or "_"


def make_plan(args: SweepArgs, grid_cli: list[str] = (), set_cli: list[str] = ()) -> Plan:
    """Merge the sweep file and the command line into a checked plan (no cell is run)."""
    from rql.agents import REGISTRY, get_spec
    from rql.train import RunConfig

    opts = load_sweep_file(args.config) if args.config else {}
    file_grid = _flatten(opts.pop("grid", {}) or {})
    file_set = _flatten(opts.pop("set", {}) or {})
    for name in FILE_OPTIONS:
        v = getattr(args, name)
        if v is not None:
            opts[name] = v

    if not opts.get("out"):
        raise _usage("give --out DIR, the sweep folder (or 'out' in the --config file)")
    agents = _names(opts.get("agents", "rql"), "agents")
    if not agents:
        raise _usage("--agents: give at least one agent")
    for a in agents:
        if a not in REGISTRY:
            raise _usage(f"--agents: unknown agent '{a}'; choose from {', '.join(sorted(REGISTRY))}")
    tasks: list[str | None] = _names(opts["tasks"], "tasks") if opts.get("tasks") else []
    dataset_path = opts.get("dataset_path")
    if not tasks:
        if not dataset_path:
            raise _usage("give --tasks T1,T2 (OGBench single-task names) and/or --dataset-path FILE")
        tasks = [None]
    seeds = _seeds(opts.get("seeds", 0))

    all_fields = {a: _field_types(spec.config_cls) for a, spec in REGISTRY.items()}

    def check_agent_key(scope: str, field: str, what: str, entry: str):
        """A typo fails the sweep; an entry for an agent not swept this time is allowed (and unused)."""
        if scope == "agent":
            if not any(field in f for f in all_fields.values()):
                raise _usage(f"{what} {entry}: no agent has a field '{field}'; see 'rql train --agent NAME --help'")
        elif scope in all_fields:
            if field not in all_fields[scope]:
                raise _usage(f"{what} {entry}: agent '{scope}' has no field '{field}'; see "
                             f"'rql train --agent {scope} --help'")
        else:
            raise _usage(f"{what} {entry}: '{scope}' is neither 'agent' nor an agent name "
                         f"({', '.join(sorted(REGISTRY))})")

    grid: dict[tuple[str, str], list] = {}
    for entry, values in file_grid:
        scope, field = _key(entry, "grid")
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        grid[(scope, field)] = values
    for entry in grid_cli:
        if "=" not in entry:
            raise _usage(f"--grid {entry}: expected KEY=V1,V2 (e.g. rql.alpha=1,3)")
        k, v = entry.split("=", 1)
        scope, field = _key(k, "--grid")
        grid[(scope, field)] = [parse_value(x) for x in _split_top(v)]
    fixed_all: dict[tuple[str, str], Any] = {}
    for entry, value in file_set:
        fixed_all[_key(entry, "set")] = value
    for entry in set_cli:
        if "=" not in entry:
            raise _usage(f"--set {entry}: expected KEY=VALUE (e.g. rql.ensemble=2 or run.log-every=500)")
        k, v = entry.split("=", 1)
        fixed_all[_key(k, "--set")] = parse_value(v)

    for (scope, field), values in grid.items():
        if scope == "run":
            raise _usage(f"grid run.{field}: the grid sweeps agent fields; set run options with --set run.{field}=V")
        check_agent_key(scope, field, "grid", f"{scope}.{field}")
        if not values:
            raise _usage(f"grid {scope}.{field}: give at least one value")
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise _usage(f"grid {scope}.{field}: a value is repeated")
    run_types = _field_types(RunConfig)
    run: dict[str, Any] = {}
    fixed = []
    for (scope, field), value in fixed_all.items():
        if scope == "run":
            if field not in run_types:
                raise _usage(f"set run.{field}: 'rql train' has no option --{field.replace('_', '-')}")
            if field in RUN_RESERVED:
                raise _usage(f"set run.{field}: the sweep sets this itself"
                             + ("; use --" + field.replace("_", "-") if field in FILE_OPTIONS else ""))
            run[field] = value
        else:
            check_agent_key(scope, field, "set", f"{scope}.{field}")
            if (scope, field) in grid:
                raise _usage(f"{scope}.{field} is both in the grid and set; keep one")
            fixed.append((scope, field, value))
    for name in RUN_OPTIONS:
        if opts.get(name) is not None:
            run[name] = opts[name]
    for field, value in list(run.items()):
        try:
            run[field] = coerce(value, run_types[field])
        except ValueError as e:
            raise _usage(f"{field.replace('_', '-')}={_fmt(value)}: expected {e}") from None
    if run.get("steps", 1) <= 0:
        raise _usage("--steps must be positive")
    for name in ("eval_every", "eval_episodes", "eval_envs", "log_every"):
        if run.get(name, 0) < 0:
            raise _usage(f"--{name.replace('_', '-')} must not be negative")

    def local_path(p):
        if p is None or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", str(p)):  # minari:ID, toy:NAME
            return p
        q = pathlib.Path(str(p)).expanduser()
        return str(q.resolve()) if q.exists() else str(p)

    run["dataset_dir"] = local_path(opts.get("dataset_dir"))
    run["dataset_path"] = local_path(dataset_path)

    def num(name, cast, default, low, allow_equal=True):
        v = opts.get(name)
        if v is None:
            return default
        try:
            if isinstance(v, bool):
                raise ValueError
            v = cast(v)
        except (TypeError, ValueError):
            raise _usage(f"--{name.replace('_', '-')}: '{v}' is not a number") from None
        if v < low or (v == low and not allow_equal):
            raise _usage(f"--{name.replace('_', '-')} must be {'at least' if allow_equal else 'more than'} {low}")
        return v

    resources = opts.get("resources_per_run") or {}
    if isinstance(resources, str):
        try:
            resources = json.loads(resources)
        except ValueError:
            raise _usage(f"--resources-per-run: not JSON: {resources}") from None
    if not isinstance(resources, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                                  for v in resources.values()):
        raise _usage("--resources-per-run: give a JSON object of resource names and amounts, e.g. '{\"big\": 1}'")
    for reserved in ("CPU", "GPU"):
        if reserved in resources:
            raise _usage(f"--resources-per-run: set {reserved} with --{reserved.lower()}s-per-run")
    preset = opts.get("preset")
    if preset is not None:
        for a in agents:
            if preset not in get_spec(a).network_presets:
                raise _usage(f"--preset: agent '{a}' has no preset '{preset}'; choose one of "
                             f"{', '.join(get_spec(a).network_presets)}")
    return Plan(
        out=pathlib.Path(str(opts["out"])).expanduser().resolve(),
        tasks=tasks, agents=agents, seeds=seeds,
        grid=[(s, f, v) for (s, f), v in grid.items()],
        fixed=fixed, run=run, preset=preset,
        address=opts.get("address") or None,
        num_cpus=num("num_cpus", int, None, 1),
        num_gpus=num("num_gpus", float, None, 0),
        cpus_per_run=num("cpus_per_run", float, 1.0, 0, allow_equal=False),
        gpus_per_run=num("gpus_per_run", float, 0.0, 0),
        seeds_per_run=num("seeds_per_run", int, 1, 1),
        max_retries=num("max_retries", int, 2, 0),
        resources_per_run={str(k): float(v) for k, v in resources.items()},
        compile_cache=local_path(opts.get("compile_cache")),
        compare=args.compare,
    )


def agent_variants(plan: Plan, agent: str) -> list[tuple[str, dict]]:
    """``(label, overrides)`` of each grid point of ``agent``: fixed settings, then its grid values."""
    from rql.agents import get_spec

    fields = _field_types(get_spec(agent).config_cls)

    def applies(scope, field):
        return scope == agent or (scope == "agent" and field in fields)

    fixed = {}
    for scope, field, value in plan.fixed:  # an agent's own entry wins over agent.FIELD
        if applies(scope, field) and (scope == agent or field not in fixed):
            fixed[field] = value
    axes: dict[str, list] = {}
    for scope, field, values in plan.grid:
        if applies(scope, field) and (scope == agent or field not in axes):
            axes[field] = values
    out = []
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo))
        label = agent + "".join(f"-{f}={_fmt(v)}" for f, v in point.items())
        out.append((_safe(label), {**fixed, **point}))
    return out


def make_cells(plan: Plan) -> list[Cell]:
    cells = []
    for task in plan.tasks:
        task_dir = _safe(task or pathlib.PurePath(str(plan.run.get("dataset_path") or "data")).stem)
        for agent in plan.agents:
            for label, overrides in agent_variants(plan, agent):
                for seed in plan.seeds:
                    cells.append(Cell(task, agent, label, seed, overrides, f"{task_dir}/{label}/s{seed}"))
    return cells


# ----------------------------------------------------------------------------- run directories


def summary_steps(run_dir: pathlib.Path) -> int | None:
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished(run_dir: pathlib.Path, steps: int) -> bool:
    s = summary_steps(run_dir)
    return s is not None and s >= steps


def last_step(metrics: pathlib.Path) -> int | None:
    """The step of metrics.csv's last row (reads its header and its last few kilobytes only)."""
    try:
        with metrics.open("rb") as f:
            header = f.readline().decode().strip().split(",")
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    if "step" not in header:
        return None
    i = header.index("step")
    for line in reversed(lines):
        parts = line.split(",")
        if len(parts) == len(header):
            try:
                return int(float(parts[i]))
            except ValueError:
                continue
    return None


def write_label(run_dir: pathlib.Path, label: str, final_dir: str | None = None) -> bool:
    """Add the sweep's variant name to the run's config.json (read, modify, atomic replace);
    ``final_dir`` corrects ``run.run_dir`` for runs trained elsewhere and copied back."""
    path = run_dir / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    changed = False
    if doc.get("label") != label:
        doc["label"] = label
        changed = True
    run = doc.get("run")
    if final_dir and isinstance(run, dict) and run.get("run_dir") != final_dir:
        run["run_dir"] = final_dir
        changed = True
    if changed:
        tmp = path.with_name(f"config.json.label-{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
    return True


def pack(base: pathlib.Path, rels: list[str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in rels:
            if (base / rel).is_dir():
                tar.add(base / rel, arcname=rel)
    return buf.getvalue()


def unpack(data: bytes, dest: pathlib.Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            p = pathlib.PurePosixPath(m.name)
            if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                raise RQLError(f"refusing a run archive with the entry '{m.name}'")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python without extraction filters; entries were checked above
            tar.extractall(dest)


def install_runs(data: bytes, out: pathlib.Path, rels: list[str]) -> None:
    """Unpack a trial's returned run directories and move each into place under ``out``."""
    staging = out / ".incoming" / secrets.token_hex(6)
    staging.mkdir(parents=True)
    try:
        unpack(data, staging)
        for rel in rels:
            src = staging / rel
            if not src.is_dir():
                continue
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if dst.exists():
                old = staging.with_name(staging.name + "-old")
                os.replace(dst, old)
            os.replace(src, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            (out / ".incoming").rmdir()
        except OSError:
            pass


# ----------------------------------------------------------------------------- the trial (on a worker)


class Progress:
    """A small Ray actor: trials say when they start and the step each of their runs reached."""

    def __init__(self):
        self.started: dict[int, float] = {}
        self.steps: dict[tuple[int, int], int] = {}

    def start(self, trial: int) -> None:
        self.started[trial] = time.time()

    def report(self, trial: int, seed: int, step: int) -> None:
        self.steps[(trial, seed)] = step

    def snapshot(self) -> tuple[dict, dict]:
        return self.started, self.steps


class _Monitor(threading.Thread):
    """Once a second: label new run directories and report their steps to the progress actor."""

    def __init__(self, progress, trial: int, runs: list[tuple[int, pathlib.Path, str]], label: str, every=1.0):
        super().__init__(daemon=True)
        self.progress, self.trial, self.runs, self.label, self.every = progress, trial, runs, label, every
        self.halt = threading.Event()
        self.last: dict[int, int] = {}
        self.labelled: set[int] = set()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            self.poll()

    def poll(self) -> None:
        for seed, d, final in self.runs:
            try:
                if seed not in self.labelled and write_label(d, self.label, final):
                    self.labelled.add(seed)
                step = last_step(d / "metrics.csv")
                if step is not None and step != self.last.get(seed) and self.progress is not None:
                    self.last[seed] = step
                    self.progress.report.remote(self.trial, seed, step)
            except Exception:  # progress is best effort; training goes on
                pass

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.poll()


def worker_env(cpus: float, gpus: float, compile_cache: str | None = None) -> None:
    """The command line's environment, and JAX limited to this trial's CPUs / share of a GPU."""
    from rql.cli import _quiet_env

    _quiet_env()
    if compile_cache:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(compile_cache).expanduser())
    n = max(1, int(cpus))
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(n)
    if "jax" in sys.modules:  # too late to change how JAX starts in this process
        return
    if gpus <= 0:
        os.environ["JAX_PLATFORMS"] = "cpu"
        if n == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    elif gpus < 1:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{max(0.05, 0.9 * gpus):.2f}")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if not isinstance(e, RQLError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text[:600]


def _node() -> tuple[str | None, str]:
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    return node, socket.gethostname()


def run_trial(spec: dict) -> dict:
    """Train the seeds of one cell; never raises for an error of the run itself (that is reported)."""
    t0 = time.time()
    node, host = _node()
    worker_env(spec["cpus"], spec["gpus"], spec.get("compile_cache"))
    progress = spec.get("progress")
    if progress is not None:
        progress.start.remote(spec["trial"])
    out = pathlib.Path(spec["out"])
    shared = False
    if not spec.get("copy"):
        try:
            shared = (out / TOKEN_FILE).read_text().strip() == spec["token"]
        except OSError:
            shared = False
    tmp = None
    base = out
    if not shared:
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="rql-sweep-"))
        base = tmp
    seeds, rels = list(spec["seeds"]), list(spec["rels"])
    dirs = [base / rel for rel in rels]
    finals = [None if shared else str(out / rel) for rel in rels]
    error, errors, resumed, monitor = None, {}, set(), None
    steps = int(spec["steps"])
    try:
        if not shared and spec.get("archive"):
            unpack(spec["archive"], base)
        cfg = agent_config(spec["agent"], spec["task"], spec["preset"], spec["overrides"])
        from rql.train import RunConfig, train_group

        run = RunConfig(task=spec["task"], preset=spec["preset"], progress=False, **spec["run"])
        run = dataclasses.replace(run, steps=steps)
        monitor = _Monitor(progress, spec["trial"], list(zip(seeds, dirs, finals)), spec["label"])
        monitor.start()
        todo = [(s, d) for s, d in zip(seeds, dirs) if not finished(d, run.steps)]
        old = [(s, d) for s, d in todo if (d / "config.json").exists()]  # interrupted: continue
        new = [(s, d) for s, d in todo if not (d / "config.json").exists()]
        resumed = {s for s, _ in old}
        for group, resume in ((old, True), (new, False)):
            if group:
                try:
                    train_group(run, spec["agent"], cfg, [s for s, _ in group], [str(d) for _, d in group],
                                resume=resume, log=lambda *a, **k: None)
                except Exception as e:
                    errors.update({s: _one_line(e) for s, _ in group})
    except Exception as e:
        error = _one_line(e)
    finally:
        if monitor is not None:
            monitor.stop()
    result = {"trial": spec["trial"], "node_id": node, "hostname": host, "shared": shared, "seeds": {},
              "archive": None}
    for seed, d, final in zip(seeds, dirs, finals):
        write_label(d, spec["label"], final)
        done = finished(d, steps)
        why = errors.get(seed) or error or "the run stopped before its last step"
        result["seeds"][seed] = {"status": "done" if done else "failed", "error": None if done else why,
                                 "steps": summary_steps(d) or last_step(d / "metrics.csv"),
                                 "resumed": seed in resumed}
    if tmp is not None:
        result["archive"] = pack(base, rels)
        shutil.rmtree(tmp, ignore_errors=True)
    result["wall_time_s"] = time.time() - t0
    return result


# ----------------------------------------------------------------------------- the driver


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


def _ray():
    try:
        import ray
    except ImportError:
        raise RQLError("rql sweep runs on Ray, which is not installed: pip install ray") from None
    return ray


def _start_ray(plan: Plan, log) -> bool:
    """Connect to --address or start a local Ray; False when this process was already connected."""
    import logging

    ray = _ray()
    if ray.is_initialized():
        return False
    if plan.address:
        try:
            ray.init(address=plan.address, log_to_driver=False, logging_level=logging.WARNING)
        except Exception as e:
            hint = "check --address, or leave it out to start a local Ray"
            if "auth" in str(e).lower() and not os.environ.get("RAY_AUTH_MODE"):
                hint = ("a cluster with token authentication needs RAY_AUTH_MODE=token here too (and its token in "
                        "~/.ray/auth_token or RAY_AUTH_TOKEN)")
            raise RQLError(f"cannot connect to the Ray cluster at {plan.address} ({_one_line(e)[:300]}); "
                           f"{hint}") from None
    else:
        kw = {"num_cpus": plan.num_cpus or os.cpu_count() or 1}
        if plan.num_gpus is not None:
            kw["num_gpus"] = plan.num_gpus
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, **kw)
    return True


def _check_fits(plan: Plan, log) -> None:
    """Say so when no node can ever hold one trial (Ray would queue it forever)."""
    ray = _ray()
    need = {"CPU": plan.cpus_per_run, "GPU": plan.gpus_per_run, **plan.resources_per_run}
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items()) for n in nodes):
        return
    have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n.get("Resources", {}).items())
                               if k in need) or "none" for n in nodes)
    msg = (f"no Ray node has the resources of one trial ({', '.join(f'{k} {v:g}' for k, v in need.items())}); "
           f"nodes have: {have or 'no nodes'}")
    if plan.address:
        log(f"warning: {msg}; trials wait until such a node joins")
    else:
        raise RQLError(msg + "; lower --cpus-per-run/--gpus-per-run or raise --num-cpus/--num-gpus")


def _previous(out: pathlib.Path) -> dict[str, dict]:
    try:
        return {c["dir"]: c for c in read_sweep_file(out)["cells"]}
    except (RQLError, KeyError, TypeError):
        return {}


def run_sweep(plan: Plan, log=print, show_progress: bool = True) -> int:
    """Run (or continue) the sweep; returns the exit status (0: every cell ok, 1: some failed)."""
    out = plan.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RQLError(f"{out}: cannot create the sweep folder ({e.strerror})") from None
    shutil.rmtree(out / ".incoming", ignore_errors=True)
    cells = make_cells(plan)
    before = _previous(out)
    steps = plan.steps
    todo = []
    for c in cells:
        if finished(out / c.dir, steps):
            c.status, c.steps = "skipped", summary_steps(out / c.dir)
            prev = before.get(c.dir, {})
            for k in ("node_id", "hostname", "wall_time_s"):
                setattr(c, k, prev.get(k))
        else:
            todo.append(c)
    # A setting that cannot make an agent config fails its cells here, before any trial starts.
    checked: dict[tuple, str | None] = {}
    for c in todo:
        key = (c.agent, c.task, c.label)
        if key not in checked:
            try:
                agent_config(c.agent, c.task, plan.preset, c.overrides)
                checked[key] = None
            except RQLError as e:
                checked[key] = _one_line(e)
        if checked[key]:
            c.status, c.error = "failed", checked[key]
    todo = [c for c in todo if c.status != "failed"]
    # Trials: up to seeds_per_run seeds of one (task, variant), in the grid's order.
    trials: list[list[Cell]] = []
    for _, group in itertools.groupby(todo, key=lambda c: (c.task, c.label)):
        group = list(group)
        for i in range(0, len(group), plan.seeds_per_run):
            trials.append(group[i : i + plan.seeds_per_run])
    for i, t in enumerate(trials):
        for c in t:
            c.trial = i
    write_sweep_file(out, plan, cells)
    skipped = sum(c.status == "skipped" for c in cells)
    invalid = sum(c.status == "failed" for c in cells)
    variants = len(cells) // max(1, len(plan.tasks) * len(plan.seeds))
    log(f"sweep: {len(cells)} cells ({len(plan.tasks)} task(s) x {variants} agent variant(s) x "
        f"{len(plan.seeds)} seed(s)); {skipped} finished earlier, "
        + (f"{invalid} with an invalid setting, " if invalid else "")
        + f"{len(todo)} to run" + (f" in {len(trials)} trial(s)" if todo else ""))
    if trials:
        _run_trials(plan, cells, trials, log, show_progress)
    failed = [c for c in cells if c.status == "failed"]
    if plan.compare:
        write_comparison(out, cells, log)
    if failed:
        for c in failed[:10]:
            log(f"failed: {c.dir}: {c.error}")
        print(f"sweep: {len(failed)} of {len(cells)} cells failed; each cell's error is in {out / SWEEP_FILE} "
              f"(rql sweep status {out})", file=sys.stderr)
        return 1
    log(f"sweep: all {len(cells)} cells done ({skipped} skipped as finished earlier); results in {out}")
    return 0


def _run_trials(plan: Plan, cells: list[Cell], trials: list[list[Cell]], log, show_progress: bool) -> None:
    out = plan.out
    started_here = _start_ray(plan, log)
    ray = _ray()
    try:
        _check_fits(plan, log)
        token = secrets.token_hex(16)
        (out / TOKEN_FILE).write_text(token)
        copy = os.environ.get(COPY_ENV, "") not in ("", "0")
        # Runs that may continue elsewhere travel with their trial when the worker might not see `out`.
        ship = copy or bool(plan.address)
        progress = ray.remote(num_cpus=0)(Progress).remote()
        remote = ray.remote(
            num_cpus=plan.cpus_per_run, num_gpus=plan.gpus_per_run, resources=plan.resources_per_run or None,
            max_retries=plan.max_retries, retry_exceptions=False, max_calls=1,
        )(run_trial)
        pending = {}
        for i, t in enumerate(trials):
            c0 = t[0]
            rels = [c.dir for c in t]
            archive = None
            if ship and any((out / r / "config.json").is_file() for r in rels):
                archive = pack(out, [r for r in rels if (out / r / "config.json").is_file()])
            spec = {"trial": i, "task": c0.task, "agent": c0.agent, "label": c0.label, "preset": plan.preset,
                    "overrides": c0.overrides, "run": plan.run, "steps": plan.steps,
                    "seeds": [c.seed for c in t], "rels": rels,
                    "out": str(out), "token": token, "copy": copy, "archive": archive, "progress": progress,
                    "cpus": plan.cpus_per_run, "gpus": plan.gpus_per_run, "compile_cache": plan.compile_cache}
            pending[remote.remote(spec)] = i
        _wait(plan, cells, trials, pending, progress, log, show_progress)
    finally:
        try:
            (out / TOKEN_FILE).unlink()
        except OSError:
            pass
        if started_here:
            ray.shutdown()


def _wait(plan, cells, trials, pending, progress, log, show_progress) -> None:
    ray = _ray()
    out = plan.out
    total = sum(len(t) for t in trials)
    counted: dict[tuple[int, int], int] = {}
    updates = 0
    history: collections.deque = collections.deque(maxlen=64)
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(total=total, desc="sweep", unit="cell", dynamic_ncols=True, disable=not show_progress,
               file=sys.stderr, mininterval=0.5 if tty else 30.0)
    dirty, shown = False, 0.0
    started: dict = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if ready:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # the worker or node died more often than --max-retries
                    res = {"seeds": {c.seed: {"status": "failed", "error": _one_line(e)} for c in trials[i]},
                           "archive": None}
                if res.get("archive"):
                    try:
                        install_runs(res["archive"], out, [c.dir for c in trials[i]])
                    except (OSError, tarfile.TarError, RQLError) as e:
                        for s in res["seeds"].values():
                            s.update(status="failed", error=f"copying the run back failed: {_one_line(e)}")
                for c in trials[i]:
                    r = res["seeds"].get(c.seed, {"status": "failed", "error": "no result"})
                    c.status, c.error = r["status"], r.get("error")
                    c.steps, c.resumed = r.get("steps"), bool(r.get("resumed"))
                    c.node_id, c.hostname = res.get("node_id"), res.get("hostname")
                    c.wall_time_s = res.get("wall_time_s")
                bar.update(len(trials[i]))
                dirty = True
            try:
                started, steps = ray.get(progress.snapshot.remote(), timeout=10)
            except Exception:
                steps = {}
            for key, step in steps.items():
                prev = counted.get(key)
                if prev is not None and step > prev:
                    updates += step - prev
                counted[key] = step
            now = time.time()
            history.append((now, updates))
            while len(history) > 2 and now - history[0][0] > 15:
                history.popleft()
            rate = (history[-1][1] - history[0][1]) / max(1e-9, history[-1][0] - history[0][0])
            for i, t in enumerate(trials):
                if i in started:
                    for c in t:
                        if c.status == "queued":
                            c.status, dirty = "running", True
            n = collections.Counter(c.status for c in cells if c.trial is not None)
            bar.set_postfix_str(f"done {n['done']} running {n['running']} failed {n['failed']} queued {n['queued']}"
                                f" | {rate:,.0f} upd/s", refresh=False)
            if ready or now - shown >= (1.0 if tty else 30.0):  # a log file gets a line every 30 s
                bar.refresh()
                shown = now
            if dirty:
                write_sweep_file(out, plan, cells)
                dirty = False
    except KeyboardInterrupt:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        for c in cells:
            if c.status in ("queued", "running"):
                c.status, c.error = "interrupted", "the sweep was interrupted"
        write_sweep_file(out, plan, cells)
        raise RQLError("interrupted; run the same command again to continue (finished cells are skipped, "
                       "interrupted ones resume from their last checkpoint)") from None
    finally:
        bar.close()
    write_sweep_file(out, plan, cells)


def write_comparison(out: pathlib.Path, cells: list[Cell], log) -> dict | None:
    """'rql compare' over the sweep's run directories into OUT/compare/; prints the table."""
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
        result = compare([str(d) for d in dirs], out / "compare", warn=notes.append)
    except RQLError as e:
        log(f"compare: {e}")
        return None
    if notes:
        log(f"compare: {len(notes)} run(s) without an evaluation yet are left out")
    log(result["markdown"].rstrip("\n"))
    log(f"compare: wrote {', '.join(str(f) for f in result['files'])}")
    return result


def sweep_status(out: str | pathlib.Path, compare_runs: bool = True, log=print) -> int:
    out = pathlib.Path(out).expanduser()
    doc = read_sweep_file(out)
    steps = int(((doc.get("settings") or {}).get("run") or {}).get("steps") or 0)
    cells = []
    names = {f.name for f in dataclasses.fields(Cell)}
    for rec in doc["cells"]:
        c = Cell(**{k: v for k, v in rec.items() if k in names and k != "overrides"}, overrides={})
        d = out / c.dir
        if steps and finished(d, steps):
            if c.status not in ("done", "skipped"):
                c.status, c.error = "done", None
        elif c.status in ("done", "skipped"):
            c.status, c.error = "missing", "the run directory has no finished summary.json"
        cells.append(c)
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
        write_comparison(out, cells, log)
    return 1 if n["failed"] or n["missing"] else 0
