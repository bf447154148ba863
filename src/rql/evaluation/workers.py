"""Evaluation environments stepped in other processes, side by side with the main one.

Stepping an OGBench environment is single-threaded Python and MuJoCo (about 2 ms a step on a
laptop core, 90% of an evaluation's time), so an evaluation can only use more cores with more
processes. A worker (``python -m rql.env_workers``) holds some of an :class:`rql.evaluation.EnvPool`'s
environments (a :class:`~rql.evaluation.local.LocalEnvs` of its own, with its own shared compiled
model) and plays whole action chunks open loop: one message each way per chunk, not per step. It
imports neither JAX nor the agents. :class:`Worker` is the main process's end of one.

Messages are length-prefixed frames of a JSON header and raw array bytes (read back with
``np.frombuffer`` and a numeric dtype: nothing is ever unpickled). A worker ignores Ctrl-C (the main
process decides how to stop) and ends when its input closes, so it never outlives the run.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

from rql.evaluation.local import LocalEnvs

_LEN = struct.Struct("<II")  # header bytes, payload bytes
_KINDS = set("fiub")  # numeric dtypes only


def send(f, header: dict, arrays: dict[str, np.ndarray] | None = None) -> None:
    arrays = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    meta = [[k, v.dtype.str, list(v.shape)] for k, v in arrays.items()]
    head = json.dumps({**header, "arrays": meta}).encode()
    payload = b"".join(v.tobytes() for v in arrays.values())
    f.write(_LEN.pack(len(head), len(payload)) + head + payload)
    f.flush()


def _read(f, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        part = f.read(n - len(out))
        if not part:
            raise EOFError
        out += part
    return bytes(out)


def recv(f) -> tuple[dict, dict[str, np.ndarray]]:
    nh, npay = _LEN.unpack(_read(f, _LEN.size))
    header = json.loads(_read(f, nh))
    payload = _read(f, npay)
    arrays, off = {}, 0
    for name, dtype, shape in header.pop("arrays"):
        dt = np.dtype(dtype)
        if dt.kind not in _KINDS:
            raise ValueError(f"unexpected array type {dtype}")
        count = int(np.prod(shape, dtype=np.int64))
        arrays[name] = np.frombuffer(payload, dt, count, off).reshape(shape).copy()
        off += count * dt.itemsize
    return header, arrays


def play_chunk(env, chunk) -> tuple[np.ndarray, list[float], bool, float]:
    """Execute a chunk's actions open loop until it is used up or the episode ends: the last
    observation, the rewards of the steps taken, whether the episode ended and its success."""
    rewards: list[float] = []
    o = None
    for a in chunk:
        o, r, terminated, truncated, info = env.step(a)
        rewards.append(float(r))
        if terminated or truncated:
            return o, rewards, True, float(info.get("success", 0.0))
    return o, rewards, False, 0.0


def pack_play(results, horizon: int) -> dict[str, np.ndarray]:
    rewards = np.zeros((len(results), horizon))
    for j, (_, rs, _, _) in enumerate(results):
        rewards[j, :len(rs)] = rs
    return {"obs": np.stack([np.asarray(r[0]) for r in results]),
            "rewards": rewards,
            "steps": np.array([len(r[1]) for r in results], np.int64),
            "done": np.array([r[2] for r in results], bool),
            "success": np.array([r[3] for r in results], np.float64)}


def unpack_play(arrays: dict) -> list:
    return [(arrays["obs"][j], list(arrays["rewards"][j, :arrays["steps"][j]]), bool(arrays["done"][j]),
             float(arrays["success"][j])) for j in range(len(arrays["steps"]))]


def release_free_memory() -> None:
    """Hand the memory freed after making environments (MJCF parsing, model compilation) back to
    the system: glibc keeps it otherwise (about 100 MB an OGBench environment). No-op elsewhere."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def worker_main() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a dependency prints goes to the log, not into the messages
    inp = sys.stdin.buffer
    import warnings

    warnings.filterwarnings("ignore")
    pool = None
    while True:
        try:
            header, arrays = recv(inp)
        except EOFError:
            break
        cmd = header["cmd"]
        try:
            if cmd == "close":
                break
            if cmd == "make":
                from functools import partial

                from rql.data.loading import make_env

                if pool is None or pool.task != header["task"]:
                    kwargs = {"disable_env_checker": True, **header.get("env_kwargs", {})}
                    pool = LocalEnvs(header["task"], header["size"], header["share_model"],
                                     make=partial(make_env, **kwargs), lean=bool(header.get("lean", True)))
                t = time.perf_counter()
                pool.take(header["count"])
                release_free_memory()
                send(out, {"made": len(pool.envs), "seconds": time.perf_counter() - t})
            elif cmd == "reset":
                t = time.perf_counter()
                obs = [pool.envs[s].reset(seed=seed)[0] for s, seed in zip(header["slots"], header["seeds"])]
                send(out, {"seconds": time.perf_counter() - t}, {"obs": np.stack([np.asarray(o) for o in obs])})
            elif cmd == "play":
                t = time.perf_counter()
                chunks = arrays["chunks"]
                results = [play_chunk(pool.envs[s], chunks[j]) for j, s in enumerate(header["slots"])]
                send(out, {"seconds": time.perf_counter() - t}, pack_play(results, chunks.shape[1]))
            else:
                raise ValueError(f"unknown command {cmd!r}")
        except Exception as e:  # noqa: BLE001  (reported to the main process as one line)
            from rql.errors import RQLError

            text = str(e) if isinstance(e, RQLError) else f"{type(e).__name__}: {e}"
            send(out, {"error": (text.splitlines() or [type(e).__name__])[0]})
    if pool is not None:
        pool.close()


class Worker:
    """One worker process, started at once; :meth:`ask` and :meth:`answer` are one request split
    so that several workers (and the main process) work at the same time."""

    def __init__(self, task: str, size: int, share_model: bool, env_kwargs: dict, lean: bool = True):
        from rql.errors import RQLError

        self.log = tempfile.TemporaryFile(mode="w+b")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "rql.env_workers"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=self.log, env=env)
        except OSError as e:
            raise RQLError(f"could not start an evaluation worker process ({e}); give --eval-workers 0") from None
        self.init = {"task": task, "size": size, "share_model": share_model, "env_kwargs": env_kwargs,
                     "lean": lean}
        self.made = 0  # environments it holds
        self.asked = 0  # environments asked for (answered when an evaluation first needs them)

    def ask(self, cmd: str, header: dict | None = None, arrays: dict | None = None) -> None:
        try:
            init = self.init if cmd == "make" else {}  # what to make, only with the request to make it
            send(self.proc.stdin, {"cmd": cmd, **init, **(header or {})}, arrays)
        except (BrokenPipeError, OSError):
            self._failed()

    def answer(self) -> tuple[dict, dict]:
        try:
            header, arrays = recv(self.proc.stdout)
        except (EOFError, OSError, ValueError):
            self._failed()
        if "error" in header:
            from rql.errors import RQLError

            raise RQLError(f"an evaluation worker failed: {header['error']}")
        return header, arrays

    def _failed(self):
        from rql.errors import RQLError

        self.proc.poll()
        self.log.seek(0)
        lines = [ln for ln in self.log.read().decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {self.proc.returncode}"
        raise RQLError(f"an evaluation worker process stopped ({last}); give --eval-workers 0 to step "
                       "the environments in the main process")

    def close(self) -> None:
        try:
            send(self.proc.stdin, {"cmd": "close"})
            self.proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
