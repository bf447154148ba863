"""The dataset on the device, and window sampling inside compiled code.

Sampling follows the reference: an episode (of at least two steps) is drawn uniformly, then a
start index uniformly among its steps except the last, and the window's ``h + 1`` indices are
``start + i`` clamped to the episode's last step. (The reference draws episodes without
replacement when the batch is smaller than the number of episodes; we draw with replacement so
that sampling stays O(batch) on the device.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents.base import Batch
from rql.data.dataset import Dataset


class DeviceDataset(NamedTuple):
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    masks: jax.Array
    ep_starts: jax.Array  # first index of each usable episode (padded to a capacity)
    ep_ends: jax.Array  # last (inclusive) index of each usable episode (padded)
    num_episodes: jax.Array  # how many entries of ep_starts/ep_ends are real


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    if n <= len(a):
        return a
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), a.dtype)])


def to_device(ds: Dataset, capacity: int | None = None, episode_capacity: int | None = None) -> DeviceDataset:
    """Put a dataset on the device. With capacities, arrays are zero-padded to fixed shapes so that
    datasets of different sizes (shards) reuse one compiled update; padding is never sampled."""
    starts, ends = ds.episode_bounds()
    usable = ends > starts
    starts, ends = starts[usable].astype(np.int32), ends[usable].astype(np.int32)
    n, m = capacity or ds.size, episode_capacity or len(starts)
    if ds.size > n or len(starts) > m:
        raise ValueError("dataset larger than the given capacity")
    return DeviceDataset(
        observations=jnp.asarray(_pad(ds.observations, n)),
        actions=jnp.asarray(_pad(ds.actions, n)),
        rewards=jnp.asarray(_pad(ds.rewards, n)),
        terminals=jnp.asarray(_pad(ds.terminals, n)),
        masks=jnp.asarray(_pad(ds.masks, n)),
        ep_starts=jnp.asarray(_pad(starts, m)),
        ep_ends=jnp.asarray(_pad(ends, m)),
        num_episodes=jnp.asarray(len(starts), jnp.int32),
    )


def window_indices(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int) -> jax.Array:
    """(B, h + 1) dataset indices of B windows."""
    k_ep, k_start = jax.random.split(key)
    ep = jax.random.randint(k_ep, (batch_size,), 0, data.num_episodes)
    first, last = data.ep_starts[ep], data.ep_ends[ep]
    start = jax.random.randint(k_start, (batch_size,), first, last)  # last excluded
    idx = start[:, None] + jnp.arange(horizon + 1, dtype=start.dtype)[None, :]
    return jnp.minimum(idx, last[:, None])


def sample_windows(data: DeviceDataset, key: jax.Array, batch_size: int, horizon: int) -> Batch:
    idx = window_indices(data, key, batch_size, horizon)
    return Batch(
        observations=data.observations[idx],
        actions=data.actions[idx],
        rewards=data.rewards[idx],
        terminals=data.terminals[idx],
        masks=data.masks[idx],
    )
