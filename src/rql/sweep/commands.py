"""The ``rql sweep`` commands: ``rql sweep [--config FILE] [OPTIONS] [--dry-run]``, ``rql sweep status DIR``
and ``rql sweep init --paper ENV[,ENV...] --out FILE``."""

from __future__ import annotations

import dataclasses
from typing import Annotated

import tyro


def _opt(metavar: str):
    """A flag shown as ``--flag METAVAR``; its default is told in its help text (None means: see there)."""
    return tyro.conf.arg(metavar=metavar, help_behavior_hint=lambda default: "")


@dataclasses.dataclass
class SweepArgs:
    config: Annotated[str | None, _opt("FILE")] = None
    """A TOML (or YAML, when PyYAML is installed) file with the sweep: the options below as keys
    (tasks = ["..."], agents = ["rql", "flow-bc"], seeds = [0, 1, 2], out = "sweeps/x", steps = 100000, ...)
    and the tables [grid] and [set] (e.g. [grid] "rql.alpha" = [1, 3]). Options on the command line win.
    'rql sweep init --paper ENV' writes one for the RQL paper's protocol."""
    tasks: Annotated[str | None, _opt("T1,T2")] = None
    """OGBench single-task names, comma separated; each picks its data, the paper's per-environment settings
    and its evaluation environment. May be left out with --dataset-path (then no evaluation environment)."""
    agents: Annotated[str | None, _opt("A1,A2")] = None
    """Agents, comma separated, or 'all' for every registered agent (default: rql)."""
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
    """Seeds of the same cell trained by one trial, one after the other or batched, as rql.training.train_group
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
    dry_run: bool = False
    """Print the cells (task, agent variant, seed and the agent values that differ from the agent's
    defaults, one line each) and their count, and stop: no Ray, nothing written."""


@dataclasses.dataclass
class StatusArgs:
    out: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="DIR")]
    """The sweep folder (holding sweep.json)."""
    compare: bool = True
    """Write the comparison table and plots (as 'rql compare' makes them) into DIR/compare/ and print
    the table."""
    published: bool = False
    """Put the published results beside the sweep's runs in that comparison (as 'rql compare --published')."""


@dataclasses.dataclass
class InitArgs:
    paper: Annotated[str, _opt("ENV[,ENV...]")]
    """Environments of the RQL paper, comma separated: scene-play, puzzle-3x3-play, puzzle-4x4-play,
    cube-double-play, cube-triple-play, cube-quadruple-play, antmaze-large-navigate, antmaze-giant-navigate,
    humanoidmaze-medium-navigate, humanoidmaze-large-navigate."""
    out: Annotated[str, _opt("FILE")]
    """The sweep file to write (.toml); an existing file is not overwritten."""
    methods: Annotated[str | None, _opt("A,B")] = None
    """Agents, comma separated (default: rql and every method of the QAM suite registered here)."""
    seeds: Annotated[int, _opt("N")] = 12
    """Seeds 0..N-1 per task and method (default: 12, as many as the published curves have)."""


DESCRIPTION = (
    "Train a grid of tasks x agents x seeds x agent fields on Ray: a local Ray started in this process "
    "(default), or a cluster with --address. Every cell is a normal run directory "
    "OUT/<task>/<agent>[-field=value...]/s<seed>; OUT/sweep.json records each cell's status, error, node "
    "and wall time; OUT/compare/ gets the comparison table and plots ('rql compare'), one row per agent "
    "variant. Re-running "
    "the same command skips finished cells and resumes interrupted ones. Exit status 1 when a cell failed. "
    "'rql sweep status OUT' shows the state and writes the comparison at any time; 'rql sweep init --paper ENV "
    "--out FILE' writes a sweep file for the RQL paper's protocol. "
    "Example: rql sweep --tasks cube-single-play-singletask-task1-v0 --agents rql,flow-bc --seeds 0-2 "
    "--preset small --steps 100000 --grid rql.alpha=1,3 --out sweeps/cube."
)
STATUS_DESCRIPTION = (
    "Show a sweep's cells (done, running, failed, ...) and the errors of failed ones, write the comparison "
    "table and plots ('rql compare') into DIR/compare/ and print the table. Exit status 1 when a cell failed."
)
INIT_DESCRIPTION = (
    "Write a sweep file (TOML, for 'rql sweep --config FILE') with the RQL paper's protocol on the given "
    "environments: tasks 1-5 of each, the chosen methods with their reference settings (listed in the file), "
    "seeds 0..N-1, 1M updates, an evaluation every 100,000 updates with 50 episodes. The file says which "
    "datasets cannot be made here and must be provided."
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


def dry_run(plan, log=print) -> int:
    """Print the cells of ``plan`` and their count; start nothing."""
    from rql.sweep.paper import data_note
    from rql.sweep.plan import describe_cells, make_cells

    cells = make_cells(plan)
    for line in describe_cells(plan, cells):
        log(line)
    note = data_note(plan.tasks, plan.run.get("dataset_dir"), plan.run.get("dataset_path"))
    if note:
        log(note)
    variants = len(cells) // max(1, len(plan.tasks) * len(plan.seeds))
    log(f"sweep: {len(cells)} cells ({len(plan.tasks)} task(s) x {variants} agent variant(s) x "
        f"{len(plan.seeds)} seed(s)); dry run, nothing started")
    return 0


def cmd_sweep(argv: list[str], parse) -> int:
    if argv and argv[0] == "status":
        from rql.sweep.status import sweep_status

        args = parse(StatusArgs, argv[1:], "rql sweep status", STATUS_DESCRIPTION)
        return sweep_status(args.out, compare_runs=args.compare, published=args.published)
    if argv and argv[0] == "init":
        from rql.sweep.paper import write_paper_sweep

        args = parse(InitArgs, argv[1:], "rql sweep init", INIT_DESCRIPTION)
        path = write_paper_sweep(args.paper, args.out, args.methods, args.seeds)
        print(f"wrote {path}; check its cells with: rql sweep --config {path} --dry-run")
        return 0
    from rql.sweep.execution import run_sweep
    from rql.sweep.plan import make_plan

    grid, argv = _pop_multi(argv, "--grid")
    fixed, argv = _pop_multi(argv, "--set")
    args = parse(SweepArgs, argv, "rql sweep", DESCRIPTION)
    plan = make_plan(args, grid, fixed)
    return dry_run(plan) if args.dry_run else run_sweep(plan)
