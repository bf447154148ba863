"""Equal-budget learning check: suite methods trained by ``rql train`` on RQL's windows (before) and on the
suite's windows (after), beside the QAM suite's own ``main.py``, on the same generated data and settings.

    rql data generate cube-single-play-v0 --episodes 100 --out DATA
    python benchmarks/qam_fidelity/learning.py --suite PATH --data DATA [--methods fql,rebrac,dsrl]
        [--steps 3000] [--eval-episodes 50] [--seed 0] [--out runs/learning-windows]

Every run: ``--task cube-single-play-singletask-task2-v0``, each method's suite settings under the task
(``--preset small``: 2x256 networks, 2 critics), ``--steps`` updates, one evaluation at the end with
``--eval-episodes`` episodes. The suite gets the same values through its own flags (``--agent.FIELD`` for
every field of its ``get_config()`` that ours has under the same name, ``num_qs`` for ``ensemble``,
``value_layer_norm`` for ``layer_norm``, ``--horizon_length``, ``--agent.action_chunking=True`` as its
``experiments/reproduce.py`` sets it) and reads the same data file (``--ogbench_dataset_dir``, reloaded
never). W&B is stood in inside its process (the package must still import: the suite's dependencies
distrax, ml_collections and wandb installed beside rql). The table gives the final success with its 95% Wilson
interval and the critic's mean Q and the critic loss at the end of training (ours: the mean over the
last logged block; the suite's: its last ``log_interval`` row), which on this small budget say more
than the success rates.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import pathlib
import subprocess
import sys
import time

TASK = "cube-single-play-singletask-task2-v0"
SUITE_FILE = {"fql": "fql", "rebrac": "rebrac", "dsrl": "dsrl", "ifql": "ifql", "fbrac": "fbrac", "fedit": "fedit",
              "fawac": "fawac", "qam": "qam", "bam": "bam"}
RENAME = {"ensemble": "num_qs", "layer_norm": "value_layer_norm"}
SKIP = {"horizon", "sparse", "windows", "settings"}


def wilson(k: float, n: int) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    z, p = 1.959964, k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def ours(method: str, windows: str, args, out: pathlib.Path) -> dict:
    run_dir = out / f"{method}-{windows}"
    if not (run_dir / "summary.json").exists():
        cmd = [sys.executable, "-m", "rql.cli", "train", "--agent", method, "--task", TASK, "--dataset-dir", args.data,
               "--preset", "small", "--steps", str(args.steps), "--eval-every", "0", "--eval-episodes",
               str(args.eval_episodes), "--seed", str(args.seed), "--run-dir", str(run_dir), "--no-progress",
               "--agent.windows", windows, "--log-every", str(args.log_every)]
        t0 = time.time()
        subprocess.run(cmd, check=True)
        (run_dir / "wall_s.txt").write_text(f"{time.time() - t0:.0f}")
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    last = [r for r in rows if r.get("value/q_mean")][-1]
    final = [r for r in rows if r.get("eval/success")][-1]
    return {"success": float(final["eval/success"]), "q_mean": float(last["value/q_mean"]),
            "critic_loss": float(last["loss/critic"]), "wall_s": float((run_dir / "wall_s.txt").read_text())}


def suite_flags(method: str, suite_path: str) -> list[str]:
    """Our resolved config of ``method`` turned into the suite's ``main.py`` flags."""
    import importlib

    from rql.agents import build_config

    cfg = build_config(method, TASK, "small")
    sys.path.insert(0, suite_path)
    theirs = importlib.import_module(f"agents.{SUITE_FILE[method]}").get_config()
    flags = [f"--agent={suite_path}/agents/{SUITE_FILE[method]}.py", f"--horizon_length={cfg.horizon}",
             f"--sparse={cfg.sparse}", "--agent.action_chunking=True"]
    for k, v in vars(cfg).items():
        name = RENAME.get(k, k)
        if k in SKIP or name not in theirs:
            continue
        if v is None:
            continue
        flags.append(f"--agent.{name}={tuple(v) if isinstance(v, (list, tuple)) else v}")
    return flags


# The suite's main.py with W&B replaced by a stand-in (no network; its CSV files are what we read).
SUITE_MAIN = """
import os, runpy, sys, types
os.chdir(sys.argv[1])
sys.path.insert(0, sys.argv[1])
import wandb, log_utils
wandb.run = types.SimpleNamespace(project="qam-reproduce", url="none", id="local", name="local")
wandb.log = wandb.finish = lambda *a, **k: None
log_utils.setup_wandb = lambda *a, **k: wandb.run
sys.argv = ["main.py"] + sys.argv[2:]
runpy.run_path("main.py", run_name="__main__")
"""


def suite(method: str, args, out: pathlib.Path) -> dict:
    save = out / f"{method}-suite-main"
    if not list(save.rglob("eval.csv")) or not list(csv.DictReader(next(save.rglob("eval.csv")).open())):
        flags = suite_flags(method, os.path.abspath(args.suite))
        data = pathlib.Path(args.data).resolve()
        cmd = [sys.executable, "-c", SUITE_MAIN, os.path.abspath(args.suite), f"--env_name={TASK}",
               f"--ogbench_dataset_dir={data}", f"--dataset_replace_interval={10 * args.steps}",
               f"--offline_steps={args.steps}", "--online_steps=0", f"--eval_interval={args.steps}",
               f"--eval_episodes={args.eval_episodes}", f"--log_interval={args.log_every}", f"--seed={args.seed}",
               "--save_interval=0", f"--save_dir={save.resolve()}", *flags]
        print(" ".join(cmd[3:]), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True, env={**os.environ, "WANDB_MODE": "disabled", "MUJOCO_GL": "egl"})
        save.mkdir(parents=True, exist_ok=True)
        (save / "wall_s.txt").write_text(f"{time.time() - t0:.0f}")
    ev = list(csv.DictReader(next(save.rglob("eval.csv")).open()))[-1]
    tr = list(csv.DictReader(next(save.rglob("offline_agent.csv")).open()))[-1]
    return {"success": float(ev["success"]), "q_mean": float(tr["critic/q_mean"]),
            "critic_loss": float(tr["critic/critic_loss"]), "wall_s": float((save / "wall_s.txt").read_text())}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", required=True, help="path of a checkout of the QAM suite")
    p.add_argument("--data", required=True, help="folder holding cube-single-play-v0.npz (rql data generate)")
    p.add_argument("--methods", default="fql,rebrac,dsrl")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--eval-episodes", type=int, default=50)
    p.add_argument("--log-every", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/learning-windows")
    p.add_argument("--only", choices=("ours", "suite", "all"), default="all")
    args = p.parse_args()
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for m in args.methods.split(","):
        results[m] = {}
        if args.only in ("ours", "all"):
            results[m]["rql windows (before)"] = ours(m, "rql", args, out)
            results[m]["suite windows (after)"] = ours(m, "suite", args, out)
        if args.only in ("suite", "all"):
            results[m]["suite's main.py"] = suite(m, args, out)
    (out / "learning.json").write_text(json.dumps(results, indent=2))
    n = args.eval_episodes
    print(f"\n{args.steps} updates, seed {args.seed}, {n} evaluation episodes, {TASK}, small")
    print("| method | run | success % | 95% interval | mean Q (end) | critic loss (end) | wall |")
    print("|---|---|---|---|---|---|---|")
    for m, runs in results.items():
        for name, r in runs.items():
            lo, hi = wilson(round(r["success"] * n), n)
            print(f"| {m} | {name} | {100 * r['success']:.1f} | [{100 * lo:.1f}, {100 * hi:.1f}] | "
                  f"{r['q_mean']:.2f} | {r['critic_loss']:.4f} | {r['wall_s']:.0f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
