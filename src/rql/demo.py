"""``rql demo``: the whole pipeline on a laptop-sized budget, offline.

1. generate a ``cube-single-play`` dataset with OGBench's scripted oracles (cached);
2. train RQL with the ``small`` preset, evaluating as it goes and with many episodes at the end;
3. train flow behaviour cloning of the same size for the same number of updates, evaluated alike;
4. write a learning-curve plot and a short report (markdown and JSON) into the output folder, saying
   whether RQL's 95% interval lies above flow BC's;
5. draw the lab page (``rql lab --run``) of the trained RQL run beside flow BC.

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
    task: str = "cube-single-play-singletask-task4-v0"
    """OGBench single-task name (a manipulation task whose data 'rql data generate' can make). The default,
    task 4, is one that flow BC on play data almost never solves and RQL learns within the demo's budget."""
    episodes: int = 60
    """Episodes of generated data (1001 steps each; the official dataset has 1000)."""
    max_steps: int | None = None
    """Steps per generated episode (default: the official 1001)."""
    workers: int = 2
    """Processes generating episodes in parallel."""
    data_dir: str = "~/.cache/rql/demo-data"
    """Cache of generated datasets (one sub-folder per episode count and seed)."""
    steps: int = 15_000
    """Updates for each of the two agents."""
    eval_every: int = 5_000
    """Evaluate every N updates."""
    eval_episodes: int = 20
    """Episodes per evaluation during training (the learning curves)."""
    final_episodes: int = 200
    """Episodes of the final evaluation of each agent (its success and 95% interval in the report)."""
    seed: int = 0
    """Seed of data generation, training and evaluation."""
    baseline: bool = True
    """Also train the flow-BC baseline (same network, same updates)."""
    lab: bool = True
    """End with the lab page of the trained RQL run (rql lab --run), beside flow BC: <out>/lab/index.html."""


def _dataset(args: DemoArgs, log) -> pathlib.Path:
    from rql.data.loading import split_task

    _, dataset_name = split_task(args.task)
    length = f"-{args.max_steps}st" if args.max_steps else ""
    folder = pathlib.Path(args.data_dir).expanduser() / f"{args.episodes}ep{length}-s{args.seed}"
    path = folder / f"{dataset_name}.npz"
    if path.exists():
        log(f"[1/5] dataset: using cached {path}")
        return path
    from rql.data.generate import generate

    log(f"[1/5] dataset: generating {args.episodes} episodes of {dataset_name} into {folder} "
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


def _final_evals(runs: dict[str, pathlib.Path], episodes: int, seed: int, log) -> dict[str, dict]:
    """Evaluate every run's last checkpoint with ``episodes`` episodes, all runs at once in separate
    processes (``rql eval --json``): stepping MuJoCo is single-threaded, so two evaluations share a
    2-core CPU in about the time of one. Results are kept in ``<run>/final_eval.json`` for re-runs."""
    import os
    import subprocess
    import sys

    results, procs = {}, {}
    for name, d in runs.items():
        path = d / "final_eval.json"
        if path.exists():
            try:
                res = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                res = {}
            if res.get("episodes") == episodes and res.get("checkpoint") == json.loads(
                    (d / "summary.json").read_text()).get("steps"):
                results[name] = res
                continue
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "rql.cli", "eval", str(d), "--episodes", str(episodes), "--seed", str(seed),
             "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if procs:
        log(f"[4/5] final evaluation: {episodes} episodes each for {', '.join(procs)} (side by side)")
    done = {name: proc.communicate() for name, proc in procs.items()}  # all end before any failure is raised
    for name, (out, err) in done.items():
        if procs[name].returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1]
            raise RQLError(f"final evaluation of {runs[name]} failed: {last}")
        res = json.loads(out.strip().splitlines()[-1])
        (runs[name] / "final_eval.json").write_text(json.dumps(res, indent=2))
        results[name] = res
    return results


def run_demo(args: DemoArgs, log=print) -> dict:
    if min(args.steps, args.episodes, args.eval_episodes, args.final_episodes) <= 0:
        raise RQLError("--steps, --episodes, --eval-episodes and --final-episodes must be positive")
    t0 = time.time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = _dataset(args, log)
    t_data = time.time() - t0
    rql = _train_or_resume("rql", args, data_path, out / "rql", "[2/5] RQL", log)
    bc = _train_or_resume("flow-bc", args, data_path, out / "flow-bc", "[3/5] flow BC", log) if args.baseline else None

    from rql.plots import plot_runs

    runs = {"RQL": out / "rql"}
    if bc is not None:
        runs["flow BC"] = out / "flow-bc"
    plot = plot_runs(runs, out / "learning_curves.png", title=f"{args.task} ({args.episodes} generated episodes)")

    finals = _final_evals({k: out / k for k in (["rql", "flow-bc"] if bc is not None else ["rql"])},
                          args.final_episodes, args.seed, log)
    rql, bc = finals["rql"], finals.get("flow-bc")

    def fmt(e):
        return f"{e['success']:.3f} (95% CI {e['success_ci_low']:.3f}-{e['success_ci_high']:.3f}, {e['episodes']} episodes)"

    above = verdict = None
    if bc is not None:
        above = rql["success_ci_low"] > bc["success_ci_high"]
        if above:
            verdict = "RQL above flow BC: the 95% intervals do not overlap"
        elif bc["success_ci_low"] > rql["success_ci_high"]:
            verdict = "flow BC above RQL: the 95% intervals do not overlap"
        else:
            verdict = "the 95% intervals overlap: this budget does not separate the two"
    report = {
        "task": args.task,
        "dataset": str(data_path),
        "episodes_generated": args.episodes,
        "steps": args.steps,
        "seed": args.seed,
        "rql": rql,
        "flow_bc": bc,
        "rql_above_flow_bc": above,
        "verdict": verdict,
        "data_seconds": t_data,
        "plot": plot.name,
        "lab": None,
    }
    log(f"RQL success {fmt(rql)}" + (f"; flow BC success {fmt(bc)}; {verdict}" if bc else ""))
    if args.lab:
        from rql.lab.runlab import run_run_lab

        log(f"[5/5] lab page of the RQL run{' beside flow BC' if bc else ''} ...")
        run_run_lab(out / "lab", str(out / "rql"), str(out / "flow-bc") if bc else None, seed=args.seed,
                    log=lambda *a: None)
        report["lab"] = "lab/index.html"
    report["total_seconds"] = time.time() - t0
    lines = [
        f"# rql demo: {args.task}",
        "",
        f"- data: {args.episodes} episodes generated with OGBench's scripted oracles (`{data_path}`)",
        f"- training: {args.steps} updates each, `small` network preset, seed {args.seed}",
        f"- RQL final success: {fmt(rql)}",
    ]
    if bc:
        lines += [f"- flow BC final success: {fmt(bc)}", f"- {verdict}"]
    lines += ["", f"![learning curves]({plot.name})", ""]
    if report["lab"]:
        lines += [f"The lab page of the RQL run (flow reversal, the value along reversed chains, RQL's samples "
                  f"beside flow BC's): [{report['lab']}]({report['lab']})", ""]
    lines += [f"Runs: `{out / 'rql'}`" + (f", `{out / 'flow-bc'}`" if bc else "") +
              f". Total time {report['total_seconds'] / 60:.1f} min (data {t_data / 60:.1f} min)."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"report: {out / 'report.md'}; plot: {plot}" +
        (f"; open the lab page: {(out / 'lab' / 'index.html').absolute()}" if report["lab"] else ""))
    return report


def cmd_demo(argv: list[str], parse) -> int:
    args = parse(DemoArgs, argv, "rql demo",
                 "Generate a cube-single-play dataset offline, train RQL and a flow-BC baseline of the same size, "
                 "evaluate both with many episodes, and write a learning-curve plot, a report saying whether RQL's "
                 "95% interval lies above flow BC's, and the lab page of the RQL run. About 18 minutes on a 2-core "
                 "CPU; re-running resumes.")
    run_demo(args)
    return 0
