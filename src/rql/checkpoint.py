"""Checkpoints on disk (orbax): atomic, numbered by update step, restorable into a template.

A checkpoint that cannot be read (a truncated file, a disk error) never strands a run: restoring
the newest checkpoint falls back to the newest one that reads, and the damaged folders newer than
it are renamed aside to ``<step>.damaged`` (never deleted) so that the run can go on saving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import shutil
import sys
import warnings

import jax
import numpy as np

from rql.errors import RQLError
from rql.faults import is_no_space, quiet_other_threads


def _ocp():
    # asyncio/concurrent.futures: orbax's writer threads report a failed write (a full disk) again
    # after the save has failed and been reported in one line.
    for name in ("absl", "orbax", "jax._src.distributed", "asyncio", "concurrent.futures"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module="orbax")
    _drop_orbax_unraisables()
    import orbax.checkpoint as ocp

    return ocp


def _drop_orbax_unraisables() -> None:
    """When one array of a damaged checkpoint fails to read, orbax's other read coroutines fail too;
    nobody awaits them, and when they are garbage-collected (at any later moment, in any thread)
    Python prints each as "Exception ignored in: <coroutine ...>" with a traceback. The restore has
    already been reported in one line, so those reports are dropped; every other one is printed."""
    previous = sys.unraisablehook
    if getattr(previous, "rql_drops_orbax", False):
        return

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename:
            return
        previous(unraisable)

    hook.rql_drops_orbax = True
    sys.unraisablehook = hook


@contextlib.contextmanager
def _silenced():
    """Orbax reports failures through absl logging from its own threads; the caller reports them
    in one line instead."""
    import absl.logging

    old = absl.logging.get_verbosity()
    absl.logging.set_verbosity(absl.logging.FATAL)
    try:
        yield
    finally:
        absl.logging.set_verbosity(old)


class CheckpointUnreadable(RQLError):
    pass


class Checkpoints:
    """A folder of checkpoints ``<dir>/<step>/``. Orbax writes each into a temporary folder and
    renames it when complete, so a kill mid-save never leaves a checkpoint that looks whole."""

    def __init__(self, directory: str | pathlib.Path, keep: int | None = None):
        ocp = _ocp()
        self.dir = pathlib.Path(directory).absolute()
        self._ocp = ocp
        self._keep = keep
        self._open()

    def _open(self) -> None:
        options = self._ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True,
                                                     enable_async_checkpointing=False)
        with _silenced():
            self.manager = self._ocp.CheckpointManager(self.dir, options=options)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest(self) -> int | None:
        s = self.steps()
        return s[-1] if s else None

    def save(self, step: int, state) -> None:
        """Save atomically; a full disk becomes one line and leaves no temporary folder behind."""
        try:
            with quiet_other_threads(), _silenced():
                self.manager.save(step, args=self._ocp.args.StandardSave(state), force=True)
                self.manager.wait_until_finished()
        except Exception as e:
            self._settle()  # let orbax's writer threads end before anything else (or the exit) happens
            self.remove_temporaries()
            last = [s for s in self._readable_steps() if s != step]
            last_txt = str(last[-1]) if last else "none"
            if is_no_space(e):
                raise RQLError(f"no space left on device while saving checkpoint {step} in {self.dir.parent}; "
                               f"last complete checkpoint: {last_txt}") from None
            raise RQLError(f"could not save checkpoint {step} in {self.dir} ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:200] if str(e) else ''}); last complete checkpoint: "
                           f"{last_txt}") from None

    def _settle(self) -> None:
        for wait in (self.manager.wait_until_finished, self.manager.close):
            try:
                with _silenced():
                    wait()
            except Exception:
                pass
        try:
            self._open()
        except Exception:
            pass

    def _readable_steps(self) -> list[int]:
        try:
            self.manager.reload()
        except Exception:
            pass
        try:
            return self.steps()
        except Exception:
            return []

    def remove_temporaries(self) -> None:
        """Folders of saves that never completed (orbax names them ``*.orbax-checkpoint-tmp*``)."""
        if self.dir.exists():
            for p in self.dir.iterdir():
                if ".orbax-checkpoint-tmp" in p.name:
                    shutil.rmtree(p, ignore_errors=True)

    def restore(self, step: int, template):
        if step not in self.steps():
            have = ", ".join(map(str, self.steps())) or "none"
            raise RQLError(f"{self.dir}: no checkpoint at step {step} (have: {have})")
        if callable(template):  # a template per step (e.g. the online phase's checkpoints hold more)
            template = template(step)
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            with _silenced():
                restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
            # Plain device arrays, placed like freshly made ones, so compiled code is reused as is.
            return jax.tree_util.tree_map(lambda x: jax.numpy.asarray(np.asarray(x)), restored)
        except Exception as e:  # orbax raises many types for unreadable folders
            raise CheckpointUnreadable(
                f"{self.dir / str(step)}: checkpoint could not be read ({type(e).__name__}); "
                "it may be damaged or from a different configuration"
            ) from None

    def restore_newest(self, template, at_most: int | None = None, log=print):
        """``(step, state)`` of the newest checkpoint (``<= at_most``) that reads, or ``(None, None)``
        when there is none. Unreadable checkpoints newer than a readable one are renamed aside and
        reported in one line each; when no checkpoint reads at all nothing is renamed and the error
        says so (a different configuration fails every checkpoint, a damaged file only some)."""
        candidates = [s for s in reversed(self.steps()) if at_most is None or s <= at_most]
        bad: list[tuple[int, str]] = []
        for s in candidates:
            try:
                state = self.restore(s, template)
            except CheckpointUnreadable as e:
                bad.append((s, str(e)))
                continue
            for b, _ in bad:
                aside = self.dir / f"{b}.damaged"
                n = 1
                while aside.exists():
                    aside = self.dir / f"{b}.damaged-{n}"
                    n += 1
                (self.dir / str(b)).rename(aside)
                log(f"checkpoint {b} in {self.dir.parent} could not be read; moved it aside to {aside.name} "
                    f"and used checkpoint {s}")
            if bad:
                self.close()
                self._open()
            return s, state
        if bad:
            raise RQLError(f"{self.dir}: no checkpoint could be read (tried {', '.join(str(b) for b, _ in bad)}); "
                           "they are damaged or from a different configuration") from None
        return None, None

    def delete_after(self, step: int) -> None:
        """Remove checkpoints newer than ``step`` (when a group resumes from an older common step)."""
        for s in self.steps():
            if s > step:
                self.manager.delete(s)

    def close(self) -> None:
        with _silenced():
            self.manager.close()
