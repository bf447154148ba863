"""The run loop: data on the device, ``lax.scan`` blocks of compiled updates, evaluation,
logging, atomic checkpoints and resume.

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
from rql.data.device import DeviceDataset, sample_windows, to_device
from rql.errors import RQLError
from rql.evaluation import evaluate, make_policy

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
    eval_every: int = 100_000
    """Evaluate every N updates (0: only at the end)."""
    eval_episodes: int = 50
    """Episodes per evaluation (0: no evaluation)."""
    eval_envs: int = 10
    """Environments stepped side by side during evaluation (one batched policy call for all)."""
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


def make_block(agent, horizon: int, batch_size: int, block: int):
    """A compiled ``(train_state, data) -> (train_state, mean metrics)`` running ``block`` updates."""

    def run_block(ts, data: DeviceDataset):
        def one(carry, _):
            agent_state, key = carry
            key, k_sample, k_update = jax.random.split(key, 3)
            batch = sample_windows(data, k_sample, batch_size, horizon)
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            return (agent_state, key), metrics

        (agent_state, key), metrics = jax.lax.scan(one, (ts["agent"], ts["key"]), None, length=block)
        out = {"agent": agent_state, "key": key, "step": ts["step"] + block}
        return out, jax.tree_util.tree_map(jnp.mean, metrics)

    return jax.jit(run_block, donate_argnums=(0,))


def init_train_state(agent, seed: int):
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    ts = {"agent": agent.init(k_init), "key": k_train, "step": jnp.asarray(0, jnp.int32)}
    # Every leaf its own buffer (targets start as copies), so the state can be donated.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), ts)


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


def train(
    run: RunConfig,
    agent_name: str,
    agent_cfg,
    dataset: Dataset | None = None,
    resume_dir: str | None = None,
    log=print,
) -> dict:
    """Train (or resume) a run; returns the summary written to ``summary.json``."""
    from rql.data.loading import load_dataset

    if run.steps <= 0:
        raise RQLError("--steps must be positive")
    for name in ("eval_every", "log_every", "eval_episodes", "eval_envs", "updates_per_dispatch"):
        if getattr(run, name) < 0:
            raise RQLError(f"--{name.replace('_', '-')} must not be negative")
    if run.save_every is None:
        run = dataclasses.replace(run, save_every=run.eval_every or run.steps)
    run_dir = pathlib.Path(resume_dir or run.run_dir or _default_run_dir(run, agent_name))
    if resume_dir is None and (run_dir / "config.json").exists():
        raise RQLError(f"{run_dir} already holds a run; continue it with 'rql train --resume {run_dir}' "
                       "or choose another --run-dir")
    run_dir.mkdir(parents=True, exist_ok=True)

    eval_envs, task_env = [], None
    if run.task:  # an unknown task fails here, before any data is read
        n_envs = max(1, min(run.eval_envs, run.eval_episodes)) if run.eval_episodes > 0 else 1
        envs = make_eval_envs(run.task, n_envs)
        task_env = envs[0]
        eval_envs = envs if run.eval_episodes > 0 else []
    sharded = None
    if dataset is None and run.dataset_path and pathlib.Path(run.dataset_path).expanduser().is_dir():
        if run.shard_every <= 0:
            raise RQLError("--shard-every must be positive")
        from rql.data.loading import make_env
        from rql.data.shards import ShardedData

        loader_env = make_env(run.task) if run.task else None  # the prefetch thread's own

        def load_shard(path):
            return load_dataset(run.task, str(path), horizon=agent_cfg.horizon, sparse=agent_cfg.sparse,
                                download=False, env=loader_env)

        sharded = ShardedData(run.dataset_path, load_shard, run.seed, run.shard_every)
        dataset = sharded.first()
    if dataset is None:
        dataset = load_dataset(
            run.task, run.dataset_path, run.dataset_dir, horizon=agent_cfg.horizon,
            sparse=agent_cfg.sparse, download=run.download, env=task_env,
        )
    if task_env is not None:
        env_obs = task_env.observation_space.shape[0]
        env_act = task_env.action_space.shape[0]
        if (env_obs, env_act) != (dataset.obs_dim, dataset.action_dim):
            raise RQLError(
                f"{dataset.source}: observations/actions are {dataset.obs_dim}/{dataset.action_dim}-dimensional "
                f"but task '{run.task}' has {env_obs}/{env_act}; is it the dataset of this task?"
            )
    agent = make_agent(agent_name, agent_cfg, dataset.obs_dim, dataset.action_dim)
    block = _block_size(run, sharded is not None)
    run_block = make_block(agent, agent_cfg.horizon, agent_cfg.batch_size, block)
    data = sharded.data(0) if sharded else to_device(dataset)
    ckpts = Checkpoints(run_dir / "checkpoints", keep=run.keep_checkpoints)

    ts = init_train_state(agent, run.seed)
    resume_step = None
    if resume_dir is not None:
        resume_step = ckpts.latest()
        if resume_step is not None:
            ts = ckpts.restore(resume_step, ts)
            log(f"resuming {run_dir} from step {resume_step}")
        else:
            log(f"{run_dir}: no checkpoint yet; starting from step 0")
    else:
        save_config(run_dir, run, agent_name, agent_cfg, {
            "dataset": {"source": dataset.source, "size": dataset.size, "episodes": dataset.num_episodes,
                        "shards": len(sharded.files) if sharded else None},
            "obs_dim": dataset.obs_dim, "action_dim": dataset.action_dim,
        })
    start = int(ts["step"])

    metric_keys = sorted(jax.eval_shape(run_block, ts, data)[1].keys())
    columns = ["step", "time_s", "updates_per_s", *metric_keys, *[f"eval/{k}" for k in EVAL_KEYS]]
    csv_log = MetricsCSV(run_dir / "metrics.csv", columns, resume_step if resume_dir else None)
    tb = None
    if run.tensorboard:
        from tensorboardX import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tb"), purge_step=start if resume_dir else None)
    wb = None
    if run.wandb:
        try:
            import wandb
        except ImportError:
            raise RQLError("--wandb needs the wandb package: pip install 'reversal-ql[wandb]'") from None
        wb = wandb.init(project="rql", dir=str(run_dir), config={"agent": agent_name, **dataclasses.asdict(run)})

    policy = make_policy(agent, len(eval_envs)) if eval_envs else None
    evals: list[dict] = []
    if resume_dir and (run_dir / "metrics.csv").exists():
        with (run_dir / "metrics.csv").open(newline="") as f:
            for r in csv.DictReader(f):
                if r.get("eval/success"):
                    evals.append({"step": int(float(r["step"])), **{k: float(r[f"eval/{k}"]) for k in EVAL_KEYS}})

    def do_eval(step: int) -> dict:
        key = jax.random.fold_in(jax.random.PRNGKey(run.seed + 1), step)
        res = evaluate(policy, ts["agent"], eval_envs, run.eval_episodes, key, seed=run.seed * 100_003)
        res = {"step": step, **res}
        evals.append(res)
        return res

    bar = None
    if run.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=run.steps, initial=start, desc="train", unit="upd", dynamic_ncols=True, smoothing=0.1)
    t0 = time.time()
    t_last, step_last = t0, start
    last_saved = resume_step
    step = start
    row: dict[str, Any] = {}
    try:
        while step < run.steps:
            if sharded is not None:
                data = sharded.data(step)
            ts, metrics = run_block(ts, data)
            step += block
            row = {}
            if step % run.log_every == 0 or step >= run.steps:
                metrics = {k: float(v) for k, v in metrics.items()}
                now = time.time()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                row.update(step=step, time_s=now - t0, updates_per_s=rate, **metrics)
                if not all(math.isfinite(v) for v in metrics.values()):
                    bad = [k for k, v in metrics.items() if not math.isfinite(v)]
                    raise RQLError(
                        f"training diverged at step {step} ({', '.join(bad)} not finite); "
                        f"last good checkpoint: {last_saved}; lower --agent.lr or check the data"
                    )
            if eval_envs and ((run.eval_every and step % run.eval_every == 0) or step >= run.steps):
                res = do_eval(step)
                row.update(step=step, **{f"eval/{k}": res[k] for k in EVAL_KEYS})
                if bar is not None:
                    bar.set_postfix(success=f"{res['success']:.2f}")
                else:
                    log(f"step {step}: success {res['success']:.3f} [{res['success_ci_low']:.3f}, {res['success_ci_high']:.3f}]")
            if row:
                csv_log.write(row)
                for k, v in row.items():
                    if k != "step" and isinstance(v, float):
                        if tb is not None:
                            tb.add_scalar(k if "/" in k else f"time/{k}", v, step)
                if wb is not None:
                    wb.log({k: v for k, v in row.items() if k != "step"}, step=step)
            if step % run.save_every == 0 or step >= run.steps:
                ckpts.save(step, ts)
                last_saved = step
            if bar is not None:
                bar.update(block)
            if eval_envs or step % run.save_every == 0:
                t_last = time.time()  # the update rate counts updates only, not evaluation or saving
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        try:
            if last_saved != step:
                ckpts.save(step, ts)
                last_saved = step
        except Exception:  # the state may be mid-update; the previous checkpoint stays
            pass
        raise RQLError(
            f"interrupted at step {step}; last checkpoint: step {last_saved}; "
            f"continue with: rql train --resume {run_dir}"
        ) from None
    finally:
        if bar is not None:
            bar.close()
        if tb is not None:
            tb.close()
        ckpts.close()
        if sharded is not None:
            sharded.close()
        for e in eval_envs:
            e.close()

    summary = {
        "agent": agent_name,
        "task": run.task,
        "steps": step,
        "seed": run.seed,
        "wall_time_s": time.time() - t0,
        "final_eval": evals[-1] if evals else None,
        "best_eval": max(evals, key=lambda e: e["success"]) if evals else None,
        "evals": evals,
        "final_metrics": {k: v for k, v in row.items() if k not in ("step",)} if row else {},
    }
    write_json_atomic(run_dir / "summary.json", summary)
    if wb is not None:
        wb.finish()
    return summary


def restore_agent(run_dir: str | pathlib.Path, checkpoint: int | None = None):
    """The agent and the saved train state of a run (latest checkpoint unless ``checkpoint``)."""
    run, agent_name, agent_cfg, doc = load_run_config(run_dir)
    agent = make_agent(agent_name, agent_cfg, doc["obs_dim"], doc["action_dim"])
    ckpts = Checkpoints(pathlib.Path(run_dir) / "checkpoints")
    step = checkpoint if checkpoint is not None else ckpts.latest()
    if step is None:
        raise RQLError(f"{run_dir}: no checkpoint saved yet")
    ts = ckpts.restore(step, init_train_state(agent, run.seed))
    ckpts.close()
    return run, agent, ts, step


def build_agent_config(agent: str, task: str | None, preset: str | None, overrides: dict | None = None):
    return build_config(agent, task, preset, overrides)


def train_group(run: RunConfig, agent_name: str, agent_cfg, seeds, run_dirs=None, resume: bool = False,
                log=print) -> list[dict]:
    """Train several seeds of one configuration; seed ``seeds[i]`` is written to ``run_dirs[i]``.

    With ``resume`` the runs in ``run_dirs`` continue from their checkpoints. Returns one summary per seed.
    """
    seeds = [int(s) for s in seeds]
    if run_dirs is None:
        run_dirs = [None] * len(seeds)
    out = []
    for seed, d in zip(seeds, run_dirs):
        r = dataclasses.replace(run, seed=seed, run_dir=str(d) if d is not None else None)
        out.append(train(r, agent_name, agent_cfg, resume_dir=str(d) if resume else None, log=log))
    return out
