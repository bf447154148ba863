"""Time per step of OGBench's own step against the lean evaluation step (``rql.lean_ogbench``), not a test.

Two environments of the task, one with the lean hooks, step the same actions (sticky random actions,
as in tests/test_lean_ogbench.py) in alternating blocks; each block's CPU time per step is recorded
and the median of the per-block ratios reported (the machine's speed drifts, the ratio of neighbouring
blocks much less). One JSON line per task.

    .venv/bin/python benchmarks/lean_step.py --tasks cube-single-play-singletask-task2-v0,scene-play-singletask-task1-v0
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
import warnings

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASKS = ("cube-single-play-singletask-task2-v0,cube-double-play-singletask-task1-v0,"
         "scene-play-singletask-task1-v0,puzzle-3x3-play-singletask-task1-v0")


def actions(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out, a = [], rng.uniform(-1, 1, 5)
    for _ in range(n):
        if rng.uniform() < 0.15:
            a = rng.uniform(-1, 1, 5)
        out.append(a)
    return np.asarray(out, np.float32)


def measure(task: str, blocks: int, steps: int) -> dict:
    from rql import lean_ogbench
    from rql.data.loading import make_env

    plain, lean = make_env(task, disable_env_checker=True), make_env(task, disable_env_checker=True)
    plain.reset(seed=0), lean.reset(seed=0)
    lean_ogbench.install(lean)
    acts = actions(steps)

    def block(env, seed: int) -> float:
        env.reset(seed=seed)
        t = time.process_time()
        for i, a in enumerate(acts):
            r = env.step(a)
            if r[2] or r[3]:
                env.reset(seed=seed + i + 1)
        return (time.process_time() - t) / steps * 1e3

    plain_ms, lean_ms = [], []
    for b in range(blocks):
        plain_ms.append(block(plain, b))
        lean_ms.append(block(lean, b))
    plain.close(), lean.close()
    return {"task": task, "blocks": blocks, "steps_per_block": steps,
            "ogbench_ms_per_step": statistics.median(plain_ms), "lean_ms_per_step": statistics.median(lean_ms),
            "speedup_median": statistics.median(p / q for p, q in zip(plain_ms, lean_ms)),
            "speedup_min": min(p / q for p, q in zip(plain_ms, lean_ms)),
            "speedup_max": max(p / q for p, q in zip(plain_ms, lean_ms))}


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=TASKS)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--steps", type=int, default=400, help="steps per block")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "lean_step" / "per_step.json"))
    args = ap.parse_args()
    res = []
    for task in args.tasks.split(","):
        r = measure(task, args.blocks, args.steps)
        print(json.dumps(r), flush=True)
        res.append(r)
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
