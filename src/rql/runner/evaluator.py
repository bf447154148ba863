"""Evaluation during a run: the evaluation environments of every seed, and the evaluation (with
its videos) that the phases ask for at evaluation steps.

Seed ``k`` is evaluated with the key ``fold_in(PRNGKey(k + 1), step)``, episode ``i`` reset with
``k * 100_003 + i``; the episodes of all seeds are scheduled over one pool of environments with
one batched policy call per step (:class:`rql.evaluation.EnvPool`,
:func:`rql.evaluation.evaluate_group`), and a seed's results do not depend on the others.
"""

from __future__ import annotations

import os

import jax

from rql.errors import RQLError
from rql.evaluation import EnvPool, evaluate_group, make_group_policy
from rql.learner import member_state
from rql.pixels import is_visual
from rql.runner.config import RunConfig


def make_eval_envs(task: str, n: int) -> list:
    from rql.data.loading import make_env

    return [make_env(task) for _ in range(n)]


def prepare_videos(run: RunConfig) -> None:
    """Check ``--video-episodes`` and pick the GL backend before MuJoCo is first used."""
    if run.video_episodes > 0:
        if not run.task:
            raise RQLError("--video-episodes needs --task (an environment to render)")
        from rql.video import select_gl_backend

        select_gl_backend()  # EGL, else OSMesa


def eval_pool(task: str, size: int, workers: int, frame_stack: int = 1) -> EnvPool:
    """The pool of evaluation environments of ``task``; a visual task's observe their frames stacked
    ``frame_stack`` deep as in training, every environment with its own model."""
    if is_visual(task):
        return EnvPool(task, size, share_model=False, workers=workers, env_kwargs={"frame_stack": frame_stack},
                       lean=False)
    return EnvPool(task, size, workers=workers)


def open_eval_envs(run: RunConfig, n_members: int, opened: list) -> EnvPool | list:
    """Open the pool of evaluation environments that every seed shares, into ``opened`` (the
    caller closes it, also when this fails half way). Its first environment
    is made now (an unknown task fails here, before any data is read; it also serves to check the
    data against the task), the others when an evaluation first needs them: at most
    ``--eval-envs``, and no more than the episodes of all seeds. Returns the pool, or none with
    ``--eval-episodes 0``."""
    if not run.task:
        return []
    episodes = max(run.eval_episodes, run.final_eval_episodes or 0)
    size = max(1, min(run.eval_envs, n_members * episodes))
    workers = eval_workers(run.eval_workers, size, n_members * episodes)
    pool = eval_pool(run.task, size, workers, run.frame_stack)
    opened.append(pool)
    pool.first()
    if run.eval_episodes <= 0:
        return []
    pool.prepare(size)  # the workers start while the data is read and the first block trains
    return pool


AUTO_WORKERS_MIN_EPISODES = 10
"""The fewest episodes (all seeds) of an evaluation for which worker processes are started by
default: starting one takes about 3 s, the time of about 1,500 environment steps."""


def eval_workers(asked: int | None, pool_size: int, episodes: int) -> int:
    """Worker processes of an evaluation pool (:class:`rql.evaluation.EnvPool`): ``asked``, else
    one fewer than the cores this process may use, at most ``pool_size - 1``, when an evaluation
    has at least :data:`AUTO_WORKERS_MIN_EPISODES` episodes."""
    if asked is not None:
        return asked
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if episodes < AUTO_WORKERS_MIN_EPISODES:
        return 0
    return max(0, min(cores - 1, pool_size - 1))


class Evaluator:
    """Evaluates every seed of a group at once and records its videos; keeps each seed's
    results in its member's ``evals``."""

    def __init__(self, run: RunConfig, agent, members: list, eval_envs: EnvPool):
        self.run, self.agent, self.members, self.envs = run, agent, members, eval_envs
        self.policy = make_group_policy(agent)

    def __call__(self, step: int, agent_states) -> list[dict]:
        run, members = self.run, self.members
        keys = [jax.random.fold_in(jax.random.PRNGKey(m.seed + 1), step) for m in members]
        last = step >= run.steps + run.online_steps
        episodes = run.final_eval_episodes if last and run.final_eval_episodes else run.eval_episodes
        res = evaluate_group(self.policy, agent_states, self.envs, episodes, keys, [m.seed * 100_003 for m in members])
        for i, (m, r) in enumerate(zip(members, res)):
            m.evals.append({"step": step, **r})
            if run.video_episodes > 0:
                self._record_video(m, step, member_state(agent_states, i))
        return res

    def _record_video(self, m, step: int, agent_state) -> None:
        from rql.video import record_eval_video

        record_eval_video(m.dir, step, self.agent, agent_state, self.run.task, self.run.video_episodes,
                          m.seed * 100_003, tb=m.tb, wb=m.wb, frame_stack=self.run.frame_stack)
