"""Setting up a run: its seeds and run directories checked, one member per seed, the evaluation
environments, the data, the agent and the compiled block of updates, gathered in a :class:`Group`
that the phases share and that closes everything it opened."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
from typing import Any

from rql.agents import make_agent
from rql.data.dataset import Dataset
from rql.data.device import to_device
from rql.errors import RQLError
from rql.learner import image_block_cap, make_group_block, windows_of
from rql.pixels import describe_pixels, free_device_bytes, pixels_for, place_frames
from rql.runner.config import RunConfig, block_size, validate
from rql.runner.evaluator import open_eval_envs, prepare_videos
from rql.runner.member import Member
from rql.runner.rundir import group_run_dirs, write_group_file


@dataclasses.dataclass
class Group:
    """The seeds of one run configuration and everything opened for them."""

    run: RunConfig
    agent_name: str
    agent_cfg: Any
    seeds: list[int]
    run_dirs: list[pathlib.Path]
    group_dir: pathlib.Path | None
    members: list[Member] = dataclasses.field(default_factory=list)
    opened_envs: list = dataclasses.field(default_factory=list)
    """Every pool of evaluation environments opened (closed at the end, its worker processes too)."""
    eval_envs: Any = dataclasses.field(default_factory=list)
    """The pool of evaluation environments every seed shares (:class:`rql.evaluation.EnvPool`;
    empty: no evaluation)."""
    dataset: Dataset | None = None
    sharded: Any = None
    """A folder of shards (:class:`rql.data.shards.ShardedData`) or None."""
    online_capacity: int = 0
    """Steps of the online part of each seed's replay buffer (0: no online phase)."""
    agent: Any = None
    block: int = 0
    run_block: Any = None
    """The compiled ``(group state, data) -> (group state, metrics)`` of ``block`` updates."""
    data: Any = None
    """The offline data on the device (the first shard of a folder of shards)."""
    pixels: Any = None
    """Image observations: how windows are stacked and shifted (:class:`rql.pixels.Pixels`); None for states."""
    host_frames: Any = None
    """Image frames kept on the host (:class:`rql.data.host_frames.HostFrames`, also ``run_block``) or None."""

    @property
    def obs_dim(self) -> int:
        """Numbers per observation the agent reads (stacked frames, flat, for images)."""
        return self.pixels.obs_dim if self.pixels is not None else self.dataset.obs_dim

    @property
    def where(self) -> pathlib.Path:
        """The folder a user resumes: the group folder, or the one run directory."""
        return self.group_dir or self.run_dirs[0]

    @property
    def resume_cmd(self) -> str:
        return f"rql train --resume {self.where}"

    def close(self) -> None:
        if self.sharded is not None:
            self.sharded.close()
        if self.host_frames is not None:
            self.host_frames.close()
        for pool in self.opened_envs:
            pool.close()
        for m in self.members:
            m.close()


def check_group(run: RunConfig, agent_name: str, seeds, run_dirs, resume: bool, group_dir) -> Group:
    """The group to train, its arguments checked (nothing opened yet)."""
    run = validate(run)
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
    return Group(run, agent_name, None, seeds, run_dirs, group_dir)


def set_up(g: Group, agent_cfg, dataset: Dataset | None = None, log=print) -> None:
    """Open the members, the evaluation environments, the data, the agent and the compiled block
    (in this order: a locked or unwritable run directory, then an unknown task, fail first)."""
    run = g.run
    g.agent_cfg = agent_cfg
    for s, d in zip(g.seeds, g.run_dirs):
        g.members.append(Member(s, d, dataclasses.replace(run, seed=s, run_dir=str(d)), run.keep_checkpoints))
    if g.group_dir is not None:
        write_group_file(g.group_dir, g.seeds, g.run_dirs, g.agent_name)
    prepare_videos(run)
    g.eval_envs = open_eval_envs(run, len(g.members), g.opened_envs)
    task_env = g.opened_envs[0].first() if g.opened_envs else None
    g.dataset, g.sharded = load_data(run, agent_cfg, task_env, dataset)
    g.online_capacity = online_capacity(run, g.dataset, g.sharded)
    if getattr(agent_cfg, "windows", "rql") == "suite" and g.dataset.end_next_observations is None:
        log(f"{g.dataset.source}: no next observations stored; under the suite's windows a chunk that ends at an "
            "episode's last step bootstraps from that step's own observation")
    g.pixels = pixels_for(g.dataset.image_shape, run.frame_stack, run.p_aug, getattr(agent_cfg, "encoder", "none"))
    if g.pixels is not None:
        g.agent_cfg = agent_cfg = dataclasses.replace(agent_cfg, image_shape=g.pixels.image_shape)
    g.agent = make_agent(g.agent_name, agent_cfg, g.obs_dim, g.dataset.action_dim)
    if g.pixels is not None and g.sharded is None:
        set_up_frames(g, log)
        return
    cap = None
    if g.pixels is not None:  # shards of images: each shard on the device, one update per dispatch on a CPU
        log(describe_pixels(g.pixels, g.dataset, "device", free_device_bytes()))
        cap = image_block_cap()
    g.block = block_size(run, g.sharded is not None, cap=cap)
    g.run_block = make_group_block(g.agent, agent_cfg.horizon, agent_cfg.batch_size, g.block, g.pixels,
                                   unroll=cap is not None)
    g.data = g.sharded.data(0) if g.sharded else to_device(g.dataset)


def set_up_frames(g: Group, log) -> None:
    """The data and the compiled block of a run on image observations: the frames on the device, or kept on
    the host with each block's windows gathered there (:mod:`rql.data.host_frames`), as ``--frame-placement``
    and the free memory say; one line says which."""
    from rql.data.host_frames import HostFrames, block_cap, bytes_per_update, without_frames

    run, cfg, px = g.run, g.agent_cfg, g.pixels
    free = free_device_bytes()
    where = place_frames(g.dataset, run.frame_placement, free)
    cap = image_block_cap()  # one update per dispatch, written out, on a CPU
    if where == "device":
        log(describe_pixels(px, g.dataset, where, free))
        g.block = block_size(run, cap=cap)
        g.run_block = make_group_block(g.agent, cfg.horizon, cfg.batch_size, g.block, px, unroll=cap is not None)
        g.data = to_device(g.dataset)
        return
    if run.online_steps:
        raise RQLError(f"{g.dataset.source}: online fine-tuning needs the frames on the device, but they are kept "
                       "on the host (too large for it, or --frame-placement host); train offline only, or use a "
                       "smaller dataset")
    seeds = len(g.seeds)
    fits = block_cap(g.dataset, cfg.batch_size, cfg.horizon, px.frame_stack, seeds)
    g.block = block_size(run, cap=min(fits, cap or fits))
    compiled = make_group_block(g.agent, cfg.horizon, cfg.batch_size, g.block, px, host=True, unroll=cap is not None)
    g.host_frames = HostFrames(g.dataset, compiled, cfg.batch_size, cfg.horizon, g.block, windows_of(g.agent),
                               px.frame_stack)
    g.run_block = g.host_frames
    g.data = without_frames(g.dataset)
    per = bytes_per_update(g.dataset, cfg.batch_size, cfg.horizon, px.frame_stack, seeds)
    log(describe_pixels(px, g.dataset, where, free, g.block, g.block * per))


def load_data(run: RunConfig, agent_cfg, task_env, dataset: Dataset | None):
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
        frames = getattr(task_env, "frame_shape", None) or task_env.observation_space.shape  # one frame, unstacked
        env_obs, env_act = int(np.prod(frames)), task_env.action_space.shape[0]
        if (env_obs, env_act) != (dataset.obs_dim, dataset.action_dim):
            raise RQLError(
                f"{dataset.source}: observations/actions are {dataset.obs_dim}/{dataset.action_dim}-dimensional "
                f"but task '{run.task}' has {env_obs}/{env_act}; is it the dataset of this task?"
            )
    return dataset, sharded


def online_capacity(run: RunConfig, dataset: Dataset, sharded) -> int:
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
