#!/usr/bin/env bash
# Every agent on the same generated cube-single-play data, small preset, same steps and seeds,
# then `rql compare`. Usage: benchmarks/compare_agents.sh [STEPS] [SEEDS] [OUT]
set -euo pipefail
STEPS=${1:-10000}
SEEDS=${2:-"0 1"}
OUT=${3:-runs/compare}
TASK=cube-single-play-singletask-task2-v0
DATA=${DATA:-$HOME/.cache/rql/demo-data/60ep-s0}
[ -f "$DATA/cube-single-play-v0.npz" ] || rql data generate cube-single-play-v0 --episodes 60 --workers 2 --out "$DATA"
for seed in $SEEDS; do
  for agent in rql flow-bc fql ifql rebrac; do
    dir="$OUT/$agent-s$seed"
    if [ -f "$dir/summary.json" ]; then continue; fi
    if [ -f "$dir/config.json" ]; then rql train --resume "$dir"; continue; fi
    rql train --agent "$agent" --task "$TASK" --dataset-dir "$DATA" --preset small --steps "$STEPS" \
      --eval-every $((STEPS / 2)) --eval-episodes 50 --seed "$seed" --run-dir "$dir" --no-progress
  done
done
rql compare "$OUT" --out "$OUT/table"
