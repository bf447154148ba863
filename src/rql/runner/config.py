"""The options of a training run and the checks made on them before anything is opened."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from rql.errors import RQLError

EVAL_KEYS = ("success", "success_ci_low", "success_ci_high", "return", "length")
"""Results of one evaluation, as written to metrics.csv (``eval/<key>``) and summary.json."""


@dataclasses.dataclass
class RunConfig:
    """Options of a training run (the agent's own fields are separate)."""

    task: str | None = None
    """OGBench single-task name, e.g. cube-single-play-singletask-task2-v0 (picks presets, data, eval env)."""
    dataset_path: str | None = None
    """A dataset: OGBench .npz, plain .npz (observations/actions/rewards/terminals[/masks]), minari:ID, or a
    folder of .npz shards (trained shard by shard, the next one prefetched)."""
    dataset_dir: str | None = None
    """A folder holding the OGBench file <dataset name>.npz (default: OGBench's ~/.ogbench/data)."""
    preset: str | None = None
    """Network-size preset: 'small' (2x256, ensemble 2; for CPUs) or 'reference' (the paper's)."""
    run_dir: str | None = None
    """Where the run is written (default: runs/<task>/<agent>-s<seed>-<time>)."""
    steps: int = 1_000_000
    """Offline gradient updates."""
    online_steps: int = 0
    """Online fine-tuning after the offline updates: environment steps in a training environment of --task
    (one per seed), acting with the current (not EMA) actor, every step appended to a replay buffer on the
    device that starts as the offline dataset, then --utd updates. Step counts (--eval-every, --save-every,
    --log-every, metrics.csv 'step', checkpoint numbers) are totals: offline updates, then one per environment
    step. Resume: the agent, the buffer, the RNG and the counters are restored exactly; the environment
    episode in progress at the checkpoint cannot be (MuJoCo state): its stored steps are kept as a truncated
    episode and a new episode starts, so a resumed online run is not bit-exact with an uninterrupted one."""
    utd: int = 1
    """Online phase: updates per environment step (update-to-data ratio)."""
    buffer_size: int | None = None
    """Online phase: replay-buffer capacity in steps, offline data included (default: offline size +
    --online-steps). When full, new steps are no longer stored (nothing is dropped)."""
    online_episode_steps: int = 0
    """Online phase: time limit of a training episode in steps (0: the task's own limit)."""
    eval_every: int = 100_000
    """Evaluate every N steps (0: only at the end); with --online-steps counted in total steps."""
    eval_episodes: int = 50
    """Episodes per evaluation (0: no evaluation)."""
    final_eval_episodes: int | None = None
    """Episodes of the evaluation at the last step (default: --eval-episodes); more episodes narrow the
    interval of the success that the run ends with."""
    eval_envs: int = 4
    """Evaluation environments of the process, shared by all seeds of --seeds and stepped side by side
    (one batched policy call for all); never more than the episodes need. They share one compiled
    MuJoCo model (about 25 MB each on scene instead of 150); evaluation time hardly depends on their
    number (stepping dominates)."""
    eval_workers: int | None = None
    """Processes that step some of the evaluation environments while this one steps the others
    (stepping is single-threaded: one made evaluation 1.3-1.8x faster on 2 cores; each holds about
    420 MB, 600 MB at its peak, and starts in 3-4 s while the run sets up). Default: one fewer than the
    cores, at most --eval-envs minus one, when an evaluation has at least 10 episodes (all seeds), else 0."""
    video_episodes: int = 0
    """Also render N episodes at every evaluation to <run_dir>/videos/step_<S>.mp4 and TensorBoard (slow on a
    CPU: about 1-2 minutes per 4 cube episodes)."""
    save_every: int | None = None
    """Checkpoint every N updates (default: eval_every; always at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest removed first)."""
    log_every: int = 1000
    """Write training metrics every N updates, each row the mean over the updates since the last (0: only at
    the end of training: offline, the last block's mean; online, the mean of its last 1,000 steps)."""
    updates_per_dispatch: int = 1000
    """Updates compiled into one lax.scan block (a divisor of the log/eval/save intervals is used)."""
    shard_every: int = 1000
    """With a folder of .npz shards as --dataset-path: updates on one shard before moving to the next."""
    frame_stack: int = 1
    """Image observations: frames per observation, stacked along the channels (the FQL codebase's 3 on visual
    tasks); never across an episode start (the first frame repeated), in training, evaluation and online."""
    p_aug: float = 0.0
    """Image observations: probability per batch of random-shift augmentation (pad 3, edge, crop; the FQL
    codebase's 0.5 on visual tasks), on the device, from the run's seed."""
    frame_placement: Literal["auto", "device", "host"] = "auto"
    """Image observations: where the frames live. device: all on the device, uint8. host: they stay in the
    host's memory; each block's windows are gathered there and copied in while the previous block trains
    (sets larger than the device; same results). auto: the device when they fit, else the host."""
    seed: int = 0
    """Seed of initialisation, sampling and evaluation; same seed, same machine -> same run."""
    shard_seed: int | None = None
    """Seed of the order of shards of a sharded dataset (default: --seed; the seeds of one group share
    the first seed's order, since they share the data on the device)."""
    tensorboard: bool = True
    """Write TensorBoard events under <run_dir>/tb."""
    wandb: bool = False
    """Also log to Weights & Biases (needs the wandb package)."""
    progress: bool = True
    """Show a progress bar."""
    download: bool = True
    """Download a missing OGBench dataset (fails cleanly offline)."""


def validate(run: RunConfig) -> RunConfig:
    """``run`` checked, with ``save_every`` filled in (default: ``eval_every``, else ``steps``)."""
    if run.steps <= 0:
        raise RQLError("--steps must be positive")
    if run.online_steps < 0 or run.utd < 1 or run.online_episode_steps < 0:
        raise RQLError("--online-steps and --online-episode-steps must not be negative, --utd at least 1")
    if run.online_steps > 0 and not run.task:
        raise RQLError("--online-steps needs --task (the environment to act in)")
    if run.final_eval_episodes is not None and run.final_eval_episodes < 1:
        raise RQLError("--final-eval-episodes must be positive (leave it out to use --eval-episodes)")
    for name in ("eval_every", "log_every", "eval_episodes", "eval_envs", "updates_per_dispatch", "eval_workers"):
        if (getattr(run, name) or 0) < 0:
            raise RQLError(f"--{name.replace('_', '-')} must not be negative")
    if run.frame_placement not in ("auto", "device", "host"):
        raise RQLError(f"--frame-placement must be auto, device or host, got '{run.frame_placement}'")
    if run.frame_stack < 1 or not 0.0 <= run.p_aug <= 1.0:
        raise RQLError(f"--frame-stack must be at least 1 (got {run.frame_stack}) and --p-aug in [0, 1] (got {run.p_aug})")
    if run.save_every is None:
        run = dataclasses.replace(run, save_every=run.eval_every or run.steps)
    if run.save_every <= 0:
        raise RQLError("--save-every must be positive")
    return run


def block_size(run: RunConfig, sharded: bool = False, cap: int | None = None) -> int:
    """Updates per compiled block: the largest divisor of every interval (and of ``steps``) that is
    at most ``updates_per_dispatch`` (and ``cap``), so that logging, evaluating and saving fall on block ends."""
    g = 0
    for n in (run.steps, run.log_every, run.eval_every, run.save_every or 0, run.shard_every if sharded else 0):
        if n:
            g = math.gcd(g, int(n))
    cap = max(1, min(run.updates_per_dispatch, cap or run.updates_per_dispatch))
    return max(d for d in range(1, min(g, cap) + 1) if g % d == 0)


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; a single number ``"4"`` -> [0, 1, 2, 3]."""
    try:
        parts = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise RQLError(f"--seeds expects a count (4) or seeds separated by commas (0,1,2,3), got '{text}'") from None
    if not parts:
        raise RQLError("--seeds is empty")
    if "," not in str(text):
        if parts[0] <= 0:
            raise RQLError("--seeds N needs N >= 1")
        return list(range(parts[0]))
    if len(set(parts)) != len(parts):
        raise RQLError(f"--seeds lists a seed twice: {text}")
    return parts
