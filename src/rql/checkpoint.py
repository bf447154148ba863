"""Checkpoints on disk (orbax): atomic, numbered by update step, restorable into a template."""

from __future__ import annotations

import logging
import pathlib
import warnings

import jax
import numpy as np

from rql.errors import RQLError


def _ocp():
    logging.getLogger("absl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="orbax")
    import orbax.checkpoint as ocp

    return ocp


class Checkpoints:
    """A folder of checkpoints ``<dir>/<step>/``. Orbax writes each into a temporary folder and
    renames it when complete, so a kill mid-save never leaves a checkpoint that looks whole."""

    def __init__(self, directory: str | pathlib.Path, keep: int | None = None):
        ocp = _ocp()
        self.dir = pathlib.Path(directory).absolute()
        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.dir, options=options)

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest(self) -> int | None:
        s = self.steps()
        return s[-1] if s else None

    def save(self, step: int, state) -> None:
        self.manager.save(step, args=self._ocp.args.StandardSave(state), force=True)
        self.manager.wait_until_finished()

    def restore(self, step: int, template):
        if step not in self.steps():
            have = ", ".join(map(str, self.steps())) or "none"
            raise RQLError(f"{self.dir}: no checkpoint at step {step} (have: {have})")
        abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), template)
        try:
            restored = self.manager.restore(step, args=self._ocp.args.StandardRestore(abstract))
            # Plain device arrays, placed like freshly made ones, so compiled code is reused as is.
            return jax.tree_util.tree_map(lambda x: jax.numpy.asarray(np.asarray(x)), restored)
        except Exception as e:  # orbax raises many types for unreadable folders
            raise RQLError(
                f"{self.dir / str(step)}: checkpoint could not be read ({type(e).__name__}); "
                "it may be damaged or from a different configuration"
            ) from None

    def close(self) -> None:
        self.manager.close()
