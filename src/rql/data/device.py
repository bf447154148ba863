"""The dataset on the device, and window sampling inside compiled code.

Two window semantics (the agent's ``windows`` field, see :mod:`rql.agents.base`):

``rql``, the official RQL's: an episode (of at least two steps) is drawn uniformly, then a start
index uniformly among its steps except the last, and the window's ``h + 1`` indices are
``start + i`` clamped to the episode's last step. (The reference draws episodes without
replacement when the batch is smaller than the number of episodes; we draw with replacement so
that sampling stays O(batch) on the device.)

``suite``, the QAM suite's ``Dataset.sample_sequence``: a start drawn uniformly among the first
``size - h + 1`` steps, the ``h`` steps ``start + i`` as stored (a window may run past an episode
end into the next one: those steps are not valid), ``terminals`` their running maximum, ``valid``
steps those before the first episode end, ``masks`` the running minimum over the valid steps, and
the bootstrap state the successor of the last valid step: ``observations[k + 1]`` inside an
episode, the episode's stored successor (``end_next_observations``, one row per episode) at its
end. Window index ``h`` carries that state (see :class:`rql.agents.base.Batch`).

Image observations are stored uint8 and flat (``(N, H * W * C)``); with a :class:`rql.pixels.Pixels`
(``px``) the windows' observations are stacked frames (never across an episode start) gathered here,
still uint8 (see :mod:`rql.pixels`). Without one (state observations) the code is as it always was.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents.base import Batch
from rql.data.dataset import Dataset
from rql.pixels import Pixels, stacked, stacked_successor

_NO_END = np.iinfo(np.int32).max  # padding of ``end_steps`` (sorts after every real index)


class DeviceDataset(NamedTuple):
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    masks: jax.Array
    ep_starts: jax.Array  # first index of each usable episode (padded to a capacity)
    ep_ends: jax.Array  # last (inclusive) index of each usable episode (padded)
    num_episodes: jax.Array  # how many entries of ep_starts/ep_ends are real
    size: jax.Array  # steps stored (the rest of the arrays is padding)
    end_steps: jax.Array  # last index of every episode, ascending, padded with int32 max
    end_next_observations: jax.Array  # (episodes, obs_dim): the successor of each episode's last step


def _pad(a: np.ndarray, n: int, fill=0) -> np.ndarray:
    if n <= len(a):
        return a
    return np.concatenate([a, np.full((n - len(a), *a.shape[1:]), fill, a.dtype)])


def to_device(ds: Dataset, capacity: int | None = None, episode_capacity: int | None = None) -> DeviceDataset:
    """Put a dataset on the device. With capacities, arrays are zero-padded to fixed shapes so that
    datasets of different sizes (shards) reuse one compiled update; padding is never sampled."""
    all_starts, all_ends = ds.episode_bounds()
    usable = all_ends > all_starts
    starts, ends = all_starts[usable].astype(np.int32), all_ends[usable].astype(np.int32)
    n, m = capacity or ds.size, episode_capacity or len(all_ends)
    if ds.size > n or len(all_ends) > m:
        raise ValueError("dataset larger than the given capacity")
    flat = ds.observations.reshape(ds.size, -1)  # images (N, H, W, C) seen flat: a view, no copy
    return DeviceDataset(
        observations=jnp.asarray(_pad(flat, n)),
        actions=jnp.asarray(_pad(ds.actions, n)),
        rewards=jnp.asarray(_pad(ds.rewards, n)),
        terminals=jnp.asarray(_pad(ds.terminals, n)),
        masks=jnp.asarray(_pad(ds.masks, n)),
        ep_starts=jnp.asarray(_pad(starts, m)),
        ep_ends=jnp.asarray(_pad(ends, m)),
        num_episodes=jnp.asarray(len(starts), jnp.int32),
        size=jnp.asarray(ds.size, jnp.int32),
        end_steps=jnp.asarray(_pad(all_ends.astype(np.int32), m, _NO_END)),
        end_next_observations=jnp.asarray(_pad(_successor_rows(ds), m)),
    )


def _successor_rows(ds: Dataset) -> np.ndarray:
    rows = ds.successors_or_own()
    if ds.image_shape is not None:
        return np.ascontiguousarray(rows.reshape(len(rows), -1))
    return rows.astype(np.float32)


# ----------------------------------------------------------------------------- rql windows


def rql_starts(data: DeviceDataset, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """``(start, last)`` (B,) each: the drawn window starts (``rql`` semantics) and their episodes' last steps."""
    k_ep, k_start = jax.random.split(key)
    ep = jax.random.randint(k_ep, (batch_size,), 0, data.num_episodes)
    first, last = data.ep_starts[ep], data.ep_ends[ep]
    start = jax.random.randint(k_start, (batch_size,), first, last)  # last excluded
    return start, last


def window_indices(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int) -> jax.Array:
    """(B, h + 1) dataset indices of B windows (``rql`` semantics)."""
    start, last = rql_starts(data, key, batch_size)
    idx = start[:, None] + jnp.arange(horizon + 1, dtype=start.dtype)[None, :]
    return jnp.minimum(idx, last[:, None])


def rql_batch_at(data: DeviceDataset, starts: jax.Array, horizon: int, px: Pixels | None = None) -> Batch:
    """The ``rql`` windows that start at ``starts`` (B,): indices clamped to each start's episode end
    (what the ``rql`` sampler gathers once it has drawn its starts)."""
    last = data.end_steps[jnp.minimum(jnp.searchsorted(data.end_steps, starts), data.end_steps.shape[0] - 1)]
    idx = jnp.minimum(starts[:, None] + jnp.arange(horizon + 1, dtype=starts.dtype)[None, :], last[:, None])
    return _gather(data, idx, px)


def _gather(data: DeviceDataset, idx: jax.Array, px: Pixels | None = None) -> Batch:
    return Batch(
        observations=data.observations[idx] if px is None else stacked(data.observations, data.end_steps, idx, px),
        actions=data.actions[idx],
        rewards=data.rewards[idx],
        terminals=data.terminals[idx],
        masks=data.masks[idx],
    )


def _rql_windows(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int,
                 px: Pixels | None = None) -> Batch:
    return _gather(data, window_indices(data, key, batch_size, horizon), px)


# ----------------------------------------------------------------------------- suite windows


def suite_starts(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int) -> jax.Array:
    """(B,) window starts uniform over the first ``size - h + 1`` steps (``suite`` semantics)."""
    return jax.random.randint(key, (batch_size,), 0, data.size - horizon + 1)


def suite_window(steps: Batch, successor_of, idx: jax.Array) -> Batch:
    """The ``suite`` window of each row of ``idx`` (B, h) (consecutive indices as stored).

    ``steps`` holds the stored per-step arrays gathered at ``idx`` ((B, h, ...)) and
    ``successor_of(k, is_end)`` gives the successor state of steps ``k`` (``is_end``: ``k`` is an
    episode's last step). Shared by the offline data and the online replay buffer, which store steps
    differently."""
    terminals, masks = steps.terminals, steps.masks
    running_end = jax.lax.cummax(terminals, axis=1)
    valid = jnp.concatenate([jnp.ones_like(running_end[:, :1]), 1.0 - running_end[:, :-1]], axis=1)
    run_mask = jax.lax.cummin(jnp.where(valid > 0, masks, jnp.inf), axis=1)
    last_valid = jnp.sum(valid, axis=1).astype(idx.dtype) - 1
    k = jnp.take_along_axis(idx, last_valid[:, None], axis=1)[:, 0]
    k_is_end = jnp.take_along_axis(terminals, last_valid[:, None], axis=1)[:, 0] > 0
    succ = successor_of(k, k_is_end)
    return Batch(
        observations=jnp.concatenate([steps.observations, succ[:, None]], axis=1),
        actions=jnp.concatenate([steps.actions, steps.actions[:, -1:]], axis=1),
        rewards=jnp.concatenate([steps.rewards, jnp.zeros_like(steps.rewards[:, :1])], axis=1),
        terminals=jnp.concatenate([running_end, running_end[:, -1:]], axis=1),
        masks=jnp.concatenate([run_mask, run_mask[:, -1:]], axis=1),
    )


def successor_in(observations, end_steps, end_next_observations, k: jax.Array, is_end: jax.Array) -> jax.Array:
    """The state after step ``k``: ``observations[k + 1]``, or at an episode's end the stored successor
    of the episode whose last step is ``k`` (``end_steps`` ascending)."""
    e = jnp.minimum(jnp.searchsorted(end_steps, k), end_steps.shape[0] - 1)
    inside = observations[jnp.minimum(k + 1, observations.shape[0] - 1)]
    return jnp.where(is_end[:, None], end_next_observations[e], inside)


def successor(data: DeviceDataset, k: jax.Array, is_end: jax.Array) -> jax.Array:
    return successor_in(data.observations, data.end_steps, data.end_next_observations, k, is_end)


def suite_batch_at(data: DeviceDataset, starts: jax.Array, horizon: int, px: Pixels | None = None) -> Batch:
    """The ``suite`` windows that start at ``starts`` (B,)."""
    idx = starts[:, None] + jnp.arange(horizon, dtype=starts.dtype)[None, :]
    if px is None:
        obs, succ = data.observations[idx], (lambda k, end: successor(data, k, end))
    else:
        obs = stacked(data.observations, data.end_steps, idx, px)
        succ = lambda k, end: stacked_successor(  # noqa: E731
            data.observations, data.end_steps, data.end_next_observations, k, end, px)
    steps = Batch(obs, data.actions[idx], data.rewards[idx], data.terminals[idx], data.masks[idx])
    return suite_window(steps, succ, idx)


def _suite_windows(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int,
                   px: Pixels | None = None) -> Batch:
    return suite_batch_at(data, suite_starts(data, key, batch_size, horizon), horizon, px)


# ----------------------------------------------------------------------------- either


def window_starts(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int, windows: str = "rql") -> jax.Array:
    """(B,) the first dataset index of each window :func:`sample_windows` draws from ``key`` (the same
    draws): every frame a window reads lies in ``[start - K + 1, start + h]`` (K stacked frames), and a
    ``suite`` window's stored successor is that of the episode holding ``start``."""
    if windows == "suite":
        return suite_starts(data, key, batch_size, horizon)
    return rql_starts(data, key, batch_size)[0]


def sample_windows(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int,
                   windows: str = "rql", px: Pixels | None = None) -> Batch:
    """B windows under the named semantics (``rql`` or ``suite``); image windows stacked as ``px`` says."""
    if windows == "suite":
        return _suite_windows(data, key, batch_size, horizon, px)
    if windows != "rql":
        raise ValueError(f"unknown window semantics {windows!r}")
    return _rql_windows(data, key, batch_size, horizon, px)
