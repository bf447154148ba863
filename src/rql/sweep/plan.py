"""The plan of a sweep: the sweep file and the command line merged and checked, and its cells.

A :class:`Plan` holds the axes (tasks, agents, seeds, agent-field grid), the fixed settings and the
run options common to every cell; :func:`make_cells` expands it into one :class:`Cell` per run
directory ``<task>/<label>/s<seed>``. Nothing here starts Ray or trains.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import pathlib
import re
from typing import Any

from rql.errors import RQLError
from rql.values import coerce, field_types, format_value, parse_value, safe_name, split_top

# Options settable in a sweep file and on the command line (the command line wins).
RUN_OPTIONS = ("steps", "eval_every", "eval_episodes", "eval_envs", "save_every", "log_every")
FILE_OPTIONS = ("tasks", "agents", "seeds", "out", "dataset_dir", "dataset_path", "preset", *RUN_OPTIONS,
                "address", "num_cpus", "num_gpus", "cpus_per_run", "gpus_per_run", "seeds_per_run", "max_retries",
                "resources_per_run", "compile_cache")
FILE_TABLES = ("grid", "set")
# RunConfig fields the sweep sets itself, per cell or through its own options.
RUN_RESERVED = ("task", "seed", "run_dir", "progress", "dataset_dir", "dataset_path", "preset")


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
        from rql.training import RunConfig

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


# ----------------------------------------------------------------------------- the sweep file


def _parse_document(path: str, suffix: str, text: str):
    """The document of a .toml (tomllib) or .yaml/.yml (PyYAML) sweep file."""
    if suffix == ".toml":
        import tomllib

        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RQLError(f"{path}: not valid TOML ({e})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise RQLError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the sweep as "
                           "a .toml file") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RQLError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    raise _usage(f"--config {path}: give a .toml, .yaml or .yml file")


def load_sweep_file(path: str) -> dict:
    """A sweep file's options (TOML, or YAML when PyYAML is installed), keys with '_' for '-'."""
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise _usage(f"--config {path}: no such file")
    doc = _parse_document(path, p.suffix.lower(), p.read_text())
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


# ----------------------------------------------------------------------------- axes and keys


def _key(entry: str, what: str) -> tuple[str, str]:
    """``rql.flow-steps`` -> (``rql``, ``flow_steps``)."""
    if "." not in entry:
        raise _usage(f"{what} entry '{entry}': expected SCOPE.FIELD (agent.FIELD, AGENT.FIELD or run.FIELD)")
    scope, field = entry.rsplit(".", 1)
    scope, field = scope.strip(), field.strip().replace("-", "_")
    if not scope or not field:
        raise _usage(f"{what} entry '{entry}': expected SCOPE.FIELD")
    return scope, field


def _seed_part(p) -> list[int]:
    """One entry of --seeds: an integer or a range ``lo-hi``; ValueError otherwise."""
    if isinstance(p, str) and re.fullmatch(r"\s*\d+\s*-\s*\d+\s*", p):
        lo, hi = (int(x) for x in p.split("-"))
        if hi < lo:
            raise ValueError
        return list(range(lo, hi + 1))
    if isinstance(p, bool) or isinstance(p, float):
        raise ValueError
    return [int(p)]


def _seeds(value) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [value]
    parts = value if isinstance(value, list) else split_top(str(value))
    seeds = []
    for p in parts:
        try:
            seeds.extend(_seed_part(p))
        except (TypeError, ValueError):
            raise _usage(f"--seeds: '{p}' is not a seed; give integers such as 0,1,2 or a range such as 0-4") from None
    if not seeds:
        raise _usage("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise _usage(f"--seeds: a seed is repeated in {value}")
    return seeds


def _names(value, what: str) -> list[str]:
    items = value if isinstance(value, list) else split_top(str(value))
    names = [str(x).strip() for x in items if str(x).strip()]
    if len(set(names)) != len(names):
        raise _usage(f"--{what}: a name is repeated in {value}")
    return names


# ----------------------------------------------------------------------------- agent configs


def agent_config(agent: str, task: str | None, preset: str | None, overrides: dict, settings: str | None = None):
    """The agent's config for one cell: defaults, the task's settings (named ``settings``, default the
    agent's), the preset, then ``overrides`` (values from the sweep file, the command line or
    :func:`rql.train`, checked against each field's type)."""
    from rql.agents import build_config, typed_overrides

    return build_config(agent, task, preset, typed_overrides(agent, overrides), settings=settings)


def check_ranges(plan: Plan) -> None:
    """Build every cell's agent config now, at plan time: a value outside its field's declared range
    (``rql.agents.fields``) fails the whole sweep with one line before any trial runs. A value of the wrong
    type still fails only its own cells, when the sweep runs (and shows as 'invalid' in a dry run)."""
    from rql.agents.fields import FieldRangeError

    for task in plan.tasks:
        for agent in plan.agents:
            for label, overrides in agent_variants(plan, agent):
                try:
                    agent_config(agent, task, plan.preset, overrides)
                except FieldRangeError as e:
                    raise FieldRangeError(f"{label}: {e}") from None
                except RQLError:
                    pass


# ----------------------------------------------------------------------------- the plan


def _merged_options(args) -> tuple[dict, list, list]:
    """The sweep file's options with the command line's on top, and the file's [grid] and [set] entries."""
    opts = load_sweep_file(args.config) if args.config else {}
    file_grid = _flatten(opts.pop("grid", {}) or {})
    file_set = _flatten(opts.pop("set", {}) or {})
    for name in FILE_OPTIONS:
        v = getattr(args, name)
        if v is not None:
            opts[name] = v
    if not opts.get("out"):
        raise _usage("give --out DIR, the sweep folder (or 'out' in the --config file)")
    return opts, file_grid, file_set


def _axes(opts: dict) -> tuple[list[str | None], list[str], list[int]]:
    """The tasks (``[None]`` for one --dataset-path without a task), agents and seeds of the grid."""
    from rql.agents import BUILTIN, REGISTRY, resolve_agent

    agents = _names(opts.get("agents", "rql"), "agents")
    if agents == ["all"]:  # every built-in agent
        agents = sorted(BUILTIN)
    if not agents:
        raise _usage("--agents: give at least one agent")
    names = []
    for a in agents:  # a name, or a plugin agent's file or module (loaded here, shipped with each trial)
        try:
            names.append(resolve_agent(a))
        except RQLError as e:
            raise _usage(f"--agents: {e}") from None
    if len(set(names)) != len(names):
        raise _usage(f"--agents: an agent is named twice in {', '.join(agents)}")
    agents = names
    assert all(a in REGISTRY for a in agents)
    tasks: list[str | None] = _names(opts["tasks"], "tasks") if opts.get("tasks") else []
    if not tasks:
        if not opts.get("dataset_path"):
            raise _usage("give --tasks T1,T2 (OGBench single-task names) and/or --dataset-path FILE")
        tasks = [None]
    return tasks, agents, _seeds(opts.get("seeds", 0))


def _check_agent_key(scope: str, field: str, what: str, entry: str) -> None:
    """A typo fails the sweep; an entry for an agent not swept this time is allowed (and unused)."""
    from rql.agents import REGISTRY

    all_fields = {a: field_types(spec.config_cls) for a, spec in REGISTRY.items()}
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


def _grid(file_grid: list, grid_cli) -> dict[tuple[str, str], list]:
    """The grid's axes: the file's, then the command line's (which wins), each checked."""
    grid: dict[tuple[str, str], list] = {}
    for entry, values in file_grid:
        grid[_key(entry, "grid")] = list(values) if isinstance(values, (list, tuple)) else [values]
    for entry in grid_cli:
        if "=" not in entry:
            raise _usage(f"--grid {entry}: expected KEY=V1,V2 (e.g. rql.alpha=1,3)")
        k, v = entry.split("=", 1)
        grid[_key(k, "--grid")] = [parse_value(x) for x in split_top(v)]
    for (scope, field), values in grid.items():
        if scope == "run":
            raise _usage(f"grid run.{field}: the grid sweeps agent fields; set run options with --set run.{field}=V")
        _check_agent_key(scope, field, "grid", f"{scope}.{field}")
        if not values:
            raise _usage(f"grid {scope}.{field}: give at least one value")
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise _usage(f"grid {scope}.{field}: a value is repeated")
    return grid


def _fixed(file_set: list, set_cli, grid: dict) -> tuple[dict, list]:
    """The [set] / --set entries: run options (``run.FIELD``) and fixed agent fields."""
    from rql.training import RunConfig

    entries: dict[tuple[str, str], Any] = {_key(entry, "set"): value for entry, value in file_set}
    for entry in set_cli:
        if "=" not in entry:
            raise _usage(f"--set {entry}: expected KEY=VALUE (e.g. rql.ensemble=2 or run.log-every=500)")
        k, v = entry.split("=", 1)
        entries[_key(k, "--set")] = parse_value(v)
    run_types = field_types(RunConfig)
    run: dict[str, Any] = {}
    fixed = []
    for (scope, field), value in entries.items():
        if scope == "run":
            if field not in run_types:
                raise _usage(f"set run.{field}: 'rql train' has no option --{field.replace('_', '-')}")
            if field in RUN_RESERVED:
                raise _usage(f"set run.{field}: the sweep sets this itself"
                             + ("; use --" + field.replace("_", "-") if field in FILE_OPTIONS else ""))
            run[field] = value
        else:
            _check_agent_key(scope, field, "set", f"{scope}.{field}")
            if (scope, field) in grid:
                raise _usage(f"{scope}.{field} is both in the grid and set; keep one")
            fixed.append((scope, field, value))
    return run, fixed


def _local_path(p):
    """A path that exists here, made absolute (workers may run elsewhere); ``minari:ID`` and the like as given."""
    if p is None or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", str(p)):  # minari:ID, toy:NAME
        return p
    q = pathlib.Path(str(p)).expanduser()
    return str(q.resolve()) if q.exists() else str(p)


def _run_options(run: dict, opts: dict) -> dict:
    """RunConfig fields of every cell: run.FIELD entries, then the sweep's own run options, typed and checked."""
    from rql.training import RunConfig

    run = dict(run)
    for name in RUN_OPTIONS:
        if opts.get(name) is not None:
            run[name] = opts[name]
    run_types = field_types(RunConfig)
    for field, value in list(run.items()):
        try:
            run[field] = coerce(value, run_types[field])
        except ValueError as e:
            raise _usage(f"{field.replace('_', '-')}={format_value(value)}: expected {e}") from None
    if run.get("steps", 1) <= 0:
        raise _usage("--steps must be positive")
    for name in ("eval_every", "eval_episodes", "eval_envs", "log_every"):
        if run.get(name, 0) < 0:
            raise _usage(f"--{name.replace('_', '-')} must not be negative")
    run["dataset_dir"] = _local_path(opts.get("dataset_dir"))
    run["dataset_path"] = _local_path(opts.get("dataset_path"))
    return run


def _number(opts: dict, name: str, cast, default, low, allow_equal: bool = True):
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


def _resources(resources) -> dict[str, float]:
    resources = resources or {}
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
    return {str(k): float(v) for k, v in resources.items()}


def _check_preset(preset: str | None, agents: list[str]) -> None:
    from rql.agents import get_spec

    if preset is None:
        return
    for a in agents:
        if preset not in get_spec(a).network_presets:
            raise _usage(f"--preset: agent '{a}' has no preset '{preset}'; choose one of "
                         f"{', '.join(get_spec(a).network_presets)}")


def make_plan(args, grid_cli: list[str] = (), set_cli: list[str] = ()) -> Plan:
    """Merge the sweep file and the command line (``args``: a SweepArgs) into a checked plan (no cell is run)."""
    opts, file_grid, file_set = _merged_options(args)
    tasks, agents, seeds = _axes(opts)
    grid = _grid(file_grid, grid_cli)
    run, fixed = _fixed(file_set, set_cli, grid)
    run = _run_options(run, opts)
    resources = _resources(opts.get("resources_per_run"))
    _check_preset(opts.get("preset"), agents)
    plan = Plan(
        out=pathlib.Path(str(opts["out"])).expanduser().resolve(),
        tasks=tasks, agents=agents, seeds=seeds,
        grid=[(s, f, v) for (s, f), v in grid.items()],
        fixed=fixed, run=run, preset=opts.get("preset"),
        address=opts.get("address") or None,
        num_cpus=_number(opts, "num_cpus", int, None, 1),
        num_gpus=_number(opts, "num_gpus", float, None, 0),
        cpus_per_run=_number(opts, "cpus_per_run", float, 1.0, 0, allow_equal=False),
        gpus_per_run=_number(opts, "gpus_per_run", float, 0.0, 0),
        seeds_per_run=_number(opts, "seeds_per_run", int, 1, 1),
        max_retries=_number(opts, "max_retries", int, 2, 0),
        resources_per_run=resources,
        compile_cache=_local_path(opts.get("compile_cache")),
        compare=args.compare,
    )
    check_ranges(plan)
    return plan


# ----------------------------------------------------------------------------- the cells


def agent_variants(plan: Plan, agent: str) -> list[tuple[str, dict]]:
    """``(label, overrides)`` of each grid point of ``agent``: fixed settings, then its grid values."""
    from rql.agents import get_spec

    fields = field_types(get_spec(agent).config_cls)

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
        label = agent + "".join(f"-{f}={format_value(v)}" for f, v in point.items())
        out.append((safe_name(label), {**fixed, **point}))
    return out


def make_cells(plan: Plan) -> list[Cell]:
    cells = []
    for task in plan.tasks:
        task_dir = safe_name(task or pathlib.PurePath(str(plan.run.get("dataset_path") or "data")).stem)
        for agent in plan.agents:
            for label, overrides in agent_variants(plan, agent):
                for seed in plan.seeds:
                    cells.append(Cell(task, agent, label, seed, overrides, f"{task_dir}/{label}/s{seed}"))
    return cells


def changed_fields(config) -> dict[str, Any]:
    """The fields of an agent config whose values differ from its class's defaults."""
    default = type(config)()
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(default, f.name)}


def describe_cells(plan: Plan, cells: list[Cell]) -> list[str]:
    """One line per cell: task, label, seed and the agent values that differ from the agent's defaults."""
    lines, seen = [], {}
    for c in cells:
        key = (c.agent, c.task, c.label)
        if key not in seen:
            try:
                changed = changed_fields(agent_config(c.agent, c.task, plan.preset, c.overrides))
                seen[key] = " ".join(f"{k}={format_value(v)}" for k, v in changed.items()) or "(defaults)"
            except RQLError as e:
                seen[key] = f"invalid: {' '.join(str(e).split())}"
        lines.append(f"{c.task or c.dir.split('/')[0]}  {c.label}  s{c.seed}  {seen[key]}")
    return lines
