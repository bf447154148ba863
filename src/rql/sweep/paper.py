"""The RQL paper's comparison as a sweep file (``rql sweep init --paper ENV``), and the one line
``rql sweep`` prints about datasets that cannot be made here.

The protocol (spec/RQL.md and the QAM suite's reproduce script): OGBench single-task, tasks 1-5 of
each environment, 1M updates, an evaluation every 100,000 updates with 50 episodes, each method
with its reference settings (what ``--task`` gives it), 12 seeds in the published curves.
antmaze and humanoidmaze data come from OGBench's download (their data-collecting experts are not
public); cube-quadruple and puzzle-4x4 are trained on OGBench's 100M-transition sets (folders of
shards); the others can be generated here with ``rql data generate``.
"""

from __future__ import annotations

import json
import pathlib
import re

from rql.errors import RQLError

DOWNLOAD, SHARDS = "download", "shards"
# The paper's environments and where their data comes from (None: rql data generate makes it).
PAPER_ENVS: dict[str, str | None] = {
    "scene-play": None,
    "puzzle-3x3-play": None,
    "puzzle-4x4-play": SHARDS,
    "cube-double-play": None,
    "cube-triple-play": None,
    "cube-quadruple-play": SHARDS,
    "antmaze-large-navigate": DOWNLOAD,
    "antmaze-giant-navigate": DOWNLOAD,
    "humanoidmaze-medium-navigate": DOWNLOAD,
    "humanoidmaze-large-navigate": DOWNLOAD,
}
SHARD_ENVS = tuple(e for e, need in PAPER_ENVS.items() if need == SHARDS)
TASKS = (1, 2, 3, 4, 5)
STEPS, EVAL_EVERY, EVAL_EPISODES = 1_000_000, 100_000, 50


def _usage(msg: str):
    from rql.cli import UsageError

    return UsageError(msg)


def dataset_of(task: str) -> str:
    """``scene-play-singletask-task2-v0`` -> ``scene-play-v0`` (other names as given)."""
    m = re.fullmatch(r"(.+)-singletask(?:-task\d+)?-(v\d+)", task)
    return f"{m.group(1)}-{m.group(2)}" if m else task


def _can_generate(dataset: str) -> bool:
    from rql.data.generate import resolve

    try:
        resolve(dataset)
        return True
    except RQLError:
        return False


def data_note(tasks, dataset_dir: str | None, dataset_path: str | None) -> str | None:
    """One line naming the data a sweep's tasks need that cannot be made here: OGBench downloads not found in
    the dataset folder, and the 100M sets the published results use. None when there is nothing to say."""
    if dataset_path:
        return None
    folder = pathlib.Path(dataset_dir or "~/.ogbench/data").expanduser()
    parts = []
    for dataset in dict.fromkeys(dataset_of(t) for t in tasks if t):
        env = dataset.rsplit("-", 1)[0]
        if env in SHARD_ENVS:
            parts.append(f"{env}: the published results train on OGBench's 100M set {env}-100m-v0 (a folder of "
                         f".npz shards; give it with --dataset-path), else the 1M {dataset} is used")
        elif not (folder / f"{dataset}.npz").is_file() and not _can_generate(dataset):
            parts.append(f"{dataset}.npz (cannot be generated here: OGBench downloads it where the internet is "
                         f"reachable, or put it in --dataset-dir)")
    return ("note: data to provide: " + "; ".join(parts)) if parts else None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v if isinstance(v, str) else str(v))


def _parse_envs(paper: str) -> list[str]:
    envs = [e.strip() for e in paper.split(",") if e.strip()]
    if not envs:
        raise _usage("--paper: give at least one environment, e.g. --paper scene-play")
    for e in envs:
        if e not in PAPER_ENVS:
            raise _usage(f"--paper: unknown environment '{e}'; the paper's are {', '.join(PAPER_ENVS)}")
    if len(set(envs)) != len(envs):
        raise _usage(f"--paper: an environment is repeated in {paper}")
    return envs


def default_methods() -> tuple[list[str], list[str]]:
    """rql and the QAM suite's methods registered here; and the suite's methods not (yet) registered."""
    from rql.agents import REGISTRY
    from rql.agents.suite import SUITE_METHODS

    return ["rql"] + [m for m in SUITE_METHODS if m in REGISTRY], [m for m in SUITE_METHODS if m not in REGISTRY]


def _parse_methods(methods: str | None) -> tuple[list[str], list[str]]:
    from rql.agents import REGISTRY

    if methods is None:
        return default_methods()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise _usage("--methods: give at least one method")
    for m in names:
        if m not in REGISTRY:
            raise _usage(f"--methods: unknown agent '{m}'; choose from {', '.join(sorted(REGISTRY))}")
    if len(set(names)) != len(names):
        raise _usage(f"--methods: a method is repeated in {methods}")
    return names, []


def reference_settings(method: str, task: str) -> dict:
    """The values ``--task`` gives ``method`` on ``task`` (the fields its per-environment preset sets), typed."""
    from rql.agents import build_config, get_spec

    config = build_config(method, task)
    return {f: getattr(config, f) for f in get_spec(method).env_presets(task)}


def _settings_lines(env: str, methods: list[str]) -> list[str]:
    """Comment lines: each method's reference values on ``env``; those every suite method shares, once."""
    from rql.agents.suite import SUITE_METHODS

    per_method = {}
    for m in methods:
        per_task = {k: reference_settings(m, f"{env}-singletask-task{k}-v0") for k in TASKS}
        same = all(v == per_task[1] for v in per_task.values())
        per_method[m] = [("", per_task[1])] if same else [(f" (task{k})", v) for k, v in per_task.items()]
    suite = [per_method[m][0][1] for m in methods if m in SUITE_METHODS and len(per_method[m]) == 1]
    common = {k: v for k, v in suite[0].items() if all(s.get(k) == v for s in suite)} if len(suite) > 1 else {}

    def text(values: dict) -> str:
        return ", ".join(f"{f} = {_toml_value(v)}" for f, v in values.items()) or "its defaults"

    lines = [f"# {env}:"]
    if common:
        lines.append(f"#   every suite method: {text(common)}")
    for m in methods:
        for where, values in per_method[m]:
            own = {k: v for k, v in values.items() if m not in SUITE_METHODS or k not in common}
            lines.append(f"#   {m}{where}: {text(own) if own or not common else 'the common values only'}")
    return lines


def _data_lines(envs: list[str]) -> list[str]:
    lines = ["# Data (one OGBench dataset per environment, found in dataset_dir, default ~/.ogbench/data):"]
    for env in envs:
        need = PAPER_ENVS[env]
        if need is None:
            lines.append(f"#   {env}: {env}-v0 is downloaded by OGBench, or made here: "
                         f"rql data generate {env}-v0 --workers 8 (then dataset_dir = its folder)")
        elif need == DOWNLOAD:
            lines.append(f"#   {env}: PROVIDE {env}-v0.npz: it cannot be generated here (OGBench's data-collecting "
                         "experts are not public); OGBench downloads it where the internet is reachable, else "
                         "copy it into dataset_dir on every worker")
        else:
            lines.append(f"#   {env}: PROVIDE OGBench's 100M set {env}-100m-v0 (a folder of .npz shards), which the "
                         f"published results train on: dataset_path = \"/path/to/{env}-100m-v0\" (one dataset for "
                         f"every cell: sweep {env} in a file of its own); without it the 1M {env}-v0 is used "
                         "(not the published protocol)")
    return lines


def paper_sweep_text(envs: list[str], methods: list[str], seeds: int, missing: list[str]) -> str:
    """The sweep file (TOML) of the paper's protocol on ``envs``."""
    from rql import __version__

    tasks = [f"{env}-singletask-task{k}-v0" for env in envs for k in TASKS]
    out = "sweeps/paper-" + "-".join(envs) if len(envs) <= 2 else "sweeps/paper"
    head = [
        f"# The RQL paper's comparison protocol on {', '.join(envs)}: OGBench single-task, tasks 1-5,",
        f"# {len(methods)} method(s) x {seeds} seed(s), {STEPS:,} updates, an evaluation every {EVAL_EVERY:,} updates "
        f"with {EVAL_EPISODES} episodes.",
        f"# Written by 'rql sweep init' (rql {__version__}). Check the cells: rql sweep --config FILE --dry-run;",
        "# run: rql sweep --config FILE (add address = \"HOST:PORT\", gpus_per_run = 0.25, ... for a cluster);",
        "# then: rql compare OUT --published.",
    ]
    if missing:
        head.append(f"# Methods of the QAM suite not available in this rql yet (left out): {', '.join(missing)}")
    body = [
        f"tasks = {_toml_value(tasks)}",
        f"agents = {_toml_value(methods)}",
        f"seeds = {_toml_value(list(range(seeds)))}",
        f"out = {_toml_value(out)}",
        f"steps = {STEPS}",
        f"eval_every = {EVAL_EVERY}",
        f"eval_episodes = {EVAL_EPISODES}",
    ]
    settings = ["# Reference settings: each method takes them from the task name (as 'rql train --task T --agent A'),",
                "# the values below (those that differ from the method's defaults). To change one for every cell,",
                "# add it to a [set] table, e.g.:  [set]  \"fql.alpha\" = 100.0"]
    for env in envs:
        settings += _settings_lines(env, methods)
    return "\n".join(head + [""] + _data_lines(envs) + [""] + body + [""] + settings) + "\n"


def write_paper_sweep(paper: str, out: str, methods: str | None = None, seeds: int = 12, log=print) -> pathlib.Path:
    """``rql sweep init --paper ENV[,ENV...] --out FILE``: write the sweep file; returns its path."""
    envs = _parse_envs(paper)
    names, missing = _parse_methods(methods)
    if seeds < 1:
        raise _usage("--seeds must be at least 1")
    path = pathlib.Path(out).expanduser()
    if path.suffix.lower() != ".toml":
        raise _usage(f"--out {out}: give a .toml file")
    if path.exists():
        raise _usage(f"--out {out}: the file exists; remove it or choose another name")
    text = paper_sweep_text(envs, names, seeds, missing)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise RQLError(f"{out}: cannot write the sweep file ({e.strerror})") from None
    if missing:
        log(f"note: methods of the QAM suite not available in this rql yet, left out: {', '.join(missing)}")
    return path
