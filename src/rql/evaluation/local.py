"""The evaluation environments of one task that one process makes and holds.

An evaluation pool (:class:`rql.evaluation.pool.EnvPool`) keeps its environments here in the main
process, and so does each worker process (:mod:`rql.evaluation.workers`) for its share: both make
them the same way, the first one with its own compiled model, the others sharing it
(:class:`~rql.evaluation.shared_model.SharedModelEnv`), all with :mod:`rql.lean_ogbench`'s step
hooks unless told otherwise.
"""

from __future__ import annotations

from typing import Callable

from rql.evaluation.shared_model import SharedModelEnv


class LocalEnvs:
    """At most ``size`` environments of ``task``, made by ``make(task)`` when first needed
    (:meth:`take`). With ``share_model`` the environments of OGBench's manipulation tasks after the
    first reuse its compiled MuJoCo model and inverse-kinematics controller, each with its own
    ``MjData`` (see :class:`SharedModelEnv`); others are made separately. With ``lean`` (the
    default) OGBench's manipulation environments step through :mod:`rql.lean_ogbench`."""

    def __init__(self, task: str, size: int, share_model: bool, make: Callable, lean: bool = True):
        if size < 1:
            raise ValueError("an environment pool holds at least one environment")
        self.task, self.size, self.share_model, self._make = task, size, share_model, make
        self.lean = lean
        self.envs: list = []

    def first(self):
        """The first environment (made now if needed), e.g. to check data against the task."""
        return self.take(1)[0]

    def take(self, n: int) -> list:
        """The first ``min(n, size)`` environments of this process, making the missing ones."""
        n = max(1, min(n, self.size))
        while len(self.envs) < n:
            template = self.envs[0] if self.envs else None
            if self.share_model and isinstance(template, SharedModelEnv):
                self.envs.append(self._leaned(template.twin()))
                continue
            env = self._make(self.task)
            if self.share_model and SharedModelEnv.supports(env):
                env = SharedModelEnv(env)
                env.model()
                # OGBench computes observations (observation_space too) from state a reset sets up:
                # one reset, then its model values are forgotten (the next reset starts from fresh ones)
                env.reset(seed=0)
                env._own = None
            self.envs.append(self._leaned(env))
        return self.envs[:n]

    def _leaned(self, env):
        if self.lean:
            from rql.lean_ogbench import install

            install(env)
        return env

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []
