"""Several seeds in one process against the same seeds in separate processes, one after the other.

    python benchmarks/seeds_throughput.py [--seeds 1,2,4,8] [--configs small,reference] [--steps-small N]
                                          [--steps-reference N] [--out benchmarks/results/seeds_throughput.json]

For each network size and each N: one ``rql bench throughput --seeds N`` process (the group learner of
``rql train --seeds``), and N ``rql bench throughput --seeds 1`` processes run sequentially. Reported:
total updates/s across seeds (for sequential runs: N x updates / summed time), peak resident memory of the
one process (for sequential runs: the largest single process) and the ratio grouped / sequential.
Every process pays its own compile, which is not counted (warm-up block) in either column.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

CONFIGS = {
    "small": ["--hidden-dims", "256,256", "--ensemble", "2"],
    "reference": ["--hidden-dims", "512,512,512,512", "--ensemble", "10"],
}


def bench(flags: list[str], seeds: int, steps: int, block: int) -> dict:
    cmd = [sys.executable, "-m", "rql.cli", "bench", "throughput", "--obs-dim", "28", "--action-dim", "5",
           "--horizon", "5", "--batch-size", "256", "--steps", str(steps), "--updates-per-dispatch", str(block),
           "--seeds", str(seeds), *flags]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1,2,4,8")
    ap.add_argument("--configs", default="small,reference")
    ap.add_argument("--steps-small", type=int, default=200, help="timed updates per seed, small network")
    ap.add_argument("--steps-reference", type=int, default=20, help="timed updates per seed, reference network")
    ap.add_argument("--out", default="benchmarks/results/seeds_throughput.json")
    args = ap.parse_args()
    rows = []
    for cfg in args.configs.split(","):
        steps = args.steps_small if cfg == "small" else args.steps_reference
        block = min(steps, 50 if cfg == "small" else 10)
        single = None
        for n in [int(x) for x in args.seeds.split(",")]:
            g = bench(CONFIGS[cfg], n, steps, block)
            seq = [bench(CONFIGS[cfg], 1, steps, block) for _ in range(n)]
            seq_total = n * steps / sum(r["seconds"] for r in seq)
            single = single or seq[0]["updates_per_second"]
            row = {"config": cfg, "seeds": n, "grouped_updates_per_s": g["updates_per_second"],
                   "sequential_updates_per_s": seq_total, "ratio": g["updates_per_second"] / seq_total,
                   "grouped_vs_single_run": g["updates_per_second"] / single,
                   "grouped_peak_rss_mb": g["peak_rss_mb"], "sequential_peak_rss_mb": max(r["peak_rss_mb"] for r in seq),
                   "grouped_compile_s": g["warmup_compile_seconds"], "device": g["device"], "cpus": g["cpu_count"]}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2))
    print("| network | seeds | one process (upd/s, all seeds) | sequential processes (upd/s) | ratio | "
          "peak RSS one process (MB) | peak RSS per sequential process (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['seeds']} | {r['grouped_updates_per_s']:.1f} | {r['sequential_updates_per_s']:.1f} | "
              f"{r['ratio']:.2f} | {r['grouped_peak_rss_mb']:.0f} | {r['sequential_peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
