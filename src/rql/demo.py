"""``rql demo``: the whole pipeline on a laptop-sized budget, offline.

1. generate a ``cube-single-play`` dataset with OGBench's scripted oracles (cached);
2. train flow behaviour cloning (``small`` preset) in a background process, evaluated as it goes and
   with many episodes at its last step;
3. meanwhile train RQL of the same size for the same number of updates, evaluated alike;
4. evaluate RQL's last checkpoint with many episodes over both cores, write a learning-curve plot and
   a short report (markdown and JSON) saying whether RQL's 95% interval lies above flow BC's;
5. draw the lab page (``rql lab --run``) of the trained RQL run beside flow BC.

Re-running continues where it stopped: finished runs are reused, interrupted ones resumed.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

from rql.errors import RQLError

# Environments per evaluating process: making one cube environment takes about a second, the batched
# policy call is a small part of an evaluation step, so a few environments per process suffice.
EVAL_ENVS = 5


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


def _finished(run_dir: pathlib.Path, steps: int) -> dict | None:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if summary.get("steps") == steps else None


def _train_or_resume(agent: str, args: DemoArgs, data_path: pathlib.Path, run_dir: pathlib.Path, label: str, log):
    from rql.agents import build_config
    from rql.training import train

    summary = _finished(run_dir, args.steps)
    if summary is not None:
        log(f"{label}: finished earlier, reusing {run_dir}")
        return summary
    if (run_dir / "config.json").exists():
        log(f"{label}: resuming {run_dir}")
        return train(*_resume_args(run_dir, args.steps), resume_dir=str(run_dir), log=log)
    log(f"{label}: training {agent} ({args.steps} updates) into {run_dir}")
    cfg = build_config(agent, args.task, "small")
    return train(_run_config(args, data_path, run_dir), agent, cfg, log=log)


def _run_config(args: DemoArgs, data_path: pathlib.Path, run_dir: pathlib.Path, final_episodes: int | None = None):
    from rql.training import RunConfig

    return RunConfig(task=args.task, dataset_path=str(data_path), preset="small", run_dir=str(run_dir),
                     steps=args.steps, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
                     final_eval_episodes=final_episodes, eval_envs=EVAL_ENVS, log_every=min(1000, args.eval_every),
                     seed=args.seed, eval_workers=0)  # RQL and flow BC already share the cores


def _start_baseline(args: DemoArgs, data_path: pathlib.Path, run_dir: pathlib.Path, log):
    """Flow BC (training, then its final evaluation at the last step) in a background ``rql train``
    process while RQL trains here: RQL's small matrix products keep about 1.5 of 2 cores busy, so
    the baseline costs the demo little extra time. Returns the process, or None if it finished earlier."""
    import os
    import subprocess
    import sys

    if _finished(run_dir, args.steps) is not None:
        log(f"[2/5] flow BC: finished earlier, reusing {run_dir}")
        return None
    if (run_dir / "config.json").exists():
        cmd = ["--resume", str(run_dir), "--steps", str(args.steps)]
        what = "resuming"
    else:
        run = _run_config(args, data_path, run_dir, args.final_episodes)
        cmd = ["--agent", "flow-bc"]
        for f in dataclasses.fields(run):
            value = getattr(run, f.name)
            if value is not None and value != f.default:
                cmd += [f"--{f.name.replace('_', '-')}", str(value)]
        what = f"training flow-bc ({args.steps} updates, then {args.final_episodes} evaluation episodes)"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.parent / "flow-bc.log"
    log(f"[2/5] flow BC: {what} in a background process, beside RQL (log: {log_path})")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # Its own session: a Ctrl-C at the terminal reaches only the demo, which then stops it with one SIGTERM
    # (a second signal would make it exit before saving).
    with open(log_path, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "rql.cli", "train", "--no-progress", *cmd], stdout=f,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _wait_baseline(proc, run_dir: pathlib.Path, log) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        log("[2/5] flow BC: waiting for the background process")
    if proc.wait() != 0:
        lines = (run_dir.parent / "flow-bc.log").read_text(errors="replace").strip().splitlines()
        raise RQLError(f"flow BC training failed ({run_dir.parent / 'flow-bc.log'}): {(lines or ['no output'])[-1]}")


def _resume_args(run_dir: pathlib.Path, steps: int):
    from rql.training import load_run_config

    run, agent, cfg, _ = load_run_config(run_dir)
    return dataclasses.replace(run, steps=steps), agent, cfg


def _final_eval(run_dir: pathlib.Path, episodes: int, seed: int, workers: int, log) -> dict:
    """The last checkpoint's success over ``episodes`` episodes, kept in ``<run>/final_eval.json``:
    the run's own evaluation at its last step when it had that many episodes, else ``rql eval``
    split over ``workers`` processes."""
    from rql.evaluation import evaluate_in_processes

    steps = json.loads((run_dir / "summary.json").read_text()).get("steps")
    path = run_dir / "final_eval.json"
    for source in (path, run_dir / "summary.json"):
        try:
            res = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if source.name == "summary.json":  # the run's own evaluation at its last step, in rql eval's form
            fe = res.get("final_eval") or {}
            res = {"run_dir": str(run_dir), "checkpoint": fe.get("step"), "task": res.get("task"),
                   **{k: v for k, v in fe.items() if k != "step"}}
        if res.get("episodes") == episodes and res.get("checkpoint") == steps:
            break
    else:
        log(f"[4/5] final evaluation of {run_dir.name}: {episodes} episodes in {workers} processes")
        res = evaluate_in_processes(run_dir, episodes, workers, seed=seed, envs=EVAL_ENVS)
    path.write_text(json.dumps(res, indent=2))
    return res


def _train_both(args: DemoArgs, data_path: pathlib.Path, out: pathlib.Path, log) -> None:
    """RQL here and (with ``args.baseline``) flow BC in a background process, side by side; on any
    failure or interruption here the background process is stopped too (it saves, and a re-run
    resumes both)."""
    bc_proc = _start_baseline(args, data_path, out / "flow-bc", log) if args.baseline else None
    try:
        _train_or_resume("rql", args, data_path, out / "rql", "[3/5] RQL", log)
        _wait_baseline(bc_proc, out / "flow-bc", log)
    except BaseException:
        if bc_proc is not None and bc_proc.poll() is None:
            bc_proc.terminate()  # the baseline saves and stops too; a re-run resumes both
            bc_proc.wait()
        raise


def _fmt(e: dict) -> str:
    return f"{e['success']:.3f} (95% CI {e['success_ci_low']:.3f}-{e['success_ci_high']:.3f}, {e['episodes']} episodes)"


def _verdict(rql: dict, bc: dict | None) -> tuple[bool | None, str | None]:
    """Whether RQL's 95% interval lies above flow BC's, and the report's sentence saying how the two
    intervals lie (both None without a baseline)."""
    if bc is None:
        return None, None
    above = rql["success_ci_low"] > bc["success_ci_high"]
    if above:
        return above, "RQL above flow BC: the 95% intervals do not overlap"
    if bc["success_ci_low"] > rql["success_ci_high"]:
        return above, "flow BC above RQL: the 95% intervals do not overlap"
    return above, "the 95% intervals overlap: this budget does not separate the two"


def _report_markdown(args: DemoArgs, out: pathlib.Path, report: dict, plot: pathlib.Path) -> str:
    """``report.md``: what was run, the two final successes, the verdict, the plot and the lab page."""
    rql, bc, verdict, t_data = report["rql"], report["flow_bc"], report["verdict"], report["data_seconds"]
    lines = [
        f"# rql demo: {args.task}",
        "",
        f"- data: {args.episodes} episodes generated with OGBench's scripted oracles (`{report['dataset']}`)",
        f"- training: {args.steps} updates each, `small` network preset, seed {args.seed}",
        f"- RQL final success: {_fmt(rql)}",
    ]
    if bc:
        lines += [f"- flow BC final success: {_fmt(bc)}", f"- {verdict}"]
    lines += ["", f"![learning curves]({plot.name})", ""]
    if report["lab"]:
        lines += [f"The lab page of the RQL run (flow reversal, the value along reversed chains, RQL's samples "
                  f"beside flow BC's): [{report['lab']}]({report['lab']})", ""]
    lines += [f"Runs: `{out / 'rql'}`" + (f", `{out / 'flow-bc'}`" if bc else "") +
              f". Total time {report['total_seconds'] / 60:.1f} min (data {t_data / 60:.1f} min)."]
    return "\n".join(lines) + "\n"


def run_demo(args: DemoArgs, log=print) -> dict:
    if min(args.steps, args.episodes, args.eval_episodes, args.final_episodes) <= 0:
        raise RQLError("--steps, --episodes, --eval-episodes and --final-episodes must be positive")
    t0 = time.time()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data_path = _dataset(args, log)
    t_data = time.time() - t0
    _train_both(args, data_path, out, log)

    from rql.plots import plot_runs

    rql = _final_eval(out / "rql", args.final_episodes, args.seed, 2, log)
    bc = _final_eval(out / "flow-bc", args.final_episodes, args.seed, 2, log) if args.baseline else None
    runs, finals = {"RQL": out / "rql"}, {"RQL": rql}
    if bc is not None:
        runs["flow BC"], finals["flow BC"] = out / "flow-bc", bc
    plot = plot_runs(runs, out / "learning_curves.png", finals=finals,
                     title=f"{args.task} ({args.episodes} generated episodes)")
    above, verdict = _verdict(rql, bc)
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
    log(f"RQL success {_fmt(rql)}" + (f"; flow BC success {_fmt(bc)}; {verdict}" if bc else ""))
    if args.lab:
        from rql.lab.runlab import run_run_lab

        log(f"[5/5] lab page of the RQL run{' beside flow BC' if bc else ''} ...")
        run_run_lab(out / "lab", str(out / "rql"), str(out / "flow-bc") if bc else None, seed=args.seed,
                    log=lambda *a: None)
        report["lab"] = "lab/index.html"
    report["total_seconds"] = time.time() - t0
    (out / "report.md").write_text(_report_markdown(args, out, report, plot))
    (out / "report.json").write_text(json.dumps(report, indent=2))
    log(f"report: {out / 'report.md'}; plot: {plot}" +
        (f"; open the lab page: {(out / 'lab' / 'index.html').absolute()}" if report["lab"] else ""))
    return report


def cmd_demo(argv: list[str], parse) -> int:
    args = parse(DemoArgs, argv, "rql demo",
                 "Generate a cube-single-play dataset offline, train RQL and a flow-BC baseline of the same size, "
                 "evaluate both with many episodes, and write a learning-curve plot, a report saying whether RQL's "
                 "95% interval lies above flow BC's, and the lab page of the RQL run. About 14 minutes on a 2-core "
                 "CPU; re-running resumes.")
    run_demo(args)
    return 0
