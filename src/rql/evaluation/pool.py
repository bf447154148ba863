"""The evaluation environments of one task, shared by every seed of a group, and the slots an
evaluation steps them through.

An :class:`EnvPool` holds environments in this process (it is a
:class:`~rql.evaluation.local.LocalEnvs`) and, if asked, in worker processes
(:mod:`rql.evaluation.workers`) that step their share side by side with this one. An evaluation
sees them as numbered slots (:func:`stepper_for`): it resets some slots and plays an action chunk
in each running one, whichever process holds it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from rql.evaluation.local import LocalEnvs
from rql.evaluation.workers import Worker, play_chunk, unpack_play


class EnvPool(LocalEnvs):
    """The evaluation environments of one task in a process, shared by every seed of a group.

    Environments are made when an evaluation first needs them (never more than ``size``, never
    more than the episodes asked for). With ``share_model`` the environments of OGBench's
    manipulation tasks after the first reuse its compiled MuJoCo model and inverse-kinematics
    controller, each with its own ``MjData`` (see
    :class:`~rql.evaluation.shared_model.SharedModelEnv`); others are made separately. With
    ``lean`` (the default) OGBench's manipulation environments step through
    :mod:`rql.lean_ogbench`: the same episodes, about 13-15% less time per step, and an ``info``
    that holds only ``success``.

    ``workers``: processes (:mod:`rql.evaluation.workers`) that hold and step some of the
    environments while this process steps the others, started when an evaluation first needs them.
    Slot ``s`` of an evaluation is stepped by process ``s % (workers + 1)`` (0: this one), so the
    environments are spread evenly. Only with the default ``make`` (a worker makes its environments
    from the task name and ``env_kwargs``, the options of ``gymnasium.make``).
    """

    def __init__(self, task: str, size: int, share_model: bool = True, make: Callable | None = None,
                 workers: int = 0, env_kwargs: dict | None = None, lean: bool = True):
        self.env_kwargs = dict(env_kwargs or {})
        if make is None:
            from rql.data.loading import make_env

            def make(task):  # without gymnasium's checker, which compiles a model at once to check spaces
                return make_env(task, disable_env_checker=True, **self.env_kwargs)
        else:
            workers = 0  # a worker cannot run a function of this process
        super().__init__(task, size, share_model, make, lean)
        self.processes = 1 + max(0, min(workers, size - 1))
        self.workers: list[Worker] = []  # started when first needed

    def prepare(self, n: int) -> None:
        """Start the workers that an evaluation of ``n`` slots needs and have them make their
        environments, without waiting: they start (3-4 s) while this process goes on."""
        n = max(1, min(n, self.size))
        P = self.processes
        if n > 1 and P > 1:
            while len(self.workers) < min(n, P) - 1:  # only those with slots in this evaluation
                p = len(self.workers) + 1
                self.workers.append(Worker(self.task, len(range(p, self.size, P)), self.share_model,
                                           self.env_kwargs, self.lean))
            for w, c in zip(self.workers, [len(range(p, n, P)) for p in range(1, P)]):
                if c > max(w.made, w.asked):
                    w.ask("make", {"count": c})
                    w.asked = c

    def stepper(self, n: int) -> "_Stepper":
        """The ``min(n, size)`` slots of one evaluation, over this process and the workers."""
        n = max(1, min(n, self.size))
        P = self.processes
        self.prepare(n)
        local = self.take(len(range(0, n, P)))
        for w in self.workers:
            if w.asked > w.made:
                try:
                    w.made = w.answer()[0]["made"]
                finally:
                    w.asked = w.made  # answered (or failed): nothing pending
        return _Stepper(local, self.workers, n, P)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []
        super().close()


def stepper_for(envs, n: int) -> "_Stepper":
    """The slots of an evaluation of ``n`` episodes over ``envs``: an :class:`EnvPool` (at most
    ``n`` of its slots), a list of environments, or a list of lists (flattened into one; the first
    ``n`` environments, all stepped in this process)."""
    if isinstance(envs, EnvPool):
        return envs.stepper(n)
    if envs and isinstance(envs[0], (list, tuple)):
        envs = [e for group in envs for e in group]
    envs = list(envs)[:n]
    return _Stepper(envs, [], len(envs), 1)


class _Stepper:
    """Resets and plays action chunks in the slots of one evaluation: slot ``s`` is environment
    ``s // P`` of process ``s % P`` (0: ``local``, ``p``: ``workers[p - 1]``). The workers' share
    is sent first, this process plays its own, then the workers' answers are read."""

    def __init__(self, local: list, workers: list, n: int, P: int):
        self.local, self.workers, self.n, self.P = local, workers, n, P

    @property
    def obs_dim(self) -> int:
        return self.local[0].observation_space.shape[0]

    @property
    def obs_dtype(self):
        """uint8 for image observations (kept as the policy's encoder reads them), else float32."""
        return np.uint8 if self.local[0].observation_space.dtype == np.uint8 else np.float32

    def _split(self, slots):
        by = [[] for _ in range(self.P)]
        for j, s in enumerate(slots):
            by[s % self.P].append(j)
        return by

    def reset(self, slots: list[int], seeds: list[int]) -> list:
        by, out = self._split(slots), [None] * len(slots)
        for p in range(1, self.P):
            if by[p]:
                self.workers[p - 1].ask("reset", {"slots": [slots[j] // self.P for j in by[p]],
                                                  "seeds": [int(seeds[j]) for j in by[p]]})
        for j in by[0]:
            out[j] = self.local[slots[j] // self.P].reset(seed=int(seeds[j]))[0]
        for p in range(1, self.P):
            if by[p]:
                obs = self.workers[p - 1].answer()[1]["obs"]
                for j, o in zip(by[p], obs):
                    out[j] = o
        return out

    def play(self, slots: list[int], chunks: np.ndarray) -> list:
        by, out = self._split(slots), [None] * len(slots)
        for p in range(1, self.P):
            if by[p]:
                self.workers[p - 1].ask("play", {"slots": [slots[j] // self.P for j in by[p]]},
                                        {"chunks": chunks[by[p]]})
        for j in by[0]:
            out[j] = play_chunk(self.local[slots[j] // self.P], chunks[j])
        for p in range(1, self.P):
            if by[p]:
                for j, r in zip(by[p], unpack_play(self.workers[p - 1].answer()[1])):
                    out[j] = r
        return out
