"""The one in-memory dataset format every loader produces, and its validation.

A :class:`Dataset` holds transitions stored episode after episode:

- ``observations`` (N, obs_dim) float32, or images (N, H, W, C) uint8 (kept uint8: never a float
  copy; turned into floats inside the compiled update, see ``docs/pixels.md``)
- ``actions``      (N, action_dim) float32, inside [-1, 1]
- ``rewards``      (N,) float32
- ``terminals``    (N,) float32, 1.0 on the last transition of every episode (an episode
  boundary, whether the episode ended by time-out or by termination)
- ``masks``        (N,) float32, 0.0 where the value must not bootstrap past this transition
  (a true termination, e.g. task success in OGBench single-task data), else 1.0

and, where the source has them, the successor states of the episodes' last transitions:

- ``end_next_observations`` (E, obs_dim) float32 or None: row ``e`` is the state that follows the
  last transition of episode ``e`` (an OGBench file's final observation, a plain file's
  ``next_observations`` at the episode's end, a Minari episode's last observation). Inside an
  episode the successor of step ``i`` is ``observations[i + 1]``, so one row per episode is all the
  QAM suite's windows need beyond the observations; None where the source has none (then an
  episode's last step is its own successor, as the RQL reference's clamped windows have it).

How windows are drawn from this is the agent's ``windows`` field (see :mod:`rql.data.device`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rql.errors import RQLError

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
# Successor states: ``next_observations`` (N, obs_dim) as plain files and OGBench's regular layout
# have them, or ``end_next_observations`` (E, obs_dim), one row per episode, as the loaders here make.
SUCCESSOR_KEYS = ("next_observations", "end_next_observations")
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
    end_next_observations: np.ndarray | None = None

    def successors_or_own(self) -> np.ndarray:
        """(E, obs_dim): the successor state of every episode's last step, that step's own
        observation where the source had none."""
        if self.end_next_observations is not None:
            return self.end_next_observations
        return self.observations[self.episode_bounds()[1]]

    @property
    def size(self) -> int:
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        """Numbers per observation (for images ``H * W * C``: the agent sees them flat)."""
        return int(np.prod(self.observations.shape[1:]))

    @property
    def image_shape(self) -> tuple[int, int, int] | None:
        """``(H, W, C)`` of image observations, None for state vectors."""
        return tuple(int(d) for d in self.observations.shape[1:]) if self.observations.ndim == 4 else None

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
    ``next_observations`` (N, obs_dim), or ``end_next_observations`` (one row per episode), when
    present, give the successor state of every episode's last step (kept as one row per episode).
    """
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise RQLError(
            f"{source}: missing key(s) {', '.join(missing)}; a dataset needs "
            f"{', '.join(REQUIRED_KEYS)} (and optionally masks)"
        )
    out = {}
    for k in (*REQUIRED_KEYS, "masks", *SUCCESSOR_KEYS):
        if k not in arrays:
            continue
        a = np.asarray(arrays[k])
        if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
            raise RQLError(f"{source}: '{k}' has dtype {a.dtype}; expected numbers")
        out[k] = a
    obs, act = out["observations"], out["actions"]
    check_observations(obs, source)
    if act.ndim != 2:
        raise RQLError(f"{source}: 'actions' has shape {act.shape}; expected (N, action_dim)")
    n = obs.shape[0]
    if n == 0:
        raise RQLError(f"{source}: the dataset is empty")
    for k in SUCCESSOR_KEYS:
        if k in out and out[k].shape[1:] != obs.shape[1:]:
            raise RQLError(f"{source}: '{k}' has shape {out[k].shape}; expected (rows, {', '.join(map(str, obs.shape[1:]))}) "
                           "like 'observations'")
    for k, a in out.items():
        if k == "end_next_observations":
            continue  # one row per episode, checked below
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
        observations=np.ascontiguousarray(obs, dtype=obs_dtype(obs)),
        actions=np.clip(act.astype(np.float32), -1 + ACTION_CLIP_EPS, 1 - ACTION_CLIP_EPS),
        rewards=rewards,
        terminals=terminals,
        masks=masks,
        source=source,
    )
    starts, ends = ds.episode_bounds()
    ds.end_next_observations = _end_successors(out, ends, source)
    longest = int((ends - starts + 1).max())
    if longest < horizon + 1:
        raise RQLError(
            f"{source}: the longest episode has {longest} step(s); action chunks of h={horizon} need "
            f"at least one episode of {horizon + 1} steps (lower --agent.horizon or use more data)"
        )
    return ds


def _end_successors(out: dict, ends: np.ndarray, source: str) -> np.ndarray | None:
    """The successor state of each episode's last step from ``next_observations`` or
    ``end_next_observations``; None when the source has neither."""
    dtype = obs_dtype(out["observations"])
    if "next_observations" in out:
        return np.ascontiguousarray(out["next_observations"][ends], dtype=dtype)
    if "end_next_observations" in out:
        succ = out["end_next_observations"]
        if len(succ) == len(ends) - 1:
            # The last stored step ended no episode (the data stops there): it has no successor stored.
            succ = np.concatenate([succ, out["observations"][ends[-1:]]])
        if len(succ) != len(ends):
            raise RQLError(f"{source}: 'end_next_observations' has {len(succ)} rows for {len(ends)} episodes; "
                           "it needs one row per episode")
        return np.ascontiguousarray(succ, dtype=dtype)
    return None


def obs_dtype(obs: np.ndarray):
    """The dtype observations are kept in: uint8 for images (no float copy), float32 for state vectors."""
    return np.uint8 if obs.ndim == 4 else np.float32


def check_observations(obs: np.ndarray, source: str) -> None:
    """State vectors (N, obs_dim) of numbers, or images (N, H, W, C) of uint8; else one clear error."""
    if obs.ndim == 4:
        if obs.dtype != np.uint8:
            raise RQLError(f"{source}: 'observations' are images {obs.shape} of dtype {obs.dtype}; image observations "
                           "must be uint8 (0..255), as OGBench's visual datasets store them")
        if not 1 <= obs.shape[3] <= 4 or min(obs.shape[1:3]) < 8:
            raise RQLError(f"{source}: 'observations' have shape {obs.shape}; images must be (N, H, W, C) with "
                           "C in 1..4 channels last and H, W at least 8")
        return
    if obs.ndim != 2:
        raise RQLError(f"{source}: 'observations' has shape {obs.shape}; expected (N, obs_dim) state vectors "
                       "or (N, H, W, C) uint8 images")
