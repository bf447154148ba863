"""Our evaluation against the reference implementation's own, in alternating pairs (issue 15), not a test.

Wall times on a shared machine drift by a quarter within minutes, so one run of each says little: this
alternates ``eval_reference.py`` (the reference's ``evaluate``, in a Python with its dependencies) and
``eval_memory.py speed`` (ours, N seeds over one pool, --workers worker processes), K pairs, and reports
each pair's speed-up: the reference's time for the same episodes (its seeds run one after the other,
so N times its time per episode, times the episodes) over ours. Compile and environment making are
excluded on both sides.

    .venv/bin/python benchmarks/eval_speed_pairs.py --ref /path/to/rql-reference --ref-python REF_VENV/bin/python \\
        --task cube-single-play-singletask-task2-v0 --preset small --seeds 1 --episodes 10 --pairs 5 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(cmd: list[str], out: pathlib.Path) -> dict:
    p = subprocess.run(cmd + ["--out", str(out)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {p.stderr.strip()[-1500:]}")
    return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True)
    ap.add_argument("--ref-python", required=True)
    ap.add_argument("--task", default="cube-single-play-singletask-task2-v0")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=10, help="per seed, ours; the reference runs this many once")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--envs", type=int, default=4)
    ap.add_argument("--no-lean", action="store_true", help="ours steps with OGBench's own hooks")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp())
    pairs = []
    for k in range(args.pairs):
        ref = _run([args.ref_python, str(ROOT / "benchmarks" / "eval_reference.py"), "--ref", args.ref, "--task",
                    args.task, "--episodes", str(args.episodes), "--preset", args.preset], tmp / f"ref{k}.json")
        ours = _run([sys.executable, str(ROOT / "benchmarks" / "eval_memory.py"), "speed", "--task", args.task,
                     "--seeds", str(args.seeds), "--episodes", str(args.episodes), "--envs", str(args.envs),
                     "--ref-episodes", "0", "--workers", str(args.workers), "--preset", args.preset,
                     *(["--no-lean"] if args.no_lean else [])],
                    tmp / f"ours{k}.json")
        o = ours["ours"]
        ref_time = ref["wall_s"] * args.seeds  # the same episodes for each seed, one seed after the other
        pair = {"reference_wall_s": ref["wall_s"], "reference_ms_per_step": ref["wall_ms_per_step"],
                "reference_env_step_ms": ref["env_step_ms_per_step"], "ours_wall_s": o["wall_s"],
                "ours_ms_per_step": o["wall_ms_per_step"], "ours_split_s": o["split_s"],
                "speedup": ref_time / o["wall_s"],
                "speedup_per_step": ref["wall_ms_per_step"] / o["wall_ms_per_step"]}
        print(json.dumps(pair), flush=True)
        pairs.append(pair)
    sp = [p["speedup"] for p in pairs]
    res = {"task": args.task, "preset": args.preset, "seeds": args.seeds, "episodes_per_seed": args.episodes,
           "workers": args.workers, "pool": args.envs, "lean": not args.no_lean, "pairs": pairs, "speedup_median": statistics.median(sp),
           "speedup_min": min(sp), "speedup_max": max(sp),
           "speedup_per_step_median": statistics.median(p["speedup_per_step"] for p in pairs),
           "load_average": os.getloadavg()}
    out = pathlib.Path(args.out or ROOT / "benchmarks" / "results" /
                       f"eval_pairs_{args.task.split('-')[0]}_{args.seeds}seeds_{args.workers}workers_{args.preset}.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "pairs"}, indent=1))


if __name__ == "__main__":
    main()
