"""The Python API: what ``rql train``, ``rql eval``, ``rql export`` and ``rql data`` do, as functions.

Import it as ``import rql``; the names below are ``rql.train``, ``rql.load``, ``rql.evaluate``,
``rql.export``, ``rql.load_exported``, ``rql.load_dataset`` and ``rql.generate_dataset``. A user error
raises :class:`rql.RQLError` with the command line's one-line message.

Every ``rql train`` option is a keyword of :func:`train` with the same name (dashes become
underscores: ``eval_episodes``, ``dataset_dir``, ``updates_per_dispatch``, ...); the agent's own fields
go in ``agent_config`` (``{"alpha": 3.0}``, as ``--agent.alpha 3``).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import typing
from typing import Any

from rql.errors import RQLError


def _environment() -> None:
    """What the command line and the API set up before they run: the rendering backend and JAX's compile
    cache (compiled updates are kept on disk and reused by later runs of the same shapes: a CPU compile of
    the reference network takes a minute; RQL_NO_COMPILE_CACHE=1 turns it off)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("MUJOCO_GL", "egl")
    if not os.environ.get("RQL_NO_COMPILE_CACHE"):
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "rql", "xla"))


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`train` returns: each seed's summary (``summary.json``) and run directory."""

    run_dir: pathlib.Path
    """The run directory, or with several seeds the group folder holding one run directory per seed."""
    run_dirs: list[pathlib.Path]
    """One run directory per seed, in the order of the seeds."""
    summaries: list[dict]
    """One summary per seed: ``steps``, ``final_eval`` (``success`` with ``success_ci_low``/``high``), ..."""

    @property
    def summary(self) -> dict:
        """The first (or only) seed's summary."""
        return self.summaries[0]

    @property
    def success(self) -> list[float | None]:
        """Each seed's final success rate (None without an evaluation)."""
        return [(s.get("final_eval") or {}).get("success") for s in self.summaries]


def _run_options(options: dict) -> dict:
    """``options`` checked against the fields of :class:`rql.training.RunConfig` (names and types)."""
    from rql.values import coerce
    from rql.training import RunConfig

    hints = typing.get_type_hints(RunConfig)
    out = {}
    for name, value in options.items():
        if name not in hints:
            known = ", ".join(sorted(hints))
            raise RQLError(f"rql.train: unknown option '{name}'; the options are those of 'rql train --help' "
                           f"with underscores: {known}, and agent, seeds, settings, agent_config, resume, log")
        if value is None and name in ("steps", "eval_every", "eval_episodes"):
            continue  # left to the default
        try:
            out[name] = coerce(value, hints[name])
        except ValueError as e:
            raise RQLError(f"rql.train: {name}={value!r}: expected {e}") from None
    return out


def train(task: str | None = None, agent: str = "rql", *, steps: int | None = None, seeds: int | str | list | None = None,
          run_dir: str | os.PathLike | None = None, dataset_path: str | os.PathLike | None = None,
          dataset_dir: str | os.PathLike | None = None, preset: str | None = None,
          eval_episodes: int | None = None, eval_every: int | None = None, settings: str | None = None,
          agent_config: dict | None = None, resume: str | os.PathLike | None = None, log=print,
          **options: Any) -> TrainResult:
    """Train an agent (``rql train``): ``agent`` is a built-in name, a Python file, a module or an
    installed plugin's agent; ``seeds`` a count (``4`` = 0..3) or a list trains them as one compiled
    function; ``resume`` continues a run directory or group folder (only ``steps`` may be given with it).
    ``log`` receives the progress lines (``lambda *a, **k: None`` silences them; ``progress=False`` hides
    the bar). Returns the runs' summaries and directories."""
    _environment()
    from rql.agents import build_config, resolve_agent, typed_overrides
    from rql.training import RunConfig, parse_seeds, resume_group, train_group, validate
    from rql.runner.rundir import group_run_dirs

    if resume is not None:
        given = {k for k, v in dict(task=task, seeds=seeds, run_dir=run_dir, dataset_path=dataset_path,
                                    dataset_dir=dataset_dir, preset=preset, eval_episodes=eval_episodes,
                                    eval_every=eval_every, settings=settings, agent_config=agent_config,
                                    **options).items() if v is not None}
        if given or agent != "rql":
            raise RQLError(f"rql.train(resume=...) takes only steps besides the run directory; got "
                           f"{', '.join(sorted(given | ({'agent'} if agent != 'rql' else set())))}")
        from rql.runner.rundir import load_group

        summaries = resume_group(resume, steps, log=log)
        group = load_group(resume)
        dirs = group[1] if group else [pathlib.Path(resume)]
        return TrainResult(pathlib.Path(resume), [pathlib.Path(d) for d in dirs], summaries)

    name = resolve_agent(agent)
    run_opts = _run_options(dict(task=task, steps=steps, run_dir=run_dir, dataset_path=dataset_path,
                                 dataset_dir=dataset_dir, preset=preset, eval_episodes=eval_episodes,
                                 eval_every=eval_every, **options))
    run_opts = {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in run_opts.items()}
    run = RunConfig(**run_opts)
    if run.task is None and run.dataset_path is None:
        raise RQLError("rql.train: give task= (an OGBench single-task name) and/or dataset_path=")
    cfg = build_config(name, run.task, run.preset, typed_overrides(name, dict(agent_config or {})), settings=settings)
    run = validate(run)
    seed_list = [run.seed] if seeds is None else (list(map(int, seeds)) if isinstance(seeds, (list, tuple))
                                                  else parse_seeds(str(seeds)))
    group_dir, dirs = group_run_dirs(run, name, seed_list)
    summaries = train_group(run, name, cfg, seed_list, dirs, log=log, group_dir=group_dir)
    return TrainResult(pathlib.Path(group_dir or dirs[0]), [pathlib.Path(d) for d in dirs], summaries)


class Policy:
    """The evaluation policy of a saved run (:func:`load`): ``policy(obs, key)`` maps a batch of
    observations ``(B, obs_dim)`` and a JAX key to action chunks ``(B, horizon, action_dim)`` inside
    [-1, 1]; ``policy.act(obs)`` does one observation (``(obs_dim,)`` -> ``(horizon, action_dim)``),
    drawing its noise from the policy's own key sequence unless ``key`` is given. Chunks are executed
    open loop, ``horizon`` actions each."""

    def __init__(self, agent, state, run, step: int, run_dir: pathlib.Path, seed: int = 0):
        import gymnasium
        import jax
        import numpy as np

        self.agent, self.state, self.run, self.checkpoint, self.run_dir = agent, state, run, step, run_dir
        self.name = agent.name
        self.obs_dim, self.action_dim, self.horizon = agent.obs_dim, agent.action_dim, agent.config.horizon
        def box(bound, shape):
            return gymnasium.spaces.Box(np.full(shape, -bound, np.float32), np.full(shape, bound, np.float32))

        cfg = agent.config
        self.image_shape = tuple(cfg.image_shape) if getattr(cfg, "encoder", "none") != "none" and cfg.image_shape else None
        """Images: (H, W, K * C), the ``frame_stack`` newest frames stacked along the channels (oldest first)."""
        self.frame_stack = int(getattr(run, "frame_stack", 1))
        self._obs_dtype = "uint8" if self.image_shape else "float32"
        self.observation_space = (gymnasium.spaces.Box(0, 255, (self.obs_dim,), np.uint8) if self.image_shape
                                  else box(np.inf, (self.obs_dim,)))
        self.action_space = box(1.0, (self.action_dim,))
        self.chunk_space = box(1.0, (self.horizon, self.action_dim))
        self._act = jax.jit(agent.act)
        self._key = jax.random.PRNGKey(seed)

    def __call__(self, obs, key):
        import numpy as np

        from rql.exported import observation_batch

        obs = observation_batch(obs, self.obs_dim, self._obs_dtype, self.image_shape)
        return np.asarray(self._act(self.state, obs, key))

    def act(self, obs, key=None):
        import jax
        import numpy as np

        if key is None:
            self._key, key = jax.random.split(self._key)
        return self(np.asarray(obs)[None], key)[0]

    def __repr__(self) -> str:
        return (f"Policy(agent={self.name!r}, checkpoint={self.checkpoint}, obs_dim={self.obs_dim}, "
                f"horizon={self.horizon}, action_dim={self.action_dim})")


def load(run_dir: str | os.PathLike, checkpoint: int | None = None, seed: int = 0) -> Policy:
    """The EMA policy of a run directory (its latest readable checkpoint unless ``checkpoint``)."""
    _environment()
    from rql.training import restore_agent

    run, agent, ts, step = restore_agent(run_dir, checkpoint, log=lambda *a, **k: None)
    return Policy(agent, ts["agent"], run, step, pathlib.Path(run_dir), seed)


def evaluate(run_dir: str | os.PathLike, episodes: int = 50, checkpoint: int | None = None, seed: int = 0,
             envs: int = 10, env_workers: int | None = None, first_episode: int = 0, workers: int = 1,
             progress: bool = False, video: int = 0, video_size: int = 200, log=print) -> dict:
    """Evaluate a run's policy in its task's environment (``rql eval``): the success rate with its 95%
    Wilson interval, return and length over ``episodes`` episodes, as ``rql eval --json`` prints them
    (``workers`` processes share the episodes and pool their results)."""
    _environment()
    import jax

    if workers > 1:
        from rql.evaluation import evaluate_in_processes

        if video:
            raise RQLError("video renders in one process: give it with workers=1")
        return evaluate_in_processes(run_dir, episodes, workers, seed=seed, checkpoint=checkpoint, envs=envs,
                                     first_episode=first_episode)

    from rql.evaluation import evaluate as run_episodes
    from rql.evaluation import make_policy
    from rql.runner.evaluator import eval_pool, eval_workers
    from rql.training import restore_agent

    if episodes <= 0:
        raise RQLError("episodes must be positive")
    run, agent, ts, step = restore_agent(run_dir, checkpoint, log=log)
    if not run.task:
        raise RQLError(f"{run_dir}: the run has no --task, so there is no environment to evaluate in")
    if video:
        from rql.video import select_gl_backend

        select_gl_backend()  # before the environments import mujoco: EGL, else OSMesa
    size = max(1, min(envs, episodes))
    pool = eval_pool(run.task, size, eval_workers(env_workers, size, episodes), run.frame_stack)
    pool.prepare(size)  # the workers start while this process makes its environments and compiles the policy
    from tqdm.auto import tqdm

    key = jax.random.PRNGKey(seed)  # episode i's noise: from key and i, whichever range runs it
    try:
        with tqdm(total=episodes, desc="eval", unit="ep", disable=not progress) as bar:
            res = run_episodes(make_policy(agent), ts["agent"], pool, episodes, key, seed=10_000 + seed,
                               progress=bar.update, first_episode=first_episode)
    finally:
        pool.close()
    res = {"run_dir": str(run_dir), "checkpoint": step, "task": run.task, **res}
    if video:
        from rql.video import record_eval_video

        log(f"rendering {video} episodes...")
        res["video"] = str(record_eval_video(run_dir, step, agent, ts["agent"], run.task, video, 10_000 + seed,
                                             key=jax.random.PRNGKey(seed), size=video_size, prefix="eval_step_",
                                             frame_stack=run.frame_stack))
    return res


def export(run_dir: str | os.PathLike, out: str | os.PathLike, checkpoint: int | None = None) -> pathlib.Path:
    """Write the run's evaluation policy as a file that runs with JAX alone (``rql export``); returns its path."""
    _environment()
    from rql.exporting import export_policy

    return export_policy(run_dir, out, checkpoint, log=lambda *a, **k: None)[0]


def load_dataset(task: str | None = None, dataset_path: str | os.PathLike | None = None,
                 dataset_dir: str | os.PathLike | None = None, horizon: int = 1, sparse: bool = False,
                 download: bool = True):
    """A dataset as training reads it (:class:`rql.data.dataset.Dataset`): an OGBench task's file (single-task
    rewards relabelled), a plain ``.npz``, or ``minari:ID``; checked, one line for what is wrong."""
    from rql.data.loading import load_dataset as _load

    return _load(task, str(dataset_path) if dataset_path else None, str(dataset_dir) if dataset_dir else None,
                 horizon=horizon, sparse=sparse, download=download)


def generate_dataset(name: str, out: str | os.PathLike = "~/.ogbench/data", episodes: int | None = None,
                     max_steps: int | None = None, seed: int = 0, workers: int = 1) -> tuple[pathlib.Path, pathlib.Path]:
    """Make an OGBench dataset offline with the official scripted oracles (``rql data generate``); returns the
    paths of ``NAME.npz`` and ``NAME-val.npz``."""
    _environment()
    from rql.data.generate import generate

    paths = generate(name, out_dir=str(out), episodes=episodes, max_steps=max_steps, seed=seed, workers=workers)
    return pathlib.Path(paths[0]), pathlib.Path(paths[1])
