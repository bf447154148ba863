"""``rql demo``: the whole pipeline on a laptop-sized budget, offline.

1. generate a small ``cube-single-play`` dataset with OGBench's scripted oracles (cached);
2. train RQL with the ``small`` preset, evaluating as it goes;
3. train flow behaviour cloning of the same size for the same number of updates;
4. write a learning-curve plot and a short report (markdown and JSON) into the output folder.

Re-running continues where it stopped: finished runs are reused, interrupted ones resumed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from rql.errors import RQLError


@dataclasses.dataclass
class DemoArgs:
    out: str = "runs/demo"
    """Folder for the two runs, the plot (learning_curves.png) and the report (report.md, report.json)."""
    task: str = "cube-single-play-singletask-task2-v0"
    """OGBench single-task name (a manipulation task whose data 'rql data generate' can make)."""
    episodes: int = 60
    """Episodes of generated data (1001 steps each; the official dataset has 1000)."""
    max_steps: int | None = None
    """Steps per generated episode (default: the official 1001)."""
    workers: int = 2
    """Processes generating episodes in parallel."""
    data_dir: str = "~/.cache/rql/demo-data"
    """Cache of generated datasets (one sub-folder per episode count and seed)."""
    steps: int = 20_000
    """Updates for each of the two agents."""
    eval_every: int = 5_000
    """Evaluate every N updates."""
    eval_episodes: int = 50
    """Episodes per evaluation."""
    seed: int = 0
    """Seed of data generation, training and evaluation."""
    baseline: bool = True
    """Also train the flow-BC baseline (same network, same updates)."""


def _dataset(args: DemoArgs, log) -> pathlib.Path:
    from rql.data.loading import split_task

    _, dataset_name = split_task(args.task)
    length = f"-{args.max_steps}st" if args.max_steps else ""
    folder = pathlib.Path(args.data_dir).expanduser() / f"{args.episodes}ep{length}-s{args.seed}"
    path = folder / f"{dataset_name}.npz"
    if path.exists():
        log(f"[1/4] dataset: using cached {path}")
        return path
    from rql.data.generate import generate

    log(f"[1/4] dataset: generating {args.episodes} episodes of {dataset_name} into {folder} "
        f"({args.workers} workers; cached for next time)")
    generate(dataset_name, out_dir=folder, episodes=args.episodes, max_steps=args.max_steps, seed=args.seed,
             workers=args.workers)
    return path


def _train_or_resume(agent: str, args: DemoArgs, data_path: pathlib.Path, run_dir: pathlib.Path, label: str, log):
    from rql.agents import build_config
    from rql.train import RunConfig, train

    if (run_dir / "summary.json").exists():
        summary = json.loads((run_dir / "summary.json").read_text())
        if summary.get("steps") == args.steps:
            log(f"{label}: finished earlier, reusing {run_dir}")
            return summary
    if (run_dir / "config.json").exists():
        log(f"{label}: resuming {run_dir}")
        return train(*_resume_args(run_dir, args.steps), resume_dir=str(run_dir), log=log)
    log(f"{label}: training {agent} ({args.steps} updates) into {run_dir}")
    cfg = build_config(agent, args.task, "small")
    run = RunConfig(task=args.task, dataset_path=str(data_path), preset="small", run_dir=str(run_dir),
                    steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                    log_every=min(1000, args.eval_every), seed=args.seed)
    return train(run, agent, cfg, log=log)


def _resume_args(run_dir: pathlib.Path, steps: int):
    from rql.train import load_run_config

    run, agent, cfg, _ = load_run_config(run_dir)
    return dataclasses.replace(run, steps=steps), agent, cfg


def run_demo(args: DemoArgs, log=print) -> dict:
    if args.steps <= 0 or args.episodes <= 0 or args.eval_episodes <= 0:
        raise RQLError("--steps, --episodes and --eval-episodes must be positive")
    t0 = time.time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = _dataset(args, log)
    t_data = time.time() - t0
    rql = _train_or_resume("rql", args, data_path, out / "rql", "[2/4] RQL", log)
    bc = _train_or_resume("flow-bc", args, data_path, out / "flow-bc", "[3/4] flow BC", log) if args.baseline else None

    from rql.plots import plot_runs

    runs = {"RQL": out / "rql"}
    if bc is not None:
        runs["flow BC"] = out / "flow-bc"
    plot = plot_runs(runs, out / "learning_curves.png", title=f"{args.task} ({args.episodes} generated episodes)")

    def fmt(s):
        e = s["final_eval"]
        return f"{e['success']:.3f} (95% CI {e['success_ci_low']:.3f}-{e['success_ci_high']:.3f}, {e['episodes']} episodes)"

    report = {
        "task": args.task,
        "dataset": str(data_path),
        "episodes_generated": args.episodes,
        "steps": args.steps,
        "seed": args.seed,
        "rql": rql["final_eval"],
        "flow_bc": bc["final_eval"] if bc else None,
        "data_seconds": t_data,
        "total_seconds": time.time() - t0,
        "plot": plot.name,
    }
    lines = [
        f"# rql demo: {args.task}",
        "",
        f"- data: {args.episodes} episodes generated with OGBench's scripted oracles (`{data_path}`)",
        f"- training: {args.steps} updates each, `small` network preset, seed {args.seed}",
        f"- RQL final success: {fmt(rql)}",
    ]
    if bc:
        lines.append(f"- flow BC final success: {fmt(bc)}")
    lines += ["", f"![learning curves]({plot.name})", "",
              f"Runs: `{out / 'rql'}`" + (f", `{out / 'flow-bc'}`" if bc else "") +
              f". Total time {report['total_seconds'] / 60:.1f} min (data {t_data / 60:.1f} min)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"[4/4] report: {out / 'report.md'}; plot: {plot}")
    log(f"RQL success {fmt(rql)}" + (f"; flow BC success {fmt(bc)}" if bc else ""))
    return report


def cmd_demo(argv: list[str], parse) -> int:
    args = parse(DemoArgs, argv, "rql demo",
                 "Generate a small cube-single-play dataset offline, train RQL and a flow-BC baseline of the same "
                 "size, and write a learning-curve plot and a report. Runs on a 2-core CPU; re-running resumes.")
    run_demo(args)
    return 0
