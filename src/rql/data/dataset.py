"""The one in-memory dataset format every loader produces, and its validation.

A :class:`Dataset` holds transitions stored episode after episode:

- ``observations`` (N, obs_dim) float32
- ``actions``      (N, action_dim) float32, inside [-1, 1]
- ``rewards``      (N,) float32
- ``terminals``    (N,) float32, 1.0 on the last transition of every episode (an episode
  boundary, whether the episode ended by time-out or by termination)
- ``masks``        (N,) float32, 0.0 where the value must not bootstrap past this transition
  (a true termination, e.g. task success in OGBench single-task data), else 1.0

Windows of ``h + 1`` steps never cross a ``terminals`` boundary: indices past an
episode's last transition are clamped to it (see :mod:`rql.data.device`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rql.errors import RQLError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
ACTION_CLIP_EPS = 1e-5
# Actions a little outside [-1, 1] (rounding) are clipped; anything further is an error.
ACTION_RANGE_TOLERANCE = 1e-3


@dataclasses.dataclass
class Dataset:
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    masks: np.ndarray
    source: str = ""

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.actions.shape[1])

    def episode_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """First and last (inclusive) index of every episode."""
        return episode_bounds(self.terminals)

    @property
    def num_episodes(self) -> int:
        return int(np.count_nonzero(self.terminals > 0))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("observations", "actions", "rewards", "terminals", "masks")}


def episode_bounds(terminals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last (inclusive) index of every episode; steps after the last terminal form one more."""
    ends = np.flatnonzero(np.asarray(terminals) > 0)
    if ends.size == 0 or ends[-1] != len(terminals) - 1:
        ends = np.append(ends, len(terminals) - 1)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return starts.astype(np.int64), ends.astype(np.int64)


def check_finite(arrays: dict, source: str) -> None:
    """One clear error for the first floating array holding NaN or infinite values."""
    for k, a in arrays.items():
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            bad = int(np.count_nonzero(~np.isfinite(a)))
            raise RQLError(f"{source}: '{k}' contains {bad} NaN or infinite value(s); clean the data first")


def make_sparse(rewards: np.ndarray) -> np.ndarray:
    """The ``sparse`` option: -1 wherever the reward is non-zero, 0 elsewhere."""
    return np.where(rewards != 0.0, -1.0, 0.0).astype(np.float32)


def validate(arrays: dict, source: str, horizon: int = 1, sparse: bool = False) -> Dataset:
    """Check raw arrays and turn them into a :class:`Dataset`, or raise one clear :class:`RQLError`.

    Checks: required keys, numeric dtypes, shapes and matching lengths, finite values,
    actions inside [-1, 1] (then clipped to [-1 + 1e-5, 1 - 1e-5] as the reference does),
    and at least one episode with a complete window of ``horizon + 1`` steps.
    ``masks`` defaults to ``1 - terminals`` when absent (every episode end is a true end).
    """
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise RQLError(
            f"{source}: missing key(s) {', '.join(missing)}; a dataset needs "
            f"{', '.join(REQUIRED_KEYS)} (and optionally masks)"
        )
    out = {}
    for k in (*REQUIRED_KEYS, "masks"):
        if k not in arrays:
            continue
        a = np.asarray(arrays[k])
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise RQLError(f"{source}: '{k}' has dtype {a.dtype}; expected numbers")
        out[k] = a
    obs, act = out["observations"], out["actions"]
    if obs.ndim != 2:
        raise RQLError(f"{source}: 'observations' has shape {obs.shape}; expected (N, obs_dim)")
    if act.ndim != 2:
        raise RQLError(f"{source}: 'actions' has shape {act.shape}; expected (N, action_dim)")
    n = obs.shape[0]
    if n == 0:
        raise RQLError(f"{source}: the dataset is empty")
    for k, a in out.items():
        if k in ("rewards", "terminals", "masks"):
            if a.ndim == 2 and a.shape[1] == 1:
                a = a[:, 0]
                out[k] = a
            if a.ndim != 1:
                raise RQLError(f"{source}: '{k}' has shape {a.shape}; expected ({n},)")
        if a.shape[0] != n:
            raise RQLError(
                f"{source}: '{k}' has {a.shape[0]} rows but 'observations' has {n}; all arrays must match"
            )
    check_finite(out, source)
    lo, hi = float(act.min()), float(act.max())
    if lo < -1 - ACTION_RANGE_TOLERANCE or hi > 1 + ACTION_RANGE_TOLERANCE:
        raise RQLError(
            f"{source}: actions span [{lo:.3g}, {hi:.3g}]; they must lie in [-1, 1] (rescale them first)"
        )
    terminals = (out["terminals"] > 0).astype(np.float32)
    terminals[-1] = 1.0  # whatever follows the last stored step is not part of the data
    masks = (out["masks"] > 0).astype(np.float32) if "masks" in out else 1.0 - terminals
    rewards = out["rewards"].astype(np.float32)
    if sparse:
        rewards = make_sparse(rewards)
    ds = Dataset(
        observations=np.ascontiguousarray(obs, dtype=np.float32),
        actions=np.clip(act.astype(np.float32), -1 + ACTION_CLIP_EPS, 1 - ACTION_CLIP_EPS),
        rewards=rewards,
        terminals=terminals,
        masks=masks,
        source=source,
    )
    starts, ends = ds.episode_bounds()
    longest = int((ends - starts + 1).max())
    if longest < horizon + 1:
        raise RQLError(
            f"{source}: the longest episode has {longest} step(s); action chunks of h={horizon} need "
            f"at least one episode of {horizon + 1} steps (lower --agent.horizon or use more data)"
        )
    return ds
