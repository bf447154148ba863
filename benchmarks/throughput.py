"""Update throughput of every configuration the project reports, one process each.

    python benchmarks/throughput.py [--steps N] [--out benchmarks/results/throughput.json]

Each configuration runs ``rql bench throughput`` in its own process (so peak memory is its own) and
the results are written as JSON and printed as a markdown table.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

CONFIGS = {
    "reference (4x512, E=10, h=5, B=256)": ["--hidden-dims", "512,512,512,512", "--ensemble", "10"],
    "small (2x256, E=2, h=5, B=256)": ["--hidden-dims", "256,256", "--ensemble", "2"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000, help="timed updates per configuration")
    ap.add_argument("--updates-per-dispatch", type=int, default=250, help="updates per compiled block")
    ap.add_argument("--agent", default="rql")
    ap.add_argument("--out", default="benchmarks/results/throughput.json")
    args = ap.parse_args()
    results = {}
    for name, flags in CONFIGS.items():
        cmd = [sys.executable, "-m", "rql.cli", "bench", "throughput", "--agent", args.agent,
               "--obs-dim", "28", "--action-dim", "5", "--horizon", "5", "--batch-size", "256",
               "--steps", str(args.steps), "--updates-per-dispatch", str(args.updates_per_dispatch), *flags]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[name] = json.loads(out)
        print(f"{name}: {results[name]['updates_per_second']:.1f} updates/s", file=sys.stderr)
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print("| configuration | updates/s | peak RSS (MB) | compile (s) | device |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['updates_per_second']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['warmup_compile_seconds']:.1f} | {r['device']} x{r['cpu_count']} |")


if __name__ == "__main__":
    main()
