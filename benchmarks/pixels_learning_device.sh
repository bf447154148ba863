#!/usr/bin/env bash
# Pixels against state, the comparison of benchmarks/pixels_learning.md at a budget where RQL learns: the same
# generated episodes as images and as states, RQL trained on each with the same seeds and updates, success
# over 50 episodes at the middle and at the end. Written to run as one call on the GPU machine (benchmarks/
# README.md, "Pixels"); it runs anywhere, and tiny arguments check it on a CPU in a few minutes:
#
#   EPISODES=2 MAX_STEPS=20 STEPS=4 EVAL_EPISODES=1 SEEDS=2 PRESET=small BATCH=8 ENCODER=impala_debug \
#       bash benchmarks/pixels_learning_device.sh /tmp/plc
#
# Arguments: OUT (folder written: pixels_learning_device.json, the two comparison tables and plots, and
# runs.tar.gz with every run's config, metrics and summary). Settings (environment variables, defaults in
# brackets): EPISODES [100] generated episodes of MAX_STEPS [OGBench's 1001] steps, WORKERS [all cores],
# GEN_BUDGET_S [0: none] seconds for the visual generation (at the deadline it is stopped with SIGTERM, which
# keeps every finished episode; the longest run of finished episodes 0..K-1 becomes the dataset, K is
# written in the JSON and both sets get those K episodes: a call of unknown rendering speed still trains),
# STEPS [20000] updates, SEEDS [2] seeds trained as one group, EVAL_EPISODES [50], EVAL_EVERY [STEPS/2; 0:
# at the end only], EVAL_ENVS [all cores: one evaluation process per core], PRESET [reference] network sizes
# (the paper's; 'small' for a CPU), ENCODER [impala_small], BATCH [256], TASK [task1 of cube-single].
# Where rql is not installed (the GPU machine has JAX, Flax, Optax and orbax, not MuJoCo, OGBench, Gymnasium,
# tyro or tensorboardX), it runs from src/ with the packages that benchmarks/device_site.sh packed in .devsite/,
# and Debian's EGL packages there are unpacked first (the device README's recipe for offscreen rendering):
#   bash benchmarks/device_site.sh    # here, once; then run this command with carry [".devsite"]
set -euo pipefail
OUT=${1:?usage: bash benchmarks/pixels_learning_device.sh OUT}
EPISODES=${EPISODES:-100}
MAX_STEPS=${MAX_STEPS:-}
WORKERS=${WORKERS:-$(nproc)}
GEN_BUDGET_S=${GEN_BUDGET_S:-0}
STEPS=${STEPS:-20000}
SEEDS=${SEEDS:-2}
EVAL_EPISODES=${EVAL_EPISODES:-50}
EVAL_EVERY=${EVAL_EVERY:-$((STEPS / 2))}
EVAL_ENVS=${EVAL_ENVS:-$(nproc)}
PRESET=${PRESET:-reference}
ENCODER=${ENCODER:-impala_small}
BATCH=${BATCH:-256}
TASK=${TASK:-cube-single-play-singletask-task1-v0}
DATA=${DATA:-/tmp/rql-pixels-learning/data}
RUNS=${RUNS:-/tmp/rql-pixels-learning/runs}
PY=${PYTHON:-python3}
export MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1

cd "$(dirname "$0")/.."
mkdir -p "$OUT" "$DATA" "$RUNS"
if ls .devsite/gl/*.deb >/dev/null 2>&1; then for f in .devsite/gl/*.deb; do dpkg -x "$f" /; done; ldconfig; fi
if ! "$PY" -c "import rql" 2>/dev/null; then  # the packages benchmarks/device_site.sh packed, and rql from src/
    if [ -f .devsite/site.tar.gz ]; then mkdir -p /tmp/site && tar -xzf .devsite/site.tar.gz -C /tmp/site; fi
    export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi
RQL=("$PY" -c "import sys; from rql.cli import main; sys.exit(main(sys.argv[1:]))")
rql() { "${RQL[@]}" "$@"; }
"$PY" -c "import jax, mujoco, ogbench; print('jax', jax.__version__, jax.devices(), 'mujoco', mujoco.__version__)"

t0=$(date +%s)
gen=(--workers "$WORKERS" --seed 0 --out "$DATA")
[ -n "$MAX_STEPS" ] && gen+=(--max-steps "$MAX_STEPS")
VISUAL="visual-${TASK%%-singletask*}-v0"
if [ "$GEN_BUDGET_S" -gt 0 ]; then
    # Stopped at the deadline, generation keeps its finished episodes in a parts folder named by the dataset,
    # seed and episode length (not the count); a second call with --episodes K writes the files from the
    # first K of them (making any of 0..K-1 still missing, and the validation episodes).
    if ! timeout -s TERM -k 60 "$GEN_BUDGET_S" "${RQL[@]}" data generate "$VISUAL" --episodes "$EPISODES" "${gen[@]}"; then
        K=0
        parts=$("$PY" -c "import sys; from rql.data.generate import parts_dir_for as p
print(p(sys.argv[1], sys.argv[2], int(sys.argv[3]) if sys.argv[3] else None, 0))" "$DATA" "$VISUAL" "$MAX_STEPS")
        while [ -n "$parts" ] && [ -f "$parts/$(printf 'train-%07d.npz' "$K")" ]; do K=$((K + 1)); done
        [ "$K" -gt 0 ] || { echo "no visual episode finished in GEN_BUDGET_S=$GEN_BUDGET_S s; raise it"; exit 1; }
        echo "visual generation stopped at its budget of $GEN_BUDGET_S s: episodes 0..$((K - 1)) kept of $EPISODES"
        EPISODES=$K
        rql data generate "$VISUAL" --episodes "$EPISODES" "${gen[@]}"
    fi
else
    rql data generate "$VISUAL" --episodes "$EPISODES" "${gen[@]}"
fi
t1=$(date +%s)
rql data generate "${TASK%%-singletask*}-v0" --episodes "$EPISODES" "${gen[@]}"
t2=$(date +%s)

# The same agent fields for both: the visual task takes its state task's settings (docs/pixels.md), and the
# encoder, frame stack and shifts are the FQL codebase's visual settings.
common=(--agent rql --dataset-dir "$DATA" --preset "$PRESET" --agent.batch-size "$BATCH" --steps "$STEPS"
        --eval-every "$EVAL_EVERY" --eval-episodes "$EVAL_EPISODES" --eval-envs "$EVAL_ENVS"
        --log-every $((STEPS / 2 > 0 ? STEPS / 2 : 1))
        --seeds "$SEEDS" --no-progress)
rql train --task "visual-$TASK" "${common[@]}" --agent.encoder "$ENCODER" --frame-stack 3 --p-aug 0.5 \
    --run-dir "$RUNS/visual" | tee "$OUT/visual.log"
t3=$(date +%s)
rql train --task "$TASK" "${common[@]}" --run-dir "$RUNS/state" | tee "$OUT/state.log"
t4=$(date +%s)

rql compare "$RUNS/visual" --out "$OUT/compare_visual" > /dev/null
rql compare "$RUNS/state" --out "$OUT/compare_state" > /dev/null
tar -czf "$OUT/runs.tar.gz" -C "$RUNS" --exclude checkpoints --exclude tb --exclude videos .
"$PY" - "$RUNS" "$OUT/pixels_learning_device.json" <<EOF
import json, pathlib, sys
runs, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
res = {"settings": dict(episodes=$EPISODES, max_steps="${MAX_STEPS:-official}", gen_budget_s=$GEN_BUDGET_S,
                        steps=$STEPS, seeds=$SEEDS, eval_episodes=$EVAL_EPISODES, eval_every=$EVAL_EVERY,
                        eval_envs=$EVAL_ENVS, preset="$PRESET", encoder="$ENCODER", batch=$BATCH, task="$TASK"),
       "wall_s": dict(generate_visual=$((t1 - t0)), generate_state=$((t2 - t1)), train_visual=$((t3 - t2)),
                      train_state=$((t4 - t3)))}
for kind in ("visual", "state"):
    res[kind] = {}
    for s in sorted((runs / kind).glob("**/summary.json")):  # one run directory per seed (s0, s1, ...)
        summary = json.loads(s.read_text())
        res[kind][f"seed {summary['seed']}"] = [{k: e.get(k) for k in ("step", "success", "success_ci_low", "success_ci_high",
                                                          "episodes")} for e in summary.get("evals", [])]
out.write_text(json.dumps(res, indent=1))
for kind in ("visual", "state"):
    for seed, evals in res[kind].items():
        print(kind, seed, ", ".join(f"step {e['step']}: {e['success']:.2f} [{e['success_ci_low']:.2f}, "
                                    f"{e['success_ci_high']:.2f}] of {e['episodes']}" for e in evals))
print("wall (s):", res["wall_s"])
EOF
