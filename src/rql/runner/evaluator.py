"""Evaluation during a run: the evaluation environments of every seed, and the evaluation (with
its videos) that the phases ask for at evaluation steps.

Seed ``k`` is evaluated on its own environments with the key ``fold_in(PRNGKey(k + 1), step)``,
episode ``i`` reset with ``k * 100_003 + i``; all seeds share one batched policy call
(:func:`rql.evaluation.evaluate_group`).
"""

from __future__ import annotations

import jax

from rql.errors import RQLError
from rql.evaluation import evaluate_group, make_group_policy
from rql.learner import member_state
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


def open_eval_envs(run: RunConfig, n_members: int, opened: list) -> list[list]:
    """Open one list of evaluation environments per seed into ``opened`` (the caller closes them,
    also when this fails half way: an unknown task fails here, before any data is read). Returns
    the environments evaluation uses: all of them, or none with ``--eval-episodes 0`` (the first
    one still serves to check the data against the task)."""
    if not run.task:
        return []
    n_envs = max(1, min(run.eval_envs, max(run.eval_episodes, run.final_eval_episodes or 0)))
    for _ in range(n_members):
        opened.append(make_eval_envs(run.task, n_envs))
    return list(opened) if run.eval_episodes > 0 else []


class Evaluator:
    """Evaluates every seed of a group at once and records its videos; keeps each seed's
    results in its member's ``evals``."""

    def __init__(self, run: RunConfig, agent, members: list, eval_envs: list[list]):
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
                          m.seed * 100_003, tb=m.tb, wb=m.wb)
