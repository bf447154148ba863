"""Datasets given as a folder of ``.npz`` shards (OGBench's 100M-transition sets come this way).

Only a few shards are ever in memory: the one being trained on and the next, which a background
thread loads, validates and puts on the device while the current one is used. Every shard is
padded to one capacity so the compiled update is reused. Which shard serves update ``step`` is a
pure function of ``(seed, step)`` -- each pass over the folder is a fresh permutation -- so runs
are reproducible and resume continues with the same order.
"""

from __future__ import annotations

import concurrent.futures as cf
import pathlib
import threading
import zipfile
from typing import Callable

import numpy as np

from rql.data.dataset import Dataset
from rql.data.device import DeviceDataset, to_device
from rql.errors import RQLError


def shard_files(folder: str | pathlib.Path) -> list[pathlib.Path]:
    """The training shards of a folder (``*-val.npz`` files are validation data and skipped)."""
    folder = pathlib.Path(folder).expanduser()
    files = sorted(p for p in folder.glob("*.npz") if not p.name.endswith("-val.npz"))
    if not files:
        raise RQLError(f"{folder}: no .npz shards in this folder")
    return files


def _npy_shape(path: pathlib.Path, key: str) -> tuple[int, ...]:
    """Shape of one array of an .npz from its header, without reading the data."""
    try:
        with zipfile.ZipFile(path) as z, z.open(f"{key}.npy") as f:
            fmt = np.lib.format
            major, _ = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, _, _ = read_header(f)  # header only
            return tuple(shape)
    except (KeyError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise RQLError(f"{path}: not a readable dataset shard ({type(e).__name__}: missing '{key}' or corrupt)") from None


def _count_episodes(path: pathlib.Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as f:
            return int(np.count_nonzero(f["terminals"])) + 1
    except Exception as e:  # any unreadable shard is reported the same way
        raise RQLError(f"{path}: not a readable dataset shard ({type(e).__name__})") from None


def shard_index(step: int, num_shards: int, shard_every: int, seed: int) -> int:
    k = step // shard_every
    epoch, pos = divmod(k, num_shards)
    return int(np.random.default_rng([seed, epoch]).permutation(num_shards)[pos])


class ShardedData:
    """``data(step)`` gives the device dataset for update ``step``; the next shard is prefetched."""

    def __init__(self, folder, load: Callable[[pathlib.Path], Dataset], seed: int, shard_every: int):
        self.files = shard_files(folder)
        self.load, self.seed, self.shard_every = load, seed, shard_every
        self.capacity = max(_npy_shape(p, "observations")[0] for p in self.files)
        self.episode_capacity = max(_count_episodes(p) for p in self.files)
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rql-shard")
        self._lock = threading.Lock()
        self._held: dict[int, cf.Future] = {}  # shard index -> future of its DeviceDataset
        self.peak_resident = 0
        self.loads: list[int] = []

    def _prepare(self, idx: int) -> DeviceDataset:
        self.loads.append(idx)
        ds = self.load(self.files[idx])
        return to_device(ds, self.capacity, self.episode_capacity)

    def _request(self, idx: int) -> cf.Future:
        with self._lock:
            if idx not in self._held:
                self._held[idx] = self._pool.submit(self._prepare, idx)
            self.peak_resident = max(self.peak_resident, len(self._held))
            return self._held[idx]

    def first(self) -> Dataset:
        """The first shard's dataset (for dimensions and the agent's shapes)."""
        return self.load(self.files[0])

    def data(self, step: int) -> DeviceDataset:
        idx = shard_index(step, len(self.files), self.shard_every, self.seed)
        nxt = shard_index(step + self.shard_every, len(self.files), self.shard_every, self.seed)
        with self._lock:  # let go of everything but the current and the next shard
            for k in [k for k in self._held if k not in (idx, nxt)]:
                del self._held[k]
        current = self._request(idx).result()
        self._request(nxt)
        return current

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._held.clear()
