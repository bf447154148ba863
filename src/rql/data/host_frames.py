"""Image datasets larger than the device: the frames stay on the host, each block's windows are gathered there.

A run whose frames do not fit on the device (``--frame-placement host``, or ``auto`` when the free memory
says so) keeps the frames where the file put them, uint8, and puts on the device only what is small (actions,
rewards, masks, episode bounds). The windows a block of updates will sample are known before it runs: which
steps a window starts at is a pure function of the update's sampling key, and the keys of later updates do not
depend on training. So the host

1. draws the starts of the next blocks' windows with the same code and keys as the compiled update
   (:func:`rql.data.device.window_starts`, on the CPU so that it never waits for the accelerator);
2. gathers, per window, the ``h + K`` consecutive frames ``[start - K + 1, start + h]`` that every frame it
   reads lies in (K stacked frames, ``h`` its horizon), and its episode's stored successor frame
   (:class:`WindowFrames`), uint8;
3. copies them in while the previous block trains (a background thread).

Inside the compiled block each update sees those frames through views that take dataset indices
(:func:`frames_view`), so the very same sampler, stacking and successor code runs in both placements, and the
batches, hence the trained parameters, are bit-equal to the device-resident run with the same seed
(``tests/test_pixels.py`` checks it).
"""

from __future__ import annotations

import concurrent.futures as cf
from collections import deque
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rql.data.dataset import Dataset
from rql.data.device import DeviceDataset, _successor_rows, to_device, window_starts

BLOCK_BYTES = 256 * 2**20
"""At most this many bytes of gathered frames per block (the block of updates is shortened to fit)."""
PLAN_BLOCKS = 16
"""Blocks whose window starts are drawn at once."""


class WindowFrames(NamedTuple):
    """The frames of B windows, gathered on the host (uint8, flat frames of ``D = H * W * C``)."""

    rows: jax.Array  # (B, L, D): dataset steps base .. base + L - 1 (clipped to the dataset)
    base: jax.Array  # (B,) int32: the dataset index of rows[:, 0]
    ends: jax.Array  # (B, D): the stored successor frame of the episode holding each window's start


class _Rows:
    """Dataset rows ``observations[idx]`` read from the windows' gathered frames; ``idx`` has the window axis
    first and every index lies in its window's slab."""

    def __init__(self, f: WindowFrames, n: int):
        self.f = f
        self.shape = (n, f.rows.shape[-1])

    def __getitem__(self, idx):
        tail = (1,) * (idx.ndim - 1)
        local = idx - self.f.base.reshape(self.f.base.shape + tail)
        window = jnp.arange(idx.shape[0], dtype=idx.dtype).reshape((-1, *tail))
        return self.f.rows[window, local]


class _Ends:
    """``end_next_observations[e]`` for each window's own episode (the only one its window asks for)."""

    def __init__(self, f: WindowFrames):
        self.f = f

    def __getitem__(self, e):
        return self.f.ends


def frames_view(data: DeviceDataset, f: WindowFrames) -> DeviceDataset:
    """``data`` (frames left out) whose observations and stored successors are read from ``f``."""
    return data._replace(observations=_Rows(f, data.observations.shape[0]), end_next_observations=_Ends(f))


def without_frames(ds: Dataset) -> DeviceDataset:
    """The device dataset of ``ds`` with zero-width observations (their count kept): what stays on the device."""
    n, m = ds.size, len(ds.episode_bounds()[1])
    light = Dataset(observations=np.zeros((n, 1), np.float32), actions=ds.actions, rewards=ds.rewards,
                    terminals=ds.terminals, masks=ds.masks, source=ds.source)
    return to_device(light)._replace(observations=jnp.zeros((n, 0), jnp.uint8),
                                     end_next_observations=jnp.zeros((m, 0), jnp.uint8))


def slab_length(horizon: int, frame_stack: int) -> int:
    return horizon + frame_stack


def bytes_per_update(ds: Dataset, batch_size: int, horizon: int, frame_stack: int, seeds: int) -> int:
    """Bytes of frames gathered for one update of every seed."""
    d = int(np.prod(ds.observations.shape[1:]))
    return seeds * batch_size * (slab_length(horizon, frame_stack) + 1) * d


def block_cap(ds: Dataset, batch_size: int, horizon: int, frame_stack: int, seeds: int) -> int:
    """The most updates per block whose gathered frames stay within :data:`BLOCK_BYTES`."""
    return max(1, BLOCK_BYTES // bytes_per_update(ds, batch_size, horizon, frame_stack, seeds))


class HostFrames:
    """Gathers each block's windows on the host, one block ahead, for ``(group state, data, frames)`` blocks.

    ``block(ts, data)`` runs ``compiled`` (:func:`rql.learner.make_group_block` with ``host=True``) on the
    frames of the block that starts at ``ts``; a state that is not the previous call's output (a resume, a
    restored checkpoint) starts the chain of keys again from its own keys."""

    def __init__(self, ds: Dataset, compiled, batch_size: int, horizon: int, block: int, windows: str,
                 frame_stack: int):
        self.frames = ds.observations.reshape(ds.size, -1)  # a view of the file's array
        self.end_rows = _successor_rows(ds)
        self.end_steps = ds.episode_bounds()[1].astype(np.int64)
        self.compiled, self.block, self.batch_size = compiled, block, batch_size
        self.length = slab_length(horizon, frame_stack)
        self.k = frame_stack
        self._cpu = jax.devices("cpu")[0]
        small = jax.device_put(without_frames(ds), self._cpu)
        steps = block * PLAN_BLOCKS

        def plan(keys):
            def per_seed(key):
                def one(key, _):
                    key, k_sample, _ = jax.random.split(key, 3)
                    return key, window_starts(small, k_sample, batch_size, horizon, windows)

                return jax.lax.scan(one, key, None, length=steps)

            return jax.vmap(per_seed)(keys)

        self._plan = jax.jit(plan)
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rql-frames")
        self._reset()

    def _reset(self) -> None:
        self._keys = None  # the key of every seed at the first update not yet drawn
        self._starts: deque = deque()  # drawn starts, one (S, block, B) array per block
        self._next: cf.Future | None = None  # the next block's frames, being gathered
        self._expect = None  # the key leaf of the last block's output

    def _draw(self) -> None:
        keys, starts = self._plan(jax.device_put(self._keys, self._cpu))
        self._keys = np.asarray(keys)
        starts = np.asarray(starts)  # (S, steps, B)
        s, _, b = starts.shape
        for blk in starts.reshape(s, PLAN_BLOCKS, self.block, b).transpose(1, 0, 2, 3):
            self._starts.append(np.ascontiguousarray(blk))

    def _pop_starts(self) -> np.ndarray:
        if not self._starts:
            self._draw()
        return self._starts.popleft()

    def gather(self, starts: np.ndarray) -> WindowFrames:
        """The frames of the windows that start at ``starts`` (any shape), on the device."""
        base = starts.astype(np.int64) - (self.k - 1)
        idx = np.clip(base[..., None] + np.arange(self.length), 0, len(self.frames) - 1)
        rows = np.take(self.frames, idx.reshape(-1), axis=0).reshape(*idx.shape, -1)
        e = np.minimum(np.searchsorted(self.end_steps, starts), len(self.end_steps) - 1)
        ends = np.take(self.end_rows, e.reshape(-1), axis=0).reshape(*starts.shape, -1)
        return jax.device_put(WindowFrames(rows, base.astype(np.int32), ends))

    def __call__(self, ts, data):
        if self._expect is None or ts["key"] is not self._expect:
            if self._next is not None:
                self._next.cancel()
            self._reset()
            self._keys = np.asarray(ts["key"])
        current = self._next.result() if self._next is not None else self.gather(self._pop_starts())
        upcoming = self._pop_starts()
        out = self.compiled(ts, data, current)
        self._next = self._pool.submit(self.gather, upcoming)
        self._expect = out[0]["key"]
        return out

    def traceable(self, ts, data):
        """The block as a function JAX can trace (zeros for frames): for shapes, e.g. of the metrics."""
        s = jax.tree_util.tree_leaves(ts)[0].shape[0]
        b = self._frames_shape(s)
        zeros = WindowFrames(jnp.zeros(b + (self.length, self.frames.shape[1]), jnp.uint8),
                             jnp.zeros(b, jnp.int32), jnp.zeros(b + (self.frames.shape[1],), jnp.uint8))
        return self.compiled(ts, data, zeros)

    def _frames_shape(self, seeds: int) -> tuple[int, ...]:
        return (seeds, self.block, self.batch_size)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._reset()

