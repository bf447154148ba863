"""Update throughput and peak memory of every registered agent, at the `small` and the reference size.

    python benchmarks/agents_speed.py [--agents all|A,B] [--sizes small,reference] [--steps-small N]
                                      [--steps-reference N] [--out benchmarks/results/agents_speed.json]

Each (agent, size) runs ``rql bench throughput`` in its own process (so the peak resident memory is
that configuration's own): synthetic data (obs 28, action 5), chunks of 5, batch 256, the compiled
block of ``rql train``. small = 2x256 networks, 2 critics; reference = 4x512, 10 critics (the
comparison protocol). Flow steps stay at each agent's default (10 for every suite method).
Results: JSON into ``--out`` and a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys

SIZES = {
    "small": ["--hidden-dims", "256,256", "--ensemble", "2"],
    "reference": ["--hidden-dims", "512,512,512,512", "--ensemble", "10"],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", default="all", help="'all' (every registered agent) or a comma-separated list")
    ap.add_argument("--sizes", default="small,reference")
    ap.add_argument("--steps-small", type=int, default=200, help="timed updates at the small size")
    ap.add_argument("--steps-reference", type=int, default=20, help="timed updates at the reference size")
    ap.add_argument("--out", default="benchmarks/results/agents_speed.json")
    args = ap.parse_args()
    from rql.agents import REGISTRY

    agents = sorted(REGISTRY) if args.agents == "all" else [a.strip() for a in args.agents.split(",")]
    path = pathlib.Path(args.out)
    results = json.loads(path.read_text()) if path.is_file() else {}
    for size in args.sizes.split(","):
        steps = args.steps_small if size == "small" else args.steps_reference
        for agent in agents:
            cmd = [sys.executable, "-m", "rql.cli", "bench", "throughput", "--agent", agent, "--obs-dim", "28",
                   "--action-dim", "5", "--horizon", "5", "--batch-size", "256", "--steps", str(steps),
                   "--updates-per-dispatch", str(steps), "--flow-steps", "10", *SIZES[size]]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(f"{agent} {size}: failed: {r.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                continue
            results[f"{agent}/{size}"] = json.loads(r.stdout.strip().splitlines()[-1])
            print(f"{agent} {size}: {results[f'{agent}/{size}']['updates_per_second']:.1f} updates/s", file=sys.stderr)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1))
    print("| agent | small updates/s | small peak RSS (MB) | reference updates/s | reference peak RSS (MB) |")
    print("|---|---|---|---|---|")
    for agent in agents:
        cells = []
        for size in ("small", "reference"):
            r = results.get(f"{agent}/{size}")
            cells += [f"{r['updates_per_second']:.1f}", f"{r['peak_rss_mb']:.0f}"] if r else ["-", "-"]
        print(f"| {agent} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
