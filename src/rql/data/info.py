"""Summarise an offline dataset file (``rql info``-style), optionally with OGBench single-task rewards.

Data files are untrusted input: they are read with ``np.load(..., allow_pickle=False)`` only, and
every problem with a file is raised as a one-line :class:`RQLError`.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from typing import Any

import numpy as np

from rql.data.dataset import check_finite, episode_bounds
from rql.errors import RQLError

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_NPY_MAGIC = b"\x93NUMPY"


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file into memory, safely (no pickles), or raise :class:`RQLError`."""
    p = os.fspath(path)
    shown = os.path.expanduser(p)
    if not os.path.exists(shown):
        raise RQLError(f"{p}: no such file; check the path (or generate/download the dataset first)")
    if os.path.isdir(shown):
        raise RQLError(f"{p} is a folder; give the path of an .npz dataset file")
    try:
        with open(shown, "rb") as f:
            head = f.read(6)
    except OSError as e:
        raise RQLError(f"{p}: cannot read the file ({e.strerror or e}); check its permissions") from e
    if head.startswith(_NPY_MAGIC):
        raise RQLError(f"{p} is a single .npy array; a dataset must be an .npz archive of named arrays")
    if not (head.startswith(_ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC)):
        raise RQLError(f"{p} is not an .npz archive (corrupt or another format); regenerate or re-download it")
    arrays: dict[str, np.ndarray] = {}
    key = None
    try:
        with np.load(shown, allow_pickle=False) as npz:
            for key in npz.files:
                arrays[key] = npz[key]
    except ValueError as e:
        if "pickle" in str(e).lower():
            where = f" (array '{key}')" if key else ""
            raise RQLError(
                f"{p} holds pickled Python objects{where}, which are never loaded from data files; "
                f"save the data as plain numeric arrays"
            ) from e
        raise RQLError(f"{p} is corrupt or truncated ({_short(e)}); regenerate or re-download it") from e
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, KeyError, RuntimeError) as e:
        raise RQLError(f"{p} is corrupt or truncated ({_short(e)}); regenerate or re-download it") from e
    if not arrays:
        raise RQLError(f"{p} holds no arrays; a dataset needs observations, actions and terminals")
    return arrays


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:120]


def _check(arrays: dict[str, np.ndarray], source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    missing = [k for k in ("observations", "actions", "terminals") if k not in arrays]
    if missing:
        raise RQLError(
            f"{source}: missing array(s) {', '.join(missing)}; found {', '.join(sorted(arrays)) or 'none'}"
        )
    for k, a in arrays.items():
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise RQLError(f"{source}: array '{k}' has dtype {a.dtype}; expected numbers")
    obs, act, term = arrays["observations"], arrays["actions"], arrays["terminals"]
    if obs.ndim != 2:
        raise RQLError(f"{source}: 'observations' has shape {obs.shape}; expected (N, obs_dim)")
    if act.ndim != 2:
        raise RQLError(f"{source}: 'actions' has shape {act.shape}; expected (N, action_dim)")
    if term.ndim == 2 and term.shape[1] == 1:
        term = term[:, 0]
    if term.ndim != 1:
        raise RQLError(f"{source}: 'terminals' has shape {term.shape}; expected (N,)")
    n = obs.shape[0]
    if n == 0:
        raise RQLError(f"{source}: the dataset is empty")
    for k, a in arrays.items():
        if a.ndim == 0 or a.shape[0] != n:
            raise RQLError(
                f"{source}: array '{k}' has shape {a.shape} but 'observations' has {n} rows; all arrays must match"
            )
    check_finite(arrays, source)
    return obs, act, term


def _stats(x: np.ndarray) -> dict[str, float]:
    x = np.asarray(x, dtype=np.float64)
    return {"mean": float(x.mean()), "std": float(x.std()), "min": float(x.min()), "max": float(x.max())}


def _task_env_name(task: str) -> str:
    from rql.data.names import split_task

    return split_task(task)[0]


def _relabel(arrays: dict[str, np.ndarray], keep: np.ndarray, task: str, source: str) -> dict[str, np.ndarray]:
    env_name = _task_env_name(task)
    if "qpos" not in arrays:
        raise RQLError(
            f"{source}: single-task rewards for {task} need the 'qpos' array (OGBench format), which this file lacks"
        )
    try:
        import ogbench
        from ogbench.relabel_utils import relabel_dataset

        env = ogbench.make_env_and_datasets(task, env_only=True)
    except Exception as e:  # gymnasium raises several error types for unknown ids
        raise RQLError(f"unknown OGBench task '{task}' ({_short(e)}); use e.g. cube-single-play-singletask-task1-v0") from e
    try:
        want = env.observation_space.shape
        have = arrays["observations"].shape[1:]
        if want is not None and tuple(want) != tuple(have):
            raise RQLError(
                f"{source}: observations have shape {have} but task {task} expects {tuple(want)}; "
                f"is this the right dataset for the task?"
            )
        data = {k: arrays[k][keep] for k in ("qpos", "qvel", "button_states") if k in arrays}
        try:
            relabel_dataset(env_name, env, data)
        except RQLError:
            raise
        except Exception as e:
            raise RQLError(
                f"{source}: cannot compute rewards for {task} from this file ({_short(e)}); "
                f"is this the right dataset for the task?"
            ) from e
    finally:
        try:
            env.close()
        except Exception:
            pass
    return data


def dataset_info(path: str, task: str | None = None) -> dict[str, Any]:
    """Describe a dataset file; all values are plain Python types (JSON serialisable).

    Keys: ``path``, ``arrays`` (name -> {shape, dtype}), ``rows`` (stored steps), ``episodes``,
    ``transitions`` ((s, a, s') pairs: ``rows - episodes`` for OGBench files, which store no
    ``next_observations``; ``rows`` otherwise), ``episode_length`` {min, max, mean},
    ``obs_dim``, ``action_dim``, ``action_min``/``action_max`` (overall) and
    ``action_min_per_dim``/``action_max_per_dim``; ``rewards`` statistics when the file has
    rewards. With ``task`` (an OGBench single-task env name such as
    ``cube-single-play-singletask-task2-v0``), ``task`` holds the relabelled single-task reward
    statistics over the transitions, ``success_fraction`` (steps where every subtask is done, i.e.
    ``masks == 0``) and ``success_episodes`` (episodes that reach success at least once).
    """
    source = os.fspath(path)
    arrays = read_npz(source)
    obs, act, term = _check(arrays, source)
    n = int(obs.shape[0])
    starts, ends = episode_bounds(term)
    lengths = ends - starts + 1
    has_next = "next_observations" in arrays
    # Transitions as OGBench's loader forms them: without next_observations the last step of
    # each episode has no successor and is dropped.
    keep = np.ones(n, dtype=bool)
    if not has_next:
        keep[ends] = False
    act64 = act.astype(np.float64)
    info: dict[str, Any] = {
        "path": source,
        "arrays": {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in arrays.items()},
        "rows": n,
        "episodes": int(len(starts)),
        "transitions": int(keep.sum()),
        "episode_length": {
            "min": int(lengths.min()),
            "max": int(lengths.max()),
            "mean": float(lengths.mean()),
        },
        "obs_dim": int(obs.shape[1]),
        "action_dim": int(act.shape[1]),
        "action_min": float(act64.min()) if act.size else 0.0,
        "action_max": float(act64.max()) if act.size else 0.0,
        "action_min_per_dim": [float(v) for v in act64.min(axis=0)] if act.size else [],
        "action_max_per_dim": [float(v) for v in act64.max(axis=0)] if act.size else [],
    }
    if "rewards" in arrays:
        r = arrays["rewards"]
        if r.ndim == 2 and r.shape[1] == 1:
            r = r[:, 0]
        info["rewards"] = _stats(r)
    if task is not None:
        data = _relabel(arrays, keep, task, source)
        rewards, masks = data["rewards"], data["masks"]
        success = masks == 0
        episode_of = np.repeat(np.arange(len(starts)), lengths)[keep]
        success_eps = int(np.unique(episode_of[success]).size)
        info["task"] = {
            "name": task,
            "rewards": _stats(rewards) if rewards.size else None,
            "success_fraction": float(success.mean()) if success.size else 0.0,
            "success_steps": int(success.sum()),
            "success_episodes": success_eps,
        }
    return info


def format_info(info: dict[str, Any]) -> str:
    """Human-readable multi-line text for a :func:`dataset_info` result."""
    lines = [f"dataset        {info['path']}"]
    el = info["episode_length"]
    lines.append(
        f"episodes       {info['episodes']:,} (length min {el['min']:,}, mean {el['mean']:,.1f}, max {el['max']:,})"
    )
    lines.append(f"transitions    {info['transitions']:,} ({info['rows']:,} stored steps)")
    lines.append(f"observations   dim {info['obs_dim']}")
    lines.append(
        f"actions        dim {info['action_dim']}, range [{info['action_min']:.4g}, {info['action_max']:.4g}]"
    )
    if info["action_dim"] <= 12 and info["action_min_per_dim"]:
        lo = ", ".join(f"{v:.3g}" for v in info["action_min_per_dim"])
        hi = ", ".join(f"{v:.3g}" for v in info["action_max_per_dim"])
        lines.append(f"  per dim min  [{lo}]")
        lines.append(f"  per dim max  [{hi}]")
    if "rewards" in info:
        r = info["rewards"]
        lines.append(
            f"rewards (file) mean {r['mean']:.4g}, std {r['std']:.4g}, min {r['min']:.4g}, max {r['max']:.4g}"
        )
    t = info.get("task")
    if t:
        lines.append(f"task           {t['name']}")
        if t["rewards"] is not None:
            r = t["rewards"]
            lines.append(
                f"  rewards      mean {r['mean']:.4g}, std {r['std']:.4g}, min {r['min']:.4g}, max {r['max']:.4g}"
            )
        lines.append(f"  success      {t['success_fraction']:.2%} of transitions ({t['success_steps']:,} steps)")
        lines.append(f"  episodes reaching success  {t['success_episodes']:,} of {info['episodes']:,}")
    arrays = ", ".join(f"{k} {tuple(v['shape'])} {v['dtype']}" for k, v in info["arrays"].items())
    lines.append(f"arrays         {arrays}")
    return "\n".join(lines)
