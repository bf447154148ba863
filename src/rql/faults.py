"""What keeps a run directory whole when things go wrong: one writer at a time (a kernel lock),
a polite stop on SIGTERM/SIGINT, and a clear line when the disk fills up."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
import sys
import threading

from rql.errors import RQLError

LOCK_NAME = ".lock"


class _MainThreadStderr:
    """``sys.stderr`` that drops what other threads write. A checkpoint write that fails part way
    (a full disk) leaves orbax's storage threads finishing their own writes after orbax has closed
    its event loop, and each one prints a traceback ('Event loop is closed') from its own thread;
    the main thread reports the failure in one line instead."""

    def __init__(self, real):
        self.real = real

    def write(self, text):
        if threading.current_thread() is threading.main_thread():
            return self.real.write(text)
        return len(text)

    def __getattr__(self, name):
        return getattr(self.real, name)


class quiet_other_threads:
    """Within the block, only the main thread's writes to ``sys.stderr`` show. A block that raises
    leaves the filter in place: the threads of a failed write may go on printing until the process
    ends with its one-line error."""

    def __enter__(self):
        self._real = sys.stderr
        if not isinstance(sys.stderr, _MainThreadStderr):
            sys.stderr = _MainThreadStderr(sys.stderr)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            sys.stderr = self._real
        return False


class Stopped(RQLError):
    """Training stopped by a signal after saving; the exit status is the shell's ``128 + signal``."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class RunLock:
    """An exclusive ``flock`` on ``<run_dir>/.lock`` held for the life of the writing process.

    The kernel drops the lock when the process dies, however it dies, so no stale lock survives a
    ``kill -9``. The file holds the holder's pid so that a second writer can name it."""

    def __init__(self, run_dir: str | pathlib.Path):
        import fcntl

        self.path = pathlib.Path(run_dir) / LOCK_NAME
        self._f = open(self.path, "a+")
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._f.seek(0)
            pid = self._f.read().strip() or "unknown"
            self._f.close()
            raise RQLError(
                f"{run_dir} is being written by another process (pid {pid}); wait for it to end or stop it "
                "before writing this run again"
            ) from None
        self._f.seek(0)
        self._f.truncate()
        self._f.write(f"{os.getpid()}\n")
        self._f.flush()

    def release(self) -> None:
        if self._f is not None and not self._f.closed:
            self._f.close()  # closing the descriptor releases the lock


def holder_pid(run_dir: str | pathlib.Path) -> int | None:
    """The pid holding the run's lock, or None when no process writes it."""
    import fcntl

    path = pathlib.Path(run_dir) / LOCK_NAME
    if not path.exists():
        return None
    with open(path) as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            txt = f.read().strip()
            return int(txt) if txt.isdigit() else -1
        return None


def check_writable(run_dir: pathlib.Path) -> None:
    """Make the run directory and prove it takes a file, before any work is done."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-test-{os.getpid()}"
        with open(probe, "w") as f:
            f.write("ok")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        raise RQLError(f"{run_dir}: the run directory is not writable ({e.strerror or e}); choose another "
                       "--run-dir or fix its permissions/free space") from None


def is_no_space(e: BaseException) -> bool:
    """True for a full disk, whether raised as OSError or wrapped in a library's error text."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(e) or "RESOURCE_EXHAUSTED" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


class StopSignals:
    """While active, SIGTERM and SIGINT only set ``requested`` (the runner finishes its compiled block,
    saves and stops); a second signal ends the process at once. Outside the main thread (where Python
    cannot install handlers) it does nothing."""

    def __init__(self):
        self.requested: int | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            sys.stderr.write(f"\nerror: second {signal.Signals(signum).name}; stopping now without saving\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        self.requested = signum
        sys.stderr.write(f"\n{signal.Signals(signum).name} received: finishing the current block and saving "
                         "(send it again to stop at once)\n")
        sys.stderr.flush()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                try:
                    self._old[s] = signal.signal(s, self._handle)
                except (ValueError, OSError):
                    pass
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            try:
                signal.signal(s, h)
            except (ValueError, OSError):
                pass
        self._old.clear()
        return False
