"""The ``rql`` command line.

Every user error ends in one line ``error: ...`` on stderr and exit status 2; no traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Annotated

USAGE = """usage: rql COMMAND [OPTIONS]

Reversal Q-Learning: train flow policies from offline data, and compare against other methods.

commands:
  train      train an agent on an offline dataset (rql train --help)
  eval       evaluate a saved run (rql eval RUN_DIR --episodes N)
  export     write a run's policy as one file that runs with JAX alone (rql export RUN_DIR --out FILE)
  demo       generate a small dataset, train RQL and a BC baseline, plot and report (offline, CPU)
  data       generate OGBench datasets offline, or describe a dataset (rql data generate|info --help)
  compare    tabulate and plot runs by agent and task (rql compare RUN_DIR... [--published])
  published  the published results of the RQL paper's comparison, in its layout (rql published --help)
  sweep      run a grid of tasks x agents x seeds x settings on Ray (rql sweep --help; status, init --paper)
  lab        the ideas of RQL drawn from trained networks, as one HTML page (rql lab --help)
  bench      measure update throughput (rql bench throughput --help)

Each command explains every option with --help.
"""


class UsageError(Exception):
    pass


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _quiet_env() -> None:
    from rql.api import _environment

    _environment()  # what the Python API sets up too: rendering backend, JAX's compile cache
    os.environ.setdefault("PYTHONWARNINGS", "ignore")  # also for worker processes
    import warnings

    warnings.filterwarnings("ignore")


def _pop_option(argv: list[str], name: str) -> tuple[str | None, list[str]]:
    """Take ``--name VALUE`` or ``--name=VALUE`` out of argv (the last one wins)."""
    out, value, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == name:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise UsageError(f"{name} needs a value")
            value = argv[i + 1]
            i += 2
            continue
        if a.startswith(name + "="):
            value = a.split("=", 1)[1]
            i += 1
            continue
        out.append(a)
        i += 1
    return value, out


def _peek_option(argv: list[str], name: str) -> str | None:
    value, _ = _pop_option(list(argv), name)
    return value


def _tyro_parse(cls, argv: list[str], prog: str, description: str, default=None):
    """Parse with tyro; a bad flag or value becomes one clear line instead of a box of text."""
    import tyro

    known = _known_flags(cls)
    for a in argv:
        if a.startswith("--") and a not in ("--help",):
            flag = a.split("=", 1)[0]
            if flag not in known:
                raise UsageError(f"unknown option {flag}; see '{prog} --help'")
    try:
        import io
        import contextlib

        if "--help" in argv or "-h" in argv:
            return tyro.cli(cls, args=argv, prog=prog, description=description, default=default)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return tyro.cli(cls, args=argv, prog=prog, description=description, default=default)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        text = " ".join(err.getvalue().split())
        detail = _tyro_detail(text)
        raise UsageError(f"{detail}; see '{prog} --help'") from None


def _tyro_detail(text: str) -> str:
    """The one informative sentence of tyro's boxed error text."""
    import re

    text = re.sub(r"[│╭╮╰╯─┃━┏┓┗┛]+|-{3,}", " ", text)
    text = " ".join(text.split())
    for cut in (" Argument helptext", " For full helptext", " Usage:"):
        text = text.split(cut)[0]
    for marker in ("Error parsing", "Required option", "Missing from", "Unrecognized", "invalid choice", "expected"):
        i = text.find(marker)
        if i >= 0:
            return text[i : i + 200].strip()
    return text[:200].strip() or "invalid arguments"


def _known_flags(cls) -> set[str]:
    """Every ``--flag`` tyro accepts for ``cls`` (nested dataclasses as ``--outer.inner``)."""
    flags = {"--help", "-h"}

    def walk(c, prefix):
        for f in dataclasses.fields(c):
            name = f.name.replace("_", "-")
            inner = _dataclass_type(c, f)
            if inner is not None:
                walk(inner, prefix + name + ".")
            else:
                flags.update({f"--{prefix}{name}", f"--{prefix}no-{name}"})

    walk(cls, "")
    return flags


def _dataclass_type(cls, field):
    import typing

    hints = typing.get_type_hints(cls, include_extras=True)
    t = hints.get(field.name)
    while typing.get_origin(t) is Annotated:
        t = typing.get_args(t)[0]
    return t if dataclasses.is_dataclass(t) else None


# ----------------------------------------------------------------------------- train


def _cli_config_cls(cfg_cls):
    """``cfg_cls`` as the command line shows it: a ``settings`` field (the record of the named settings
    applied) is set by --settings, so it is no --agent option."""
    import tyro

    field = next((f for f in dataclasses.fields(cfg_cls) if f.name == "settings"), None)
    if field is None:
        return cfg_cls
    return dataclasses.make_dataclass(cfg_cls.__name__, [("settings", tyro.conf.Suppress[str], field.default)],
                                      bases=(cfg_cls,))


def _train_cls(agent_name: str):
    """The options of ``rql train --agent agent_name``; ``.agent_cls`` is the class of its ``agent`` field."""
    from rql.agents import get_spec
    from rql.training import RunConfig

    spec = get_spec(agent_name)
    cfg_cls = _cli_config_cls(spec.config_cls)
    settings_help = ", ".join(f"'{n}'" for n in spec.settings_names)

    import tyro

    cls = dataclasses.make_dataclass(
        "TrainArgs",
        [
            ("agent", Annotated[cfg_cls, tyro.conf.arg(help="The agent's fields (select the agent with --agent NAME).")],
             dataclasses.field(default_factory=cfg_cls)),
            ("resume", Annotated[str | None, tyro.conf.arg(
                help="Continue the run (or the group of seeds made by --seeds) in this directory from its last "
                     "readable checkpoint (options are read from config.json; only --steps may be given to "
                     "extend it).")], None),
            ("seeds", Annotated[str | None, tyro.conf.arg(
                help="Train several seeds as one compiled function in this process: '0,1,2,3' lists them, '4' "
                     "means 0,1,2,3. Each seed writes its own run directory, --run-dir D/s<seed> (D: --run-dir or "
                     "runs/<task>/<agent>-seeds...-<time>), and equals a run with --seed alone.")], None),
            ("settings", Annotated[str, tyro.conf.arg(
                help=f"Named per-environment settings that --task applies: {settings_help}.")], spec.settings),
            ("print_config", Annotated[bool, tyro.conf.arg(
                help="Print the resolved agent fields as JSON (defaults, then --task under --settings, then "
                     "--preset, then --agent.FIELD values) and exit without reading data.")], False),
        ],
        bases=(RunConfig,),
    )
    cls.agent_cls = cfg_cls
    return cls


def cmd_train(argv: list[str]) -> int:
    from rql.agents import REGISTRY, build_config, check_config, get_spec, resolve_settings

    agent_name, argv = _pop_option(argv, "--agent")
    resume = _peek_option(argv, "--resume")
    if resume is not None:
        from rql.training import resume_group

        steps = _peek_option(argv, "--steps")
        rest = [a for a in argv if not a.startswith(("--resume", "--steps"))]
        rest = [a for a in rest if a not in (resume, steps)]
        if rest:
            raise UsageError(f"--resume takes only --steps besides the run directory; got {' '.join(rest)}")
        n_steps = None
        if steps is not None:
            try:
                n_steps = int(steps)
            except ValueError:
                raise UsageError(f"--steps expects an integer, got '{steps}'") from None
        for summary in resume_group(resume, n_steps):
            _report(summary)
        return 0
    from rql.agents import resolve_agent

    agent_name = resolve_agent(agent_name or "rql")  # a name, a file, a module or an installed plugin's agent
    spec = get_spec(agent_name)
    task = _peek_option(argv, "--task")
    preset = _peek_option(argv, "--preset")
    settings = _peek_option(argv, "--settings")
    cls = _train_cls(agent_name)
    default_cfg = build_config(agent_name, task, preset, settings=settings)
    agents = ", ".join(f"{n} ({s.description})" for n, s in sorted(REGISTRY.items()))
    description = (
        f"Train an agent offline (then online with --online-steps). Select the method with --agent NAME; one of: {agents}; "
        "or --agent my_agent.py (a Python file), --agent mypkg.my_agent (a module) or the name of an installed "
        "plugin's agent (entry-point group 'rql.agents'): see 'Write your own method' in the README. "
        f"Showing the fields of '{agent_name}' ({spec.description}); their defaults below already include "
        "the per-environment settings of --task and the --preset, when given on the same line. "
        "--task applies named settings: by default the QAM suite's comparison protocol ('suite': 10 critics "
        "as mean - rho * std, 4x512 networks, the suite's chunk length and discount, and each method's own "
        "per-environment values) for every method of the suite, the RQL paper's for rql ('rql-paper'); "
        "--settings fql-paper gives FQL, IFQL and ReBRAC the FQL paper's values instead (two critics combined "
        "by mean or min). --preset small shrinks any of them to 2x256 networks and 2 critics. "
        "Override any agent field with --agent.FIELD VALUE; --print-config shows the result."
    )
    shown = cls.agent_cls(**{f.name: getattr(default_cfg, f.name) for f in dataclasses.fields(default_cfg)})
    args = _tyro_parse(cls, argv, "rql train", description,
                       default=cls(agent=shown, settings=resolve_settings(agent_name, settings)))
    agent_cfg = spec.config_cls(**{f.name: getattr(args.agent, f.name) for f in dataclasses.fields(spec.config_cls)})
    check_config(agent_cfg)  # each --agent.FIELD against its declared range, before anything is read or written
    if args.print_config:
        print(json.dumps(dataclasses.asdict(agent_cfg), indent=2))
        return 0
    from rql.training import RunConfig, parse_seeds, train, train_group

    run = RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)})
    if run.task is None and run.dataset_path is None:
        raise UsageError("give --task (an OGBench single-task name) and/or --dataset-path FILE")
    if args.seeds is None:
        _report(train(run, agent_name, agent_cfg))
        return 0
    for summary in train_group(run, agent_name, agent_cfg, parse_seeds(args.seeds)):
        _report(summary)
    return 0


def _report(summary: dict) -> None:
    fe = summary.get("final_eval")
    who = f"seed {summary['seed']}: " if summary.get("group") else ""
    if fe:
        print(
            f"{who}done: {summary['steps']} updates; success {fe['success']:.3f} "
            f"(95% CI {fe['success_ci_low']:.3f}-{fe['success_ci_high']:.3f}, {fe['episodes']} episodes)"
        )
    else:
        print(f"{who}done: {summary['steps']} updates (no evaluation)")


# ----------------------------------------------------------------------------- eval


@dataclasses.dataclass
class EvalArgs:
    run_dir: Annotated[str, __import__("tyro").conf.Positional]
    """A run directory made by 'rql train'."""
    episodes: int = 50
    """Episodes to run."""
    checkpoint: int | None = None
    """Checkpoint step to evaluate (default: the latest)."""
    envs: int = 10
    """Environments stepped side by side, one policy call for all (they share one compiled MuJoCo model:
    a few tens of MB each; the time hardly depends on their number)."""
    env_workers: int | None = None
    """Processes that step some of the --envs environments while this one steps the others (see
    'rql train --help', --eval-workers). Default: one fewer than the cores, at most --envs minus one,
    with 10 episodes or more, else 0."""
    seed: int = 0
    """Seed of the evaluation episodes and policy noise."""
    json: bool = False
    """Print the result as one JSON line."""
    video: int = 0
    """Also render N episodes to RUN_DIR/videos/eval_step_<S>.mp4, side by side, each marked success or fail."""
    video_size: int = 200
    """Side of each episode's square in the video, in pixels."""
    workers: int = 1
    """Processes sharing the episodes, each stepping its own environments (MuJoCo runs on one core per
    process); their results are pooled. Episode i is reset with seed 10000 + seed + i and draws its own
    policy noise whatever the split: the episodes are those of one process."""
    first_episode: int = 0
    """Index of the first episode (resets use seeds 10000 + seed + index): one evaluation split across
    processes or machines, each with its own range, pools into the same episodes as one run."""


def cmd_eval(argv: list[str]) -> int:
    args = _tyro_parse(EvalArgs, argv, "rql eval", "Evaluate the EMA policy of a saved run.")
    if args.episodes <= 0:
        raise UsageError("--episodes must be positive")
    if args.video < 0:
        raise UsageError("--video must not be negative")
    if args.workers <= 0 or args.first_episode < 0:
        raise UsageError("--workers must be positive and --first-episode not negative")
    if args.env_workers is not None and args.env_workers < 0:
        raise UsageError("--env-workers must not be negative")
    if args.workers > 1:
        if args.video:
            raise UsageError("--video renders in one process: give it with --workers 1")
        from rql.evaluation import evaluate_in_processes

        res = evaluate_in_processes(args.run_dir, args.episodes, args.workers, seed=args.seed,
                                    checkpoint=args.checkpoint, envs=args.envs, first_episode=args.first_episode)
        _print_eval(res, args.json)
        return 0
    from rql.api import evaluate

    res = evaluate(args.run_dir, args.episodes, args.checkpoint, seed=args.seed, envs=args.envs,
                   env_workers=args.env_workers, first_episode=args.first_episode, progress=not args.json,
                   video=args.video, video_size=args.video_size,
                   log=lambda *a: print(*a, file=sys.stderr))  # e.g. a damaged checkpoint moved aside
    _print_eval(res, args.json)
    return 0


def _print_eval(res: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(res))
        return
    print(
        f"{res['task']} @ step {res['checkpoint']}: success {res['success']:.3f} "
        f"(95% CI {res['success_ci_low']:.3f}-{res['success_ci_high']:.3f}), return {res['return']:.1f}, "
        f"length {res['length']:.1f}, {res['episodes']} episodes"
    )
    if res.get("video"):
        print(f"video: {res['video']}")


# ----------------------------------------------------------------------------- export


@dataclasses.dataclass
class ExportArgs:
    run_dir: Annotated[str, __import__("tyro").conf.Positional]
    """A run directory made by 'rql train'."""
    out: str
    """The file to write (e.g. policy.rqlx): a JSON header (observation and action shapes, chunk length, agent,
    checkpoint step, rql version) and the policy as a serialized jax.export program, for CPU and CUDA."""
    checkpoint: int | None = None
    """Checkpoint step to export (default: the latest readable one)."""


def cmd_export(argv: list[str]) -> int:
    args = _tyro_parse(ExportArgs, argv, "rql export",
                       "Write a run's evaluation policy (the EMA actor's sampler with its flow steps, clipping and "
                       "chunk reshape) as one file that runs with JAX alone, the batch size left open: "
                       "policy = rql.load_exported(FILE); chunks = policy(obs, jax.random.PRNGKey(0)) gives "
                       "(batch, horizon, action_dim) for obs of shape (batch, obs_dim).")
    from rql.exporting import export_policy

    out, header = export_policy(args.run_dir, args.out, args.checkpoint, log=lambda *a, **k: None)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): agent {header['agent']}, checkpoint "
          f"{header['checkpoint']}, observations (batch, {header['observation_shape'][0]}) -> chunks "
          f"(batch, {header['horizon']}, {header['action_dim']}), platforms {', '.join(header['platforms'])}")
    return 0


# ----------------------------------------------------------------------------- bench


@dataclasses.dataclass
class ThroughputArgs:
    agent: str = "rql"
    """Agent to measure."""
    obs_dim: int = 28
    """Observation size of the synthetic data."""
    action_dim: int = 5
    """Action size of the synthetic data."""
    horizon: int = 5
    """Action chunk length h."""
    batch_size: int = 256
    """Windows per update."""
    hidden_dims: str = "512,512,512,512"
    """Hidden sizes of actor and value networks, comma separated."""
    ensemble: int = 10
    """Value ensemble size."""
    flow_steps: int = 10
    """Flow Euler steps F."""
    steps: int = 2000
    """Timed updates (after a warm-up block that compiles)."""
    updates_per_dispatch: int = 500
    """Updates per compiled lax.scan block."""
    dataset_size: int = 100_000
    """Transitions of synthetic data on the device."""
    seed: int = 0
    """Seed (with --seeds N: seeds seed..seed+N-1)."""
    seeds: int = 0
    """Train N seeds at once through the group learner of 'rql train --seeds' (0: one plain state);
    updates_per_second then counts the updates of all seeds."""


def cmd_bench(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rql bench throughput [OPTIONS]\n\n  throughput   compiled updates per second on synthetic data (rql bench throughput --help)")
        return 0
    if argv[0] != "throughput":
        raise UsageError(f"unknown bench '{argv[0]}'; available: throughput")
    args = _tyro_parse(ThroughputArgs, argv[1:], "rql bench throughput",
                       "Run compiled updates on synthetic data and print one JSON line with updates_per_second "
                       "and peak resident memory.")
    from rql.bench import throughput

    try:
        dims = tuple(int(x) for x in args.hidden_dims.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--hidden-dims expects integers separated by commas, got '{args.hidden_dims}'") from None
    print(json.dumps(throughput(args.agent, args.obs_dim, args.action_dim, args.horizon, args.batch_size, dims,
                                args.ensemble, args.flow_steps, args.steps, args.updates_per_dispatch,
                                args.dataset_size, args.seed, args.seeds)))
    return 0


# ----------------------------------------------------------------------------- data


@dataclasses.dataclass
class GenerateArgs:
    name: Annotated[str, __import__("tyro").conf.Positional]
    """OGBench dataset name, e.g. cube-single-play-v0, scene-noisy-v0, pointmaze-medium-navigate-v0."""
    episodes: int | None = None
    """Episodes in the main file (default: the official count); the -val file gets a tenth."""
    max_steps: int | None = None
    """Steps per episode (default: the official length; small values make tiny test data)."""
    seed: int = 0
    """Seed; the same seed writes identical arrays."""
    workers: int = 1
    """Episodes generated in parallel processes."""
    out: str = "~/.ogbench/data"
    """Output folder (default: where OGBench looks for its datasets)."""


@dataclasses.dataclass
class InfoArgs:
    path: Annotated[str, __import__("tyro").conf.Positional]
    """A dataset file (.npz)."""
    task: str | None = None
    """OGBench single-task name: also report single-task reward and success statistics."""
    json: bool = False
    """Print JSON instead of text."""


def cmd_data(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rql data {generate,info} ...\n\n  generate   make an OGBench dataset with the official scripted oracles (offline)\n"
              "  info       describe a dataset file")
        return 0
    sub, rest = argv[0], argv[1:]
    if sub == "generate":
        args = _tyro_parse(GenerateArgs, rest, "rql data generate",
                           "Generate an OGBench dataset offline with the official scripted oracles, following the "
                           "published recipe; writes NAME.npz and NAME-val.npz atomically.")
        from rql.data.generate import generate

        train_path, val_path = generate(args.name, out_dir=args.out, episodes=args.episodes,
                                        max_steps=args.max_steps, seed=args.seed, workers=args.workers)
        print(f"wrote {train_path} and {val_path}")
        return 0
    if sub == "info":
        args = _tyro_parse(InfoArgs, rest, "rql data info", "Describe a dataset file.")
        from rql.data.info import dataset_info, format_info

        info = dataset_info(args.path, task=args.task)
        print(json.dumps(info) if args.json else format_info(info))
        return 0
    raise UsageError(f"unknown data command '{sub}'; use generate or info")


# ----------------------------------------------------------------------------- main

COMMANDS = {"train": cmd_train, "eval": cmd_eval, "export": cmd_export, "bench": cmd_bench, "data": cmd_data}


def _lazy(module: str, func: str):
    """A command whose module is imported only when it runs (keeps 'rql --help' fast)."""

    def run(argv):
        import importlib

        return getattr(importlib.import_module(module), func)(argv, _tyro_parse)

    return run


COMMANDS["demo"] = _lazy("rql.demo", "cmd_demo")
COMMANDS["compare"] = _lazy("rql.compare", "cmd_compare")
COMMANDS["published"] = _lazy("rql.published", "cmd_published")
COMMANDS["sweep"] = _lazy("rql.sweep", "cmd_sweep")
COMMANDS["lab"] = _lazy("rql.lab", "cmd_lab")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        from rql import __version__

        print(f"rql {__version__}")
        return 0
    cmd = COMMANDS.get(argv[0])
    if cmd is None:
        return _fail(f"unknown command '{argv[0]}'; run 'rql --help' for the list")
    _quiet_env()
    from rql.errors import RQLError

    try:
        return cmd(argv[1:]) or 0
    except (UsageError, RQLError) as e:
        _fail(str(e))
        return getattr(e, "exit_code", 2)
    except KeyboardInterrupt:
        return _fail("interrupted")
    except BrokenPipeError:  # output piped into a program that stopped reading, e.g. `rql train --help | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as e:
        return _fail(f"{e}; this command needs a part of rql that is not installed")


if __name__ == "__main__":
    sys.exit(main())
