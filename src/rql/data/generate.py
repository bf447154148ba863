"""Regenerate OGBench offline datasets locally with the scripted oracles shipped in ``ogbench``.

The recipe follows the public OGBench data-generation scripts (see the project's DATA.md):

- manipulation (``cube-*``, ``scene``, ``puzzle-*``): environments made with
  ``terminate_at_goal=False, mode='data_collection'``; ``play`` data uses the plan oracles with
  ``noise=0.1, noise_smoothing=0.5``; ``noisy`` data uses the Markov oracles (``min_norm=0.4``)
  with per-episode Gaussian action noise and random actions; a new target is set with
  ``set_new_target(p_stack=...)`` whenever the oracle is done; scene episodes that push the block
  out of view are redone.
- pointmaze: the action is the unit direction to the maze's oracle subgoal plus Gaussian noise
  0.5; ``navigate`` picks a new goal whenever one is reached, ``stitch`` aims at a cell four
  steps away.

Files are written in OGBench's own layout (``NAME.npz`` and ``NAME-val.npz``) so that
``ogbench.load_dataset`` and ``ogbench.make_env_and_datasets(..., dataset_dir=...)`` read them.

Every episode is seeded from ``(seed, split, episode index)`` alone, so the output is
byte-identical for a given seed whatever the number of worker processes.

Generation is resumable: every finished episode is written at once (atomically) as a part file in a
hidden work folder beside the output, ``.NAME.parts-<settings hash>/``; a run that is killed (SIGKILL,
Ctrl-C, SIGTERM) and started again with the same settings keeps those episodes and makes only the
missing ones. The final files are assembled from the parts at the end (the same bytes as an
uninterrupted run) and the work folder is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import secrets
import shutil
import signal
import sys
import threading
import time
import zipfile
from typing import Any, Iterable, Iterator

import numpy as np

from rql.errors import RQLError

DEFAULT_OUT_DIR = "~/.ogbench/data"

TRAIN, VAL = 0, 1  # split ids mixed into every episode's seed

# Manipulation environments: env id prefix -> (default train episodes, cube stacking rule).
_MANIP_EPISODES = {
    "cube-single": 1000,
    "cube-double": 1000,
    "cube-triple": 3000,
    "cube-quadruple": 5000,
    "scene": 1000,
    "puzzle-3x3": 1000,
    "puzzle-4x4": 1000,
    "puzzle-4x5": 3000,
    "puzzle-4x6": 5000,
}
_MANIP_TYPES = ("play", "noisy")
_MAZES = ("pointmaze-medium", "pointmaze-large", "pointmaze-giant", "pointmaze-teleport")
_MAZE_TYPES = ("navigate", "stitch")
_DOWNLOAD_ONLY = ("antmaze", "humanoidmaze", "antsoccer", "visual-antmaze", "visual-humanoidmaze", "powderworld")
_VISUAL = "visual-"  # visual-<manipulation env>: the same oracles, observations rendered 64x64x3 uint8

# Recipe constants (from the official scripts).
_PLAN_NOISE = 0.1
_PLAN_NOISE_SMOOTHING = 0.5
_MARKOV_MIN_NORM = 0.4
_MARKOV_NOISE = 0.1  # per-episode noise scale xi ~ U(0, 0.1)
_MARKOV_NOISE_DIM_SCALE = np.array([1.0, 1.0, 1.0, 3.0, 10.0])
_MAZE_NOISE = 0.5
_STITCH_CELLS = 4
_SCENE_MAX_RETRIES = 1000

# Bump when a change of this module changes the episodes a (dataset, seed, max_steps, split, index)
# gives: part files of unfinished runs (see _PartWriter) made by older code are then not reused.
_EPISODE_STREAMS = 1
_PART_FORMAT = 1
_PART_META = "_part"  # the part file's member holding its JSON description
_PART_KEYS = frozenset({"observations", "actions", "terminals", "qpos", "qvel", "button_states"})

SUPPORTED = tuple(f"{v}{e}-{t}-v0" for v in ("", _VISUAL) for e in _MANIP_EPISODES for t in _MANIP_TYPES) + tuple(
    f"{m}-{t}-v0" for m in _MAZES for t in _MAZE_TYPES
)


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What :func:`generate` does for one dataset name."""

    dataset: str  # e.g. "cube-single-play-v0"
    env_id: str  # e.g. "cube-single-v0"
    kind: str  # "play", "noisy", "navigate" or "stitch"
    episodes: int  # default number of training episodes
    max_steps: int  # default steps per episode

    @property
    def is_maze(self) -> bool:
        return self.kind in _MAZE_TYPES

    @property
    def val_episodes(self) -> int:
        return max(1, self.episodes // 10)


def _supported_summary() -> str:
    manip = "|".join(_MANIP_EPISODES)
    mazes = "|".join(m.split("-", 1)[1] for m in _MAZES)
    return f"[visual-]({manip})-(play|noisy)-v0 and pointmaze-({mazes})-(navigate|stitch)-v0"


def resolve(name: str) -> Recipe:
    """Map a dataset or single-task env name to its generation recipe, or raise :class:`RQLError`.

    Accepts ``cube-single-play-v0``, ``cube-single-play`` and
    ``cube-single-play-singletask-task2-v0`` (all meaning ``cube-single-play-v0``).
    """
    raw = str(name).strip()
    if raw.endswith(".npz"):
        raw = raw[: -len(".npz")]
    parts = [p for p in raw.split("-") if p]
    if parts and parts[-1].startswith("v") and parts[-1][1:].isdigit():
        version = parts.pop()
    else:
        version = "v0"
    if "singletask" in parts:
        pos = parts.index("singletask")
        rest = parts[pos + 1 :]
        if len(rest) > 1 or (rest and not (rest[0].startswith("task") and rest[0][4:].isdigit())):
            raise RQLError(f"'{name}' is not a valid OGBench single-task name (expected e.g. cube-single-play-singletask-task1-v0)")
        parts = parts[:pos]
    if version != "v0":
        raise RQLError(f"'{name}': only the v0 OGBench datasets can be generated; supported: {_supported_summary()}")
    dataset = "-".join(parts) + "-v0"
    if any(dataset.startswith(p) for p in _DOWNLOAD_ONLY):
        raise RQLError(
            f"'{dataset}' cannot be generated here (it needs OGBench's pretrained experts or is visual); download it "
            f"with ogbench.download_datasets or give it as a local .npz file. Generatable: {_supported_summary()}"
        )
    if len(parts) >= 2:
        env, kind = "-".join(parts[:-1]), parts[-1]
        base = env[len(_VISUAL):] if env.startswith(_VISUAL) else env
        if base in _MANIP_EPISODES and kind in _MANIP_TYPES:
            return Recipe(dataset, f"{env}-v0", kind, _MANIP_EPISODES[base], 1001)
        if env in _MAZES and kind in _MAZE_TYPES:
            if kind == "stitch":
                return Recipe(dataset, f"{env}-v0", kind, 5000, 201)
            if env == "pointmaze-giant":
                return Recipe(dataset, f"{env}-v0", kind, 500, 2001)
            return Recipe(dataset, f"{env}-v0", kind, 1000, 1001)
    raise RQLError(
        f"cannot generate '{name}': supported datasets are {_supported_summary()}; other datasets must be "
        f"downloaded (ogbench.download_datasets) or given as a local .npz file"
    )


# --------------------------------------------------------------------------------------------
# Episode collection (runs in the main process or in worker processes).


def episode_seeds(seed: int, split: int, index: int) -> tuple[int, int, int]:
    """Three independent 32-bit seeds (numpy global RNG, env, action space) for one episode."""
    state = np.random.SeedSequence([int(seed), int(split), int(index)]).generate_state(3, dtype=np.uint32)
    return int(state[0]), int(state[1]), int(state[2])


class _ManipCollector:
    def __init__(self, recipe: Recipe, max_steps: int):
        import gymnasium

        import ogbench.manipspace  # noqa: F401  (registers the environments)

        self.recipe = recipe
        self.env = gymnasium.make(
            recipe.env_id, terminate_at_goal=False, mode="data_collection", max_episode_steps=max_steps
        )
        self.has_buttons = hasattr(self.env.unwrapped, "_cur_button_states")
        name = self.base_name = recipe.env_id.removeprefix(_VISUAL)
        self.is_scene = name.startswith("scene")
        self.p_random = 0.0 if recipe.kind == "play" else (0.2 if name.startswith("puzzle") else 0.1)
        self.oracles = self._make_oracles()

    def _make_oracles(self) -> dict[str, Any]:
        env, name = self.env, self.base_name
        if self.recipe.kind == "play":
            from ogbench.manipspace.oracles.plan.button_plan import ButtonPlanOracle
            from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
            from ogbench.manipspace.oracles.plan.drawer_plan import DrawerPlanOracle
            from ogbench.manipspace.oracles.plan.window_plan import WindowPlanOracle

            kw = dict(env=env, noise=_PLAN_NOISE, noise_smoothing=_PLAN_NOISE_SMOOTHING)
            if name.startswith("cube"):
                return {"cube": CubePlanOracle(**kw)}
            if name.startswith("puzzle"):
                return {"button": ButtonPlanOracle(gripper_always_closed=True, **kw)}
            return {
                "cube": CubePlanOracle(**kw),
                "button": ButtonPlanOracle(**kw),
                "drawer": DrawerPlanOracle(**kw),
                "window": WindowPlanOracle(**kw),
            }
        from ogbench.manipspace.oracles.markov.button_markov import ButtonMarkovOracle
        from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
        from ogbench.manipspace.oracles.markov.drawer_markov import DrawerMarkovOracle
        from ogbench.manipspace.oracles.markov.window_markov import WindowMarkovOracle

        kw = dict(env=env, min_norm=_MARKOV_MIN_NORM)
        if name.startswith("cube"):
            return {"cube": CubeMarkovOracle(**kw)}
        if name.startswith("puzzle"):
            return {"button": ButtonMarkovOracle(gripper_always_closed=True, **kw)}
        return {
            "cube": CubeMarkovOracle(max_step=100, **kw),
            "button": ButtonMarkovOracle(**kw),
            "drawer": DrawerMarkovOracle(**kw),
            "window": WindowMarkovOracle(**kw),
        }

    def _p_stack(self) -> float:
        name = self.base_name
        if "single" in name:
            return 0.0
        if "double" in name:
            return float(np.random.uniform(0.0, 0.25))
        if "triple" in name:
            return float(np.random.uniform(0.05, 0.35))
        if "quadruple" in name:
            return float(np.random.uniform(0.1, 0.5))
        return 0.5

    @staticmethod
    def _healthy(qpos: np.ndarray) -> bool:
        """Scene check: the block stays visible unless it is inside the drawer."""
        xyz = qpos[:, 14:17]
        if np.any(xyz[:, 1] >= 0.29):
            return False
        in_drawer_height = (xyz[:, 2] >= 0.06) & (xyz[:, 2] <= 0.08)
        return not np.any((xyz[:, 1] <= -0.3) & ~in_drawer_height)

    def run(self, seeds: tuple[int, int, int], record: bool = False) -> dict[str, np.ndarray]:
        np_seed, env_seed, space_seed = seeds
        np.random.seed(np_seed)
        reset_seed: int | None = env_seed
        for _attempt in range(_SCENE_MAX_RETRIES):
            ep = self._rollout(reset_seed, space_seed, record)
            reset_seed = space_seed = None  # a redo continues the episode's random streams
            if not self.is_scene or self._healthy(ep["qpos"]):
                return ep
        raise RuntimeError(f"scene episode stayed unhealthy after {_SCENE_MAX_RETRIES} attempts")

    def _rollout(self, reset_seed: int | None, space_seed: int | None, record: bool) -> dict[str, np.ndarray]:
        env, uenv = self.env, self.env.unwrapped
        ob, info = env.reset(seed=reset_seed)
        if space_seed is not None:
            # Random actions are uniform over the action box [-1, 1]^5. The manipulation envs build
            # a fresh (unseeded) action space on every access, so sample from our own generator.
            self._random_actions = np.random.default_rng(space_seed)
        p_stack = self._p_stack()
        xi = float(np.random.uniform(0.0, _MARKOV_NOISE)) if self.recipe.kind == "noisy" else 0.0
        agent = self.oracles[info["privileged/target_task"]]
        agent.reset(ob, info)
        obs, acts, terms, qpos, qvel, buttons = [], [], [], [], [], []
        target_changes = 0
        done = False
        while not done:
            if self.p_random > 0 and np.random.rand() < self.p_random:
                low, high = env.action_space.low, env.action_space.high
                action = self._random_actions.uniform(low, high).astype(np.float32).astype(np.float64)
            else:
                action = np.asarray(agent.select_action(ob, info), dtype=np.float64)
                if xi > 0:
                    action = action + np.random.normal(0.0, xi * _MARKOV_NOISE_DIM_SCALE, action.shape)
            action = np.clip(action, -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            if agent.done:
                agent_ob, agent_info = uenv.set_new_target(p_stack=p_stack)
                agent = self.oracles[agent_info["privileged/target_task"]]
                agent.reset(agent_ob, agent_info)
                target_changes += 1
            obs.append(ob)
            acts.append(action)
            terms.append(done)
            qpos.append(info["prev_qpos"])
            qvel.append(info["prev_qvel"])
            if self.has_buttons:
                buttons.append(info["prev_button_states"])
            ob = next_ob
        out = _pack(obs, acts, terms, qpos, qvel, buttons if self.has_buttons else None)
        if record:
            out["_target_changes"] = np.array(target_changes, dtype=np.int64)
        return out


class _MazeCollector:
    def __init__(self, recipe: Recipe, max_steps: int):
        import gymnasium

        import ogbench.locomaze  # noqa: F401  (registers the environments)

        self.recipe = recipe
        self.env = gymnasium.make(recipe.env_id, terminate_at_goal=False, max_episode_steps=max_steps)
        maze = np.asarray(self.env.unwrapped.maze_map)
        self.maze = maze
        self.free_cells = [(i, j) for i in range(maze.shape[0]) for j in range(maze.shape[1]) if maze[i, j] == 0]
        self.goal_cells = [c for c in self.free_cells if not self._is_corridor(c)]

    def _is_corridor(self, cell: tuple[int, int]) -> bool:
        """A straight corridor cell: free on two opposite sides, walls on the other two."""
        m, (i, j) = self.maze, cell
        vertical = m[i - 1, j] == 0 and m[i + 1, j] == 0 and m[i, j - 1] == 1 and m[i, j + 1] == 1
        horizontal = m[i, j - 1] == 0 and m[i, j + 1] == 0 and m[i - 1, j] == 1 and m[i + 1, j] == 1
        return bool(vertical or horizontal)

    def _cells_at_distance(self, start: tuple[int, int], steps: int) -> list[tuple[int, int]]:
        m = self.maze
        dist = {start: 0}
        frontier = [start]
        found = []
        while frontier:
            nxt = []
            for i, j in frontier:
                for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
                    c = (i + di, j + dj)
                    if 0 <= c[0] < m.shape[0] and 0 <= c[1] < m.shape[1] and m[c] == 0 and c not in dist:
                        dist[c] = dist[(i, j)] + 1
                        if dist[c] == steps:
                            found.append(c)
                        nxt.append(c)
            frontier = nxt
        return found

    def _pick(self, cells: list[tuple[int, int]]) -> tuple[int, int]:
        return cells[np.random.randint(len(cells))]

    def run(self, seeds: tuple[int, int, int], record: bool = False) -> dict[str, np.ndarray]:
        np_seed, env_seed, space_seed = seeds
        np.random.seed(np_seed)
        self.env.action_space.seed(space_seed)
        env, uenv = self.env, self.env.unwrapped
        init_ij = self._pick(self.free_cells)
        if self.recipe.kind == "navigate":
            goal_ij = self._pick(self.goal_cells)
        else:
            near = self._cells_at_distance(init_ij, _STITCH_CELLS)
            goal_ij = self._pick(near) if near else init_ij
        ob, _ = env.reset(seed=env_seed, options=dict(task_info=dict(init_ij=init_ij, goal_ij=goal_ij)))
        obs, acts, terms, qpos, qvel, dirs, raws = [], [], [], [], [], [], []
        goal_changes = 0
        done = False
        while not done:
            xy = uenv.get_xy()
            subgoal_xy, _ = uenv.get_oracle_subgoal(xy, uenv.cur_goal_xy)
            direction = np.asarray(subgoal_xy) - xy
            direction = direction / (np.linalg.norm(direction) + 1e-6)
            raw = direction + np.random.normal(0.0, _MAZE_NOISE, direction.shape)
            action = np.clip(raw, -1.0, 1.0)
            next_ob, _, terminated, truncated, info = env.step(action)
            done = bool(terminated or truncated)
            if info["success"] and self.recipe.kind == "navigate":
                uenv.set_goal(self._pick(self.goal_cells))
                goal_changes += 1
            obs.append(ob)
            acts.append(action)
            terms.append(done)
            qpos.append(info["prev_qpos"])
            qvel.append(info["prev_qvel"])
            if record:
                dirs.append(direction)
                raws.append(raw)
            ob = next_ob
        out = _pack(obs, acts, terms, qpos, qvel, None)
        if record:
            out["_directions"] = np.asarray(dirs, dtype=np.float64)
            out["_raw_actions"] = np.asarray(raws, dtype=np.float64)
            out["_target_changes"] = np.array(goal_changes, dtype=np.int64)
        return out


def _pack(obs, acts, terms, qpos, qvel, buttons) -> dict[str, np.ndarray]:
    terminals = np.asarray(terms, dtype=bool)
    terminals[-1] = True  # the episode ends here whatever the wrappers reported
    out = {
        # images (visual-... environments) stay uint8, as OGBench stores them; state vectors float32
        "observations": np.asarray(obs, dtype=np.uint8 if np.asarray(obs[0]).dtype == np.uint8 else np.float32),
        "actions": np.asarray(acts, dtype=np.float32),
        "terminals": terminals,
        "qpos": np.asarray(qpos, dtype=np.float32),
        "qvel": np.asarray(qvel, dtype=np.float32),
    }
    if buttons is not None:
        out["button_states"] = np.asarray(buttons, dtype=np.int64)
    return out


def _make_collector(recipe: Recipe, max_steps: int):
    return _MazeCollector(recipe, max_steps) if recipe.is_maze else _ManipCollector(recipe, max_steps)


_WORKER: Any = None


def _worker_init(recipe: Recipe, max_steps: int, record: bool, save: "_PartWriter | None" = None) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: the parent stops the pool; a worker must not die half way
    # through writing a part (its temporary file would stay behind).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    _WORKER = (_make_collector(recipe, max_steps), record, save)


def _exit_with_parent(poll: float = 1.0) -> None:
    """End this worker process when its parent dies (a ``kill -9`` of ``rql data generate`` would
    otherwise leave the workers rendering an episode nobody collects, then waiting for ever)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="rql-parent-watch", daemon=True).start()


def _worker_run(task: tuple[int, int, int]):
    collector, record, save = _WORKER
    ep = collector.run(episode_seeds(*task), record)
    if save is None:
        return ep
    save.write(task, ep)
    return len(ep["observations"])


def _run_episodes(
    recipe: Recipe,
    max_steps: int,
    tasks: list[tuple[int, int, int]],
    workers: int,
    record: bool = False,
    save: "_PartWriter | None" = None,
) -> Iterator[Any]:
    """Yield the episodes for ``tasks`` ((seed, split, index) each), in order. With ``save``, each
    episode is written as a part file (by the process that made it) and its row count is yielded."""
    if workers <= 1 or len(tasks) <= 1:
        saved = np.random.get_state()  # the oracles draw from numpy's global generator
        collector = None
        try:
            collector = _make_collector(recipe, max_steps)
            for task in tasks:
                ep = collector.run(episode_seeds(*task), record)
                if save is None:
                    yield ep
                else:
                    save.write(task, ep)
                    yield len(ep["observations"])
        finally:
            np.random.set_state(saved)
            if collector is not None:
                collector.env.close()
        return
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = ctx.Pool(min(workers, len(tasks)), initializer=_worker_init, initargs=(recipe, max_steps, record, save))
    with pool:
        yield from pool.imap(_worker_run, tasks, chunksize=1)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """One BLAS/OpenMP thread per worker process (workers already use every core), unless the user
    chose otherwise. Spawned children copy the environment when they start."""
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    for k, v in saved.items():
        if v is None:
            os.environ[k] = "1"
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


def _collect(
    name: str,
    episodes: int,
    max_steps: int | None = None,
    seed: int = 0,
    split: int = TRAIN,
    workers: int = 1,
    record: bool = True,
) -> list[dict[str, np.ndarray]]:
    """Roll out ``episodes`` episodes without writing anything (for tests and measurements).

    With ``record=True`` episodes also carry private extras: ``_target_changes`` and, for
    pointmaze, ``_directions`` (unit direction to the oracle subgoal) and ``_raw_actions``
    (direction plus noise, before clipping).
    """
    recipe = resolve(name)
    steps = recipe.max_steps if max_steps is None else int(max_steps)
    tasks = [(seed, split, i) for i in range(episodes)]
    return list(_run_episodes(recipe, steps, tasks, workers, record))


# --------------------------------------------------------------------------------------------
# Writing.


class _Buffer:
    """Episodes appended into preallocated arrays (no list of episodes, no final concatenation)."""

    def __init__(self, expected_rows: int):
        self.capacity = max(1, int(expected_rows))
        self.rows = 0
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, ep: dict[str, np.ndarray]) -> None:
        n = len(ep["observations"])
        if not self.arrays:
            self.arrays = {
                k: np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype) for k, v in ep.items() if not k.startswith("_")
            }
        if self.rows + n > self.capacity:
            self.capacity = max(2 * self.capacity, self.rows + n)
            for k, v in self.arrays.items():
                grown = np.empty((self.capacity, *v.shape[1:]), dtype=v.dtype)
                grown[: self.rows] = v[: self.rows]
                self.arrays[k] = grown
        for k, v in self.arrays.items():
            v[self.rows : self.rows + n] = ep[k]
        self.rows += n

    def result(self) -> dict[str, np.ndarray]:
        return {k: v[: self.rows] for k, v in self.arrays.items()}


def _write_npz(fileobj, arrays: dict[str, np.ndarray]) -> None:
    """Write an ``.npz`` (deflate-compressed, like ``np.savez_compressed``) with fixed timestamps,
    so the same arrays always give the same bytes."""
    with zipfile.ZipFile(fileobj, mode="w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, mode="w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arr), allow_pickle=False)


def _write_temp(directory: pathlib.Path, final_name: str, arrays: dict[str, np.ndarray]) -> pathlib.Path:
    """Write ``arrays`` to a hidden temporary file next to the final path; return its path."""
    # Not tempfile.mkstemp: its files are private (0600); this one gets the usual umask-based mode.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = directory / f".{final_name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(f"cannot create a temporary file in {directory}")
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return pathlib.Path(tmp)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------------------------
# Part files: one per finished episode, so that an interrupted run resumes where it stopped.


def _settings(recipe: Recipe, max_steps: int, seed: int) -> dict[str, Any]:
    """Everything an episode's content depends on besides its split and index. The number of episodes
    and of workers are not in it: episode ``i`` is the same whatever they are."""
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for pkg in ("ogbench", "mujoco", "gymnasium", "numpy"):
        try:
            packages[pkg] = version(pkg)
        except PackageNotFoundError:
            packages[pkg] = None
    return {
        "part_format": _PART_FORMAT,
        "episode_streams": _EPISODE_STREAMS,
        "dataset": recipe.dataset,
        "env_id": recipe.env_id,
        "kind": recipe.kind,
        "max_steps": int(max_steps),
        "seed": int(seed),
        "packages": packages,
    }


def _digest(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _content_hash(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(json.dumps([key, a.dtype.str, list(a.shape)]).encode())
        h.update(a.reshape(-1).view(np.uint8).data)
    return h.hexdigest()


def parts_dir_for(out_dir: str | os.PathLike, name: str, max_steps: int | None = None, seed: int = 0) -> pathlib.Path:
    """The hidden work folder an unfinished :func:`generate` of these settings keeps its episodes in."""
    recipe = resolve(name)
    steps = recipe.max_steps if max_steps is None else int(max_steps)
    directory = pathlib.Path(os.path.expanduser(os.fspath(out_dir)))
    return directory / f".{recipe.dataset}.parts-{_digest(_settings(recipe, steps, int(seed)))[:16]}"


@dataclasses.dataclass(frozen=True)
class _PartWriter:
    """Writes and reads one episode's part file, ``train-0000012.npz`` or ``val-0000003.npz``: the
    episode's arrays and a ``_part`` member (JSON as uint8: the settings, their hash, split, index,
    rows and a SHA-256 of the arrays). Written atomically (temporary file, fsync, rename), so a part
    under its final name is complete; read with ``allow_pickle=False`` and checked before use."""

    directory: str
    settings: dict
    digest: str

    def path(self, task: tuple[int, int, int]) -> pathlib.Path:
        _, split, index = task
        return pathlib.Path(self.directory) / f"{'train' if split == TRAIN else 'val'}-{int(index):07d}.npz"

    def write(self, task: tuple[int, int, int], ep: dict[str, np.ndarray]) -> None:
        arrays = {k: v for k, v in ep.items() if not k.startswith("_")}
        meta = {
            "settings": self.settings,
            "hash": self.digest,
            "split": int(task[1]),
            "index": int(task[2]),
            "rows": int(len(arrays["observations"])),
            "sha256": _content_hash(arrays),
        }
        arrays[_PART_META] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        final = self.path(task)
        tmp = _write_temp(final.parent, final.name, arrays)
        try:
            os.replace(tmp, final)
        except BaseException:
            _unlink(tmp)
            raise

    def _meta_ok(self, meta: Any, task: tuple[int, int, int]) -> bool:
        return (
            isinstance(meta, dict)
            and meta.get("hash") == self.digest
            and meta.get("settings") == self.settings
            and meta.get("split") == task[1]
            and meta.get("index") == task[2]
            and isinstance(meta.get("rows"), int)
            and isinstance(meta.get("sha256"), str)
        )

    def has(self, task: tuple[int, int, int]) -> bool:
        """A part for ``task`` made with these settings exists (its description is checked, not its arrays)."""
        path = self.path(task)
        if not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(bytes(f[_PART_META]).decode())
        except Exception:  # noqa: BLE001  (a damaged or foreign file: the episode is made again)
            return False
        return self._meta_ok(meta, task)

    def read(self, task: tuple[int, int, int]) -> dict[str, np.ndarray] | None:
        """The episode's arrays, or None when the part is missing, foreign or damaged."""
        try:
            with np.load(self.path(task), allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
            meta = json.loads(bytes(arrays.pop(_PART_META)).decode())
        except Exception:  # noqa: BLE001
            return None
        if not self._meta_ok(meta, task) or not arrays or not set(arrays) <= _PART_KEYS:
            return None
        rows = meta["rows"]
        if any(a.ndim < 1 or a.shape[0] != rows for a in arrays.values()) or rows < 1:
            return None
        if _content_hash(arrays) != meta["sha256"]:
            return None
        return arrays


class _SignalStop(BaseException):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into an exception (Ctrl-C already is one), so the finished parts are reported and
    the worker processes stopped. Outside the main thread nothing changes."""
    old = None

    def handle(signum, frame):
        raise _SignalStop(signum)

    if threading.current_thread() is threading.main_thread():
        try:
            old = signal.signal(signal.SIGTERM, handle)
        except (ValueError, OSError):
            old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _check_args(episodes, max_steps, seed, workers) -> None:
    for label, value, low in (("episodes", episodes, 1), ("max_steps", max_steps, 2)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low):
            raise RQLError(f"{label} must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise RQLError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise RQLError(f"workers must be an integer >= 1, got {workers!r}")


def _progress(total: int, desc: str, enabled: bool, initial: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="ep", file=sys.stderr, disable=not enabled,
                dynamic_ncols=True)


def generate(
    name: str,
    out_dir: str | os.PathLike = DEFAULT_OUT_DIR,
    episodes: int | None = None,
    max_steps: int | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> tuple[pathlib.Path, pathlib.Path]:
    """Generate an OGBench-style dataset and write ``NAME.npz`` and ``NAME-val.npz`` in ``out_dir``.

    Args:
        name: dataset name (``cube-single-play-v0``; ``-v0`` optional) or a single-task env name
            (``cube-single-play-singletask-task2-v0``), which maps to its dataset.
        out_dir: output folder (created if needed); OGBench's default is ``~/.ogbench/data``.
        episodes: training episodes (default: the official count, e.g. 1000); the validation file
            gets a tenth of that (at least one), from different seeds.
        max_steps: steps per episode (default: the official 1001, 201 for stitch).
        seed: base seed; every episode is seeded from (seed, split, episode index).
        workers: number of worker processes (``spawn``); the output does not depend on it.
        progress: show a progress bar (episodes/s) on stderr.

    Returns:
        ``(train_path, val_path)``. Both are written atomically (temporary file, then rename), the
        validation file first; an interrupted run leaves no file under the final names.

    Resuming: each finished episode is first written as a part file in ``out_dir/.NAME.parts-<hash>/``
    (``hash``: of the dataset, seed, steps per episode and package versions; see :func:`parts_dir_for`).
    Run again after an interruption (``kill -9``, Ctrl-C, SIGTERM), the same settings keep the parts
    already there and make only the missing episodes; the final files are the same bytes as an
    uninterrupted run's. The folder is removed once the final files are written. A Ctrl-C or SIGTERM
    raises :class:`rql.faults.Stopped` (exit status 130 or 143 on the command line).
    """
    from rql.faults import RunLock, Stopped

    recipe = resolve(name)
    _check_args(episodes, max_steps, seed, workers)
    n_train = recipe.episodes if episodes is None else int(episodes)
    n_val = max(1, n_train // 10)
    steps = recipe.max_steps if max_steps is None else int(max_steps)

    directory = pathlib.Path(os.path.expanduser(os.fspath(out_dir)))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RQLError(f"cannot create output folder {directory}: {e.strerror or e}; choose another --out-dir") from e
    if not os.access(directory, os.W_OK):
        raise RQLError(f"output folder {directory} is not writable; choose another --out-dir")
    train_path = directory / f"{recipe.dataset}.npz"
    val_path = directory / f"{recipe.dataset}-val.npz"

    settings = _settings(recipe, steps, int(seed))
    digest = _digest(settings)
    parts = directory / f".{recipe.dataset}.parts-{digest[:16]}"
    others = sorted(p.name for p in directory.glob(f".{recipe.dataset}.parts-*") if p != parts and p.is_dir())
    try:
        parts.mkdir(exist_ok=True)
    except OSError as e:
        raise RQLError(f"cannot create the work folder {parts}: {e.strerror or e}") from e
    lock = RunLock(parts)  # one generating process per work folder (the kernel drops it when we die)
    tasks = [(int(seed), TRAIN, i) for i in range(n_train)] + [(int(seed), VAL, i) for i in range(n_val)]
    writer = _PartWriter(str(parts), settings, digest)
    try:
        for stale in parts.glob(".*.tmp"):  # a part being written when its process died
            _unlink(stale)
        for _attempt in range(3):
            kept = sum(writer.has(t) for t in tasks)
            missing = [t for t in tasks if not writer.has(t)] if kept else tasks
            if progress and others and _attempt == 0:
                print(f"note: {directory} also holds unfinished parts of {recipe.dataset} made with other settings "
                      f"({', '.join(others)}); they are not used", file=sys.stderr)
            desc = recipe.dataset + (f" ({kept} resumed)" if kept else "")
            try:
                with _stop_on_sigterm(), _progress(len(tasks), desc, progress, initial=kept) as bar:
                    if kept and progress:
                        bar.write(f"resuming: {kept} of {len(tasks)} episodes already in {parts}", file=sys.stderr)
                    if missing:  # (all kept: a run stopped while assembling; no environment is made)
                        for _rows in _run_episodes(recipe, steps, missing, int(workers), save=writer):
                            bar.update(1)
            except (KeyboardInterrupt, _SignalStop) as e:
                signum = e.signum if isinstance(e, _SignalStop) else int(signal.SIGINT)
                done = sum(writer.has(t) for t in tasks)
                raise Stopped(
                    f"stopped by {signal.Signals(signum).name}: {done} of {len(tasks)} episodes are kept in {parts}; "
                    "run the same command again to continue", signum) from None
            except OSError as e:
                raise RQLError(f"could not write an episode to {parts}: {e.strerror or e}") from e
            buffers = {TRAIN: _Buffer(n_train * steps), VAL: _Buffer(n_val * steps)}
            bad = []
            for task in tasks:
                ep = writer.read(task)
                if ep is None:
                    bad.append(task)
                else:
                    buffers[task[1]].add(ep)
            if not bad:
                break
            buffers.clear()
            for task in bad:  # damaged after it was written: made again
                _unlink(writer.path(task))
        else:
            raise RQLError(f"the episode files in {parts} keep failing their checks; delete the folder and run again")

        temps: list[pathlib.Path] = []
        try:
            temps.append(_write_temp(directory, val_path.name, buffers[VAL].result()))
            temps.append(_write_temp(directory, train_path.name, buffers[TRAIN].result()))
            buffers.clear()
            # Validation first: a train file under its final name implies its -val file is complete.
            os.replace(temps[0], val_path)
            os.replace(temps[1], train_path)
        except OSError as e:
            raise RQLError(f"could not write the dataset to {directory}: {e.strerror or e}") from e
        finally:
            for t in temps:
                _unlink(t)
    finally:
        lock.release()
    shutil.rmtree(parts, ignore_errors=True)
    return train_path, val_path


def supported_names() -> Iterable[str]:
    """All dataset names :func:`generate` can produce."""
    return SUPPORTED
