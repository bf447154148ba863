"""The runner: the host loop around the compiled learner (:mod:`rql.learner`).

It only schedules compiled blocks of updates for every seed of a group at once, and logs,
evaluates and checkpoints around them. A single-seed run is a group of one. Each seed of a group
writes its own ordinary run directory, so ``rql eval``, ``rql compare`` and resume treat the seeds
as separate runs.

A run directory holds ``config.json`` (everything needed to rebuild the run), ``metrics.csv``
(one row per logged step, evaluation columns filled at evaluation steps), ``tb/`` (TensorBoard
events), ``checkpoints/<step>/`` and, when the run finishes, ``summary.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import math
import os
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp

from rql import __version__
from rql.agents import build_config, get_spec, make_agent
from rql.checkpoint import Checkpoints
from rql.data.dataset import Dataset
from rql.data.device import to_device
from rql.errors import RQLError
from rql.evaluation import evaluate_group, make_group_policy
from rql.faults import RunLock, StopSignals, Stopped, check_writable, is_no_space
from rql.learner import (  # noqa: F401  (make_block/init_train_state are part of this module's API)
    init_group_state, init_train_state, make_block, make_group_block, member_state, stack_states,
)

EVAL_KEYS = ("success", "success_ci_low", "success_ci_high", "return", "length")


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
    eval_envs: int = 10
    """Environments stepped side by side during evaluation (one batched policy call for all)."""
    video_episodes: int = 0
    """Also render N episodes at every evaluation to <run_dir>/videos/step_<S>.mp4 and TensorBoard (slow on a
    CPU: about 1-2 minutes per 4 cube episodes)."""
    save_every: int | None = None
    """Checkpoint every N updates (default: eval_every; always at the end)."""
    keep_checkpoints: int = 3
    """Checkpoints kept on disk (oldest removed first)."""
    log_every: int = 1000
    """Write training metrics every N updates."""
    updates_per_dispatch: int = 1000
    """Updates compiled into one lax.scan block (a divisor of the log/eval/save intervals is used)."""
    shard_every: int = 1000
    """With a folder of .npz shards as --dataset-path: updates on one shard before moving to the next."""
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


def _block_size(run: RunConfig, sharded: bool = False) -> int:
    g = 0
    for n in (run.steps, run.log_every, run.eval_every, run.save_every or 0, run.shard_every if sharded else 0):
        if n:
            g = math.gcd(g, int(n))
    cap = max(1, run.updates_per_dispatch)
    return max(d for d in range(1, min(g, cap) + 1) if g % d == 0)


class MetricsCSV:
    """metrics.csv with a fixed header; on resume rows after the checkpoint are dropped."""

    def __init__(self, path: pathlib.Path, columns: list[str], resume_step: int | None):
        self.path, self.columns = path, columns
        kept = []
        if resume_step is not None and path.exists():
            with path.open(newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(float(r["step"])) <= resume_step]
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        os.replace(tmp, path)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.columns, extrasaction="ignore").writerow(
                {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            )


def _default_run_dir(run: RunConfig, agent_name: str) -> pathlib.Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    task = run.task or pathlib.Path(run.dataset_path or "data").stem
    return pathlib.Path("runs") / task / f"{agent_name}-s{run.seed}-{stamp}"


def save_config(run_dir: pathlib.Path, run: RunConfig, agent_name: str, agent_cfg, extra: dict) -> None:
    doc = {
        "rql_version": __version__,
        "agent": agent_name,
        "agent_config": dataclasses.asdict(agent_cfg),
        "run": dataclasses.asdict(run),
        **extra,
    }
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, run_dir / "config.json")


def load_run_config(run_dir: str | pathlib.Path) -> tuple[RunConfig, str, Any, dict]:
    path = pathlib.Path(run_dir) / "config.json"
    if not path.exists():
        raise RQLError(f"{run_dir}: no config.json; is this a run directory made by 'rql train'?")
    try:
        doc = json.loads(path.read_text())
        run = RunConfig(**doc["run"])
        agent_name = doc["agent"]
        cfg_cls = get_spec(agent_name).config_cls
        fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in doc["agent_config"].items() if k in fields}
        agent_cfg = cfg_cls(**values)
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RQLError(f"{path}: unreadable run configuration ({e})") from None
    return run, agent_name, agent_cfg, doc


def write_json_atomic(path: pathlib.Path, doc: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def make_eval_envs(task: str, n: int) -> list:
    from rql.data.loading import make_env

    return [make_env(task) for _ in range(n)]




# ----------------------------------------------------------------------------- host side


def _validate(run: RunConfig) -> RunConfig:
    if run.steps <= 0:
        raise RQLError("--steps must be positive")
    if run.online_steps < 0 or run.utd < 1 or run.online_episode_steps < 0:
        raise RQLError("--online-steps and --online-episode-steps must not be negative, --utd at least 1")
    if run.online_steps > 0 and not run.task:
        raise RQLError("--online-steps needs --task (the environment to act in)")
    if run.final_eval_episodes is not None and run.final_eval_episodes < 1:
        raise RQLError("--final-eval-episodes must be positive (leave it out to use --eval-episodes)")
    for name in ("eval_every", "log_every", "eval_episodes", "eval_envs", "updates_per_dispatch"):
        if getattr(run, name) < 0:
            raise RQLError(f"--{name.replace('_', '-')} must not be negative")
    if run.save_every is None:
        run = dataclasses.replace(run, save_every=run.eval_every or run.steps)
    if run.save_every <= 0:
        raise RQLError("--save-every must be positive")
    return run


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


def group_run_dirs(run: RunConfig, agent_name: str, seeds: list[int]) -> tuple[pathlib.Path | None, list[pathlib.Path]]:
    """``(group folder or None, one run directory per seed)`` for a new run or group."""
    if len(seeds) == 1 and run.run_dir:
        return None, [pathlib.Path(run.run_dir)]
    if len(seeds) == 1:
        return None, [_default_run_dir(dataclasses.replace(run, seed=seeds[0]), agent_name)]
    if run.run_dir:
        base = pathlib.Path(run.run_dir)
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        task = run.task or pathlib.Path(run.dataset_path or "data").stem
        base = pathlib.Path("runs") / task / f"{agent_name}-seeds{'-'.join(map(str, seeds))}-{stamp}"
    return base, [base / f"s{s}" for s in seeds]


def load_group(path: str | pathlib.Path) -> tuple[list[int], list[pathlib.Path]] | None:
    """The seeds and member run directories of a group folder written by ``rql train --seeds``."""
    doc_path = pathlib.Path(path) / "group.json"
    if not doc_path.exists():
        return None
    try:
        doc = json.loads(doc_path.read_text())
        return [int(s) for s in doc["seeds"]], [pathlib.Path(path) / d for d in doc["runs"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise RQLError(f"{doc_path}: unreadable group file ({e})") from None


def _load_data(run: RunConfig, agent_cfg, task_env, dataset: Dataset | None):
    """``(dataset, sharded or None)``: the first shard of a folder of shards, else the whole dataset."""
    from rql.data.loading import load_dataset, make_env

    sharded = None
    if dataset is None and run.dataset_path and pathlib.Path(run.dataset_path).expanduser().is_dir():
        if run.shard_every <= 0:
            raise RQLError("--shard-every must be positive")
        from rql.data.shards import ShardedData

        loader_env = make_env(run.task) if run.task else None  # the prefetch thread's own

        def load_shard(path):
            return load_dataset(run.task, str(path), horizon=agent_cfg.horizon, sparse=agent_cfg.sparse,
                                download=False, env=loader_env)

        shard_seed = run.seed if run.shard_seed is None else run.shard_seed
        sharded = ShardedData(run.dataset_path, load_shard, shard_seed, run.shard_every)
        dataset = sharded.first()
    if dataset is None:
        dataset = load_dataset(run.task, run.dataset_path, run.dataset_dir, horizon=agent_cfg.horizon,
                               sparse=agent_cfg.sparse, download=run.download, env=task_env)
    if task_env is not None:
        env_obs, env_act = task_env.observation_space.shape[0], task_env.action_space.shape[0]
        if (env_obs, env_act) != (dataset.obs_dim, dataset.action_dim):
            raise RQLError(
                f"{dataset.source}: observations/actions are {dataset.obs_dim}/{dataset.action_dim}-dimensional "
                f"but task '{run.task}' has {env_obs}/{env_act}; is it the dataset of this task?"
            )
    return dataset, sharded


class Member:
    """One seed of a group and everything it writes: its run directory, lock, checkpoints,
    metrics.csv, TensorBoard and W&B logs, and its evaluation history."""

    def __init__(self, seed: int, run_dir: pathlib.Path, run: RunConfig, keep: int):
        self.seed, self.dir, self.run = seed, run_dir, run
        check_writable(run_dir)
        self.lock = RunLock(run_dir)
        self.ckpts = Checkpoints(run_dir / "checkpoints", keep=keep)
        self.ckpts.remove_temporaries()  # an earlier save cut short (kill -9, full disk)
        self.csv: MetricsCSV | None = None
        self.tb = self.wb = None
        self.evals: list[dict] = []
        self.last_saved: int | None = None
        self.row: dict[str, Any] = {}

    def open_logs(self, columns: list[str], resume_step: int | None, start: int, agent_name: str) -> None:
        self.csv = MetricsCSV(self.dir / "metrics.csv", columns, resume_step)
        if resume_step is not None:
            with (self.dir / "metrics.csv").open(newline="") as f:
                for r in csv.DictReader(f):
                    if r.get("eval/success"):
                        self.evals.append({"step": int(float(r["step"])),
                                           **{k: float(r[f"eval/{k}"]) for k in EVAL_KEYS}})
        if self.run.tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=start if resume_step is not None else None)
        if self.run.wandb:
            try:
                import wandb
            except ImportError:
                raise RQLError("--wandb needs the wandb package: pip install 'reversal-ql[wandb]'") from None
            self.wb = wandb.init(project="rql", dir=str(self.dir), reinit=True, name=self.dir.name,
                                 config={"agent": agent_name, **dataclasses.asdict(self.run)})

    def write_row(self, row: dict, step: int) -> None:
        self.row = row
        self.csv.write(row)
        for k, v in row.items():
            if k != "step" and isinstance(v, float) and self.tb is not None:
                self.tb.add_scalar(k if "/" in k else f"time/{k}", v, step)
        if self.wb is not None:
            self.wb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        try:
            self.ckpts.close()
        except Exception:
            pass
        self.lock.release()


def _restore_group(members: list[Member], template, log):
    """``(step, stacked state)`` restored at the newest step that reads in every member (newer
    checkpoints of some members are dropped); ``(None, None)`` when some member has none."""
    target = None
    while True:
        got = [m.ckpts.restore_newest(template, at_most=target, log=log) for m in members]
        steps = {s for s, _ in got}
        if len(steps) == 1:
            step = steps.pop()
            break
        if None in steps:
            step = None
            break
        target = min(steps)
    if step is None:
        return None, None
    for m in members:
        m.ckpts.delete_after(step)
    return step, stack_states([st for _, st in got])


def train_group(run: RunConfig, agent_name: str, agent_cfg, seeds, run_dirs=None, resume: bool = False,
                log=print, dataset: Dataset | None = None, group_dir=None) -> list[dict]:
    """Train several seeds of one configuration as one compiled function over a leading seed axis;
    seed ``seeds[i]`` is written to ``run_dirs[i]`` (an ordinary run directory). With ``resume`` the
    runs continue from the newest checkpoint every one of them can read. Returns one summary per seed.
    """
    run = _validate(run)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise RQLError("no seeds to train")
    if run_dirs is None:
        group_dir, run_dirs = group_run_dirs(run, agent_name, seeds)
    run_dirs = [pathlib.Path(d) for d in run_dirs]
    if len(run_dirs) != len(seeds):
        raise RQLError("one run directory per seed is needed")
    if len(seeds) > 1 and run.shard_seed is None:
        run = dataclasses.replace(run, shard_seed=seeds[0])
    for d in run_dirs:
        if not resume and (d / "config.json").exists():
            raise RQLError(f"{d} already holds a run; continue it with 'rql train --resume {group_dir or d}' "
                           "or choose another --run-dir")
        if resume and not (d / "config.json").exists():
            raise RQLError(f"{d}: no config.json; is this a run directory made by 'rql train'?")
    resume_cmd = f"rql train --resume {group_dir or run_dirs[0]}"

    members: list[Member] = []
    eval_envs: list[list] = []
    sharded = None
    bar = None
    online = None
    signals = StopSignals()
    try:
        for s, d in zip(seeds, run_dirs):
            members.append(Member(s, d, dataclasses.replace(run, seed=s, run_dir=str(d)), run.keep_checkpoints))
        if group_dir is not None:
            write_json_atomic(pathlib.Path(group_dir) / "group.json", {
                "seeds": seeds, "runs": [os.path.relpath(d, group_dir) for d in run_dirs], "agent": agent_name})

        task_env = None
        if run.video_episodes > 0:
            if not run.task:
                raise RQLError("--video-episodes needs --task (an environment to render)")
            from rql.video import select_gl_backend

            select_gl_backend()  # before MuJoCo is first used: EGL, else OSMesa
        if run.task:  # an unknown task fails here, before any data is read
            n_envs = max(1, min(run.eval_envs, max(run.eval_episodes, run.final_eval_episodes or 0)))
            from rql.data.loading import make_env

            for _ in members:
                eval_envs.append([make_env(run.task) for _ in range(n_envs)])
            task_env = eval_envs[0][0]
            if run.eval_episodes <= 0:
                eval_envs = []
        dataset, sharded = _load_data(run, agent_cfg, task_env, dataset)
        online_cap = _online_capacity(run, dataset, sharded)  # --- online fine-tuning (rql.online)
        agent = make_agent(agent_name, agent_cfg, dataset.obs_dim, dataset.action_dim)
        block = _block_size(run, sharded is not None)
        run_block = make_group_block(agent, agent_cfg.horizon, agent_cfg.batch_size, block)
        data = sharded.data(0) if sharded else to_device(dataset)

        ts = init_group_state(agent, seeds)
        resume_step = None
        if resume:
            template = init_train_state(agent, seeds[0])
            if online_cap:  # checkpoints after the offline steps also hold the online buffer
                _check_online_resume(run, members[0].dir)
                from rql.online import online_template

                offline_template, on_template = template, online_template(agent, seeds[0], online_cap)
                template = lambda s: on_template if s > run.steps else offline_template  # noqa: E731
            resume_step, restored = _restore_group(members, template, log)
            if resume_step is not None:
                ts = restored
                log(f"resuming {group_dir or run_dirs[0]} from step {resume_step}")
            else:
                log(f"{group_dir or run_dirs[0]}: no checkpoint yet; starting from step 0")
                resume_step = 0
        else:
            extra = {"dataset": {"source": dataset.source, "size": dataset.size, "episodes": dataset.num_episodes,
                                 "shards": len(sharded.files) if sharded else None},
                     "obs_dim": dataset.obs_dim, "action_dim": dataset.action_dim}
            if len(seeds) > 1:
                extra["group"] = {"seeds": seeds, "dir": str(group_dir) if group_dir else None}
            if online_cap:
                extra["online"] = {"capacity": online_cap, "offline_size": dataset.size}
            for m in members:
                save_config(m.dir, m.run, agent_name, agent_cfg, extra)
        online_state = None
        if isinstance(ts, dict) and "online" in ts:  # resumed in the online phase
            online_state, ts = ts, {k: v for k, v in ts.items() if k != "online"}
        start = int(ts["step"][0]) if online_state is None else resume_step

        metric_keys = sorted(jax.eval_shape(run_block, ts, data)[1].keys())
        columns = ["step", "time_s", "updates_per_s", *metric_keys, *[f"eval/{k}" for k in EVAL_KEYS]]
        if online_cap:
            from rql.online import ONLINE_COLUMNS

            columns += list(ONLINE_COLUMNS)
        for m in members:
            m.last_saved = resume_step
            m.open_logs(columns, resume_step, start, agent_name)

        policy = make_group_policy(agent) if eval_envs else None

        def do_eval(step: int, agent_states=None) -> list[dict]:
            states = ts["agent"] if agent_states is None else agent_states
            keys = [jax.random.fold_in(jax.random.PRNGKey(m.seed + 1), step) for m in members]
            last = step >= run.steps + run.online_steps
            episodes = run.final_eval_episodes if last and run.final_eval_episodes else run.eval_episodes
            res = evaluate_group(policy, states, eval_envs, episodes, keys, [m.seed * 100_003 for m in members])
            for i, (m, r) in enumerate(zip(members, res)):
                m.evals.append({"step": step, **r})
                if run.video_episodes > 0:
                    from rql.video import record_eval_video

                    record_eval_video(m.dir, step, agent, member_state(states, i), run.task,
                                      run.video_episodes, m.seed * 100_003, tb=m.tb, wb=m.wb)
            return res

        def save(step: int, state=None) -> None:
            for i, m in enumerate(members):
                if m.last_saved != step:
                    m.ckpts.save(step, member_state(ts if state is None else state, i))
                    m.last_saved = step

        if run.progress:
            from tqdm.auto import tqdm

            desc = "train" if len(seeds) == 1 else f"train x{len(seeds)} seeds"
            bar = tqdm(total=run.steps + run.online_steps, initial=start, desc=desc, unit="step",
                       dynamic_ncols=True, smoothing=0.1)
        t0 = time.time()
        t_last, step_last = t0, start
        step = start
        with signals:
            while step < run.steps:
                if sharded is not None:
                    data = sharded.data(step)
                ts, metrics = run_block(ts, data)
                step += block
                rows: list[dict] = [{} for _ in members]
                if step % run.log_every == 0 or step >= run.steps:
                    metrics = {k: [float(x) for x in v] for k, v in metrics.items()}
                    now = time.time()
                    rate = (step - step_last) / max(now - t_last, 1e-9)
                    t_last, step_last = now, step
                    for i, m in enumerate(members):
                        mi = {k: v[i] for k, v in metrics.items()}
                        rows[i].update(step=step, time_s=now - t0, updates_per_s=rate, **mi)
                        bad = [k for k, v in mi.items() if not math.isfinite(v)]
                        if bad:
                            raise RQLError(
                                f"training diverged at step {step} (seed {m.seed}: {', '.join(bad)} not finite); "
                                f"last good checkpoint: {m.last_saved}; lower --agent.lr or check the data")
                    if bar is not None and len(seeds) > 1:
                        bar.set_postfix(total_upd_s=f"{rate * len(seeds):.0f}")
                if eval_envs and signals.requested is None and (
                        (run.eval_every and step % run.eval_every == 0) or step >= run.steps):
                    res = do_eval(step)
                    for i, r in enumerate(res):
                        rows[i].update(step=step, **{f"eval/{k}": r[k] for k in EVAL_KEYS})
                    if bar is not None:
                        bar.set_postfix(success=" ".join(f"{r['success']:.2f}" for r in res))
                    else:
                        for m, r in zip(members, res):
                            log(f"step {step} seed {m.seed}: success {r['success']:.3f} "
                                f"[{r['success_ci_low']:.3f}, {r['success_ci_high']:.3f}]")
                try:
                    for m, row in zip(members, rows):
                        if row:
                            m.write_row(row, step)
                except OSError as e:
                    if is_no_space(e):
                        raise RQLError(f"no space left on device while writing metrics at step {step} in "
                                       f"{members[0].dir}; last complete checkpoint: {members[0].last_saved}") from None
                    raise
                if step % run.save_every == 0 or step >= run.steps or signals.requested is not None:
                    save(step)
                if bar is not None:
                    bar.update(block)
                if eval_envs or step % run.save_every == 0:
                    t_last = time.time()  # the update rate counts updates only, not evaluation or saving
                if signals.requested is not None:
                    import signal as _signal

                    name = _signal.Signals(signals.requested).name
                    raise Stopped(f"stopped by {name} at step {step}; checkpoint {step} saved; "
                                  f"continue with: {resume_cmd}", signals.requested)
            # --- online fine-tuning (rql.online): after the offline updates, in total steps
            if online_cap and step < run.steps + run.online_steps:
                ts, step, online = _online_hook(run, agent, agent_cfg, members, seeds, data, dataset.size,
                                                online_cap, ts, online_state, step, do_eval if eval_envs else None,
                                                save, bar, signals, resume_cmd)
    except KeyboardInterrupt:  # outside the main thread's handler (e.g. before it was installed)
        last = members[0].last_saved if members else None
        raise RQLError(f"interrupted; last checkpoint: step {last}; continue with: {resume_cmd}") from None
    finally:
        if online is not None:
            online.close()
        if bar is not None:
            bar.close()
        if sharded is not None:
            sharded.close()
        for envs in eval_envs:
            for e in envs:
                e.close()
        for m in members:
            m.close()

    summaries = []
    wall = time.time() - t0
    for m in members:
        summary = {
            "agent": agent_name,
            "task": run.task,
            "steps": step,
            "seed": m.seed,
            "wall_time_s": wall,
            "final_eval": m.evals[-1] if m.evals else None,
            "best_eval": max(m.evals, key=lambda e: e["success"]) if m.evals else None,
            "evals": m.evals,
            "final_metrics": {k: v for k, v in m.row.items() if k not in ("step",)} if m.row else {},
        }
        if len(seeds) > 1:
            summary["group"] = {"seeds": seeds}
        write_json_atomic(m.dir / "summary.json", summary)
        if m.wb is not None:
            m.wb.finish()
        summaries.append(summary)
    return summaries


# ----------------------------------------------------------------------------- online fine-tuning hooks


def _online_capacity(run: RunConfig, dataset: Dataset, sharded) -> int:
    """Steps the online part of the replay buffer holds (0: no online phase)."""
    if run.online_steps <= 0:
        return 0
    if sharded is not None:
        raise RQLError("--online-steps with a folder of shards is not supported; give one dataset file")
    size = run.buffer_size if run.buffer_size is not None else dataset.size + run.online_steps
    if size <= dataset.size:
        raise RQLError(f"--buffer-size {size} leaves no room for online steps: the buffer starts as the "
                       f"offline dataset ({dataset.size} steps)")
    return int(size - dataset.size)


def _check_online_resume(run: RunConfig, run_dir: pathlib.Path) -> None:
    saved, _, _, _ = load_run_config(run_dir)
    if saved.steps != run.steps:
        raise RQLError(f"{run_dir}: --steps cannot be changed when resuming a run with --online-steps "
                       f"(checkpoint numbers past {saved.steps} are online steps)")


def _online_hook(run, agent, agent_cfg, members, seeds, data, offline_size, capacity, ts, online_state, step,
                 do_eval, save, bar, signals, resume_cmd):
    """Run the online phase (:mod:`rql.online`) from total step ``step``; returns ``(ts, step, phase)``."""
    from rql.data.loading import make_env
    from rql.online import OnlinePhase, run_online

    phase = OnlinePhase(run, agent, agent_cfg, seeds, data, offline_size, capacity, make_env)
    if online_state is not None:
        ts = phase.restore(online_state)
    if bar is not None:
        bar.set_description("online" if len(seeds) == 1 else f"online x{len(seeds)} seeds")
    t0 = time.time()

    def write_rows(rows, s):
        try:
            for m, row in zip(members, rows):
                if row:
                    m.write_row({**row, "time_s": time.time() - t0} if "updates_per_s" in row else row, s)
        except OSError as e:
            if is_no_space(e):
                raise RQLError(f"no space left on device while writing metrics at step {s} in "
                               f"{members[0].dir}; last complete checkpoint: {members[0].last_saved}") from None
            raise

    def check_finite(s, per_seed):
        for m, mi in zip(members, per_seed):
            bad = [k for k, v in mi.items() if not math.isfinite(v)]
            if bad:
                raise RQLError(f"training diverged at step {s} (seed {m.seed}: {', '.join(bad)} not finite); "
                               f"last good checkpoint: {m.last_saved}; lower --agent.lr or check the data")

    def stopped(s):
        import signal as _signal

        name = _signal.Signals(signals.requested).name
        raise Stopped(f"stopped by {name} at step {s}; checkpoint {s} saved; continue with: {resume_cmd}",
                      signals.requested)

    try:
        ts, step = run_online(phase, ts, step, total=run.steps + run.online_steps, log_every=run.log_every or 1,
                              eval_every=run.eval_every, save_every=run.save_every, do_eval=do_eval, save=save,
                              write_rows=write_rows, signals=signals, bar=bar, check_finite=check_finite,
                              stopped=stopped)
    except BaseException:
        phase.close()
        raise
    return ts, step, phase


def train(
    run: RunConfig,
    agent_name: str,
    agent_cfg,
    dataset: Dataset | None = None,
    resume_dir: str | None = None,
    log=print,
) -> dict:
    """Train (or resume) one run; returns the summary written to ``summary.json``."""
    run = _validate(run)
    run_dir = pathlib.Path(resume_dir or run.run_dir or _default_run_dir(run, agent_name))
    return train_group(run, agent_name, agent_cfg, [run.seed], [run_dir], resume=resume_dir is not None,
                       log=log, dataset=dataset)[0]


def resume_group(path: str | pathlib.Path, steps: int | None = None, log=print) -> list[dict]:
    """Continue a group folder (``group.json``) or a single run directory."""
    group = load_group(path)
    if group is None:
        run, name, cfg, _ = load_run_config(path)
        if steps is not None:
            run = dataclasses.replace(run, steps=steps)
        return [train(run, name, cfg, resume_dir=str(path), log=log)]
    seeds, dirs = group
    run, name, cfg, _ = load_run_config(dirs[0])
    for d in dirs[1:]:
        r2, n2, c2, _ = load_run_config(d)
        if n2 != name or c2 != cfg or dataclasses.replace(r2, seed=run.seed, run_dir=run.run_dir) != run:
            raise RQLError(f"{d}: its configuration differs from {dirs[0]}'s; resume the runs one by one "
                           "with 'rql train --resume RUN_DIR'")
    if steps is not None:
        run = dataclasses.replace(run, steps=steps)
    return train_group(run, name, cfg, seeds, dirs, resume=True, log=log, group_dir=path)


def restore_agent(run_dir: str | pathlib.Path, checkpoint: int | None = None, log=print):
    """The agent and the saved train state of a run (latest readable checkpoint unless ``checkpoint``)."""
    run, agent_name, agent_cfg, doc = load_run_config(run_dir)
    agent = make_agent(agent_name, agent_cfg, doc["obs_dim"], doc["action_dim"])
    ckpts = Checkpoints(pathlib.Path(run_dir) / "checkpoints")
    try:
        template = init_train_state(agent, run.seed)
        if run.online_steps > 0 and doc.get("online"):  # checkpoints of the online phase hold the buffer too
            from rql.online import online_template

            offline_template = template
            on_template = online_template(agent, run.seed, doc["online"]["capacity"])
            template = lambda s: on_template if s > run.steps else offline_template  # noqa: E731
        if checkpoint is not None:
            ts, step = ckpts.restore(checkpoint, template), checkpoint
        else:
            step, ts = ckpts.restore_newest(template, log=log)
            if step is None:
                raise RQLError(f"{run_dir}: no checkpoint saved yet")
    finally:
        ckpts.close()
    if isinstance(ts, dict) and "online" in ts:
        ts = {k: v for k, v in ts.items() if k != "online"}
    return run, agent, ts, step


def build_agent_config(agent: str, task: str | None, preset: str | None, overrides: dict | None = None):
    return build_config(agent, task, preset, overrides)
