"""Restore or start: a run continues from the newest checkpoint that every seed can read, or
starts at step 0 and writes its ``config.json``."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from rql.errors import RQLError
from rql.learner import init_group_state, init_train_state, stack_states
from rql.online import online_template
from rql.runner.rundir import load_run_config, save_config
from rql.runner.setup import Group


@dataclasses.dataclass
class Start:
    """Where the phases of a run begin."""

    state: Any
    """The group train state (without the online buffer)."""
    step: int
    """The total step the phases continue from."""
    resume_step: int | None
    """The step restored (0 when resuming found no checkpoint); None for a new run."""
    online_state: Any = None
    """The whole restored state when it was saved in the online phase (buffer and counters)."""


def checkpoint_template(agent, run, seed: int, online_capacity: int = 0, px=None):
    """The shapes of one seed's checkpoint, for restoring. With an online phase, checkpoints past the
    offline steps also hold the online buffer, and the template is a function of the step."""
    template = jax.eval_shape(lambda: init_train_state(agent, seed))  # shapes only: nothing is computed
    if not online_capacity:
        return template
    on_template = online_template(agent, seed, online_capacity, px)
    return lambda s: on_template if s > run.steps else template


def without_online(state: dict) -> dict:
    return {k: v for k, v in state.items() if k != "online"}


def restore_or_start(g: Group, resume: bool, log) -> Start:
    """Restore the group (``resume``) or start it (writing every seed's ``config.json``)."""
    ts = init_group_state(g.agent, g.seeds)
    resume_step = None
    if resume:
        if g.online_capacity:
            check_online_resume(g.run, g.members[0].dir)
        template = checkpoint_template(g.agent, g.run, g.seeds[0], g.online_capacity, g.pixels)
        resume_step, restored = restore_group(g.members, template, log)
        if resume_step is not None:
            ts = restored
            log(f"resuming {g.where} from step {resume_step}")
        else:
            log(f"{g.where}: no checkpoint yet; starting from step 0")
            resume_step = 0
    else:
        write_configs(g)
    if isinstance(ts, dict) and "online" in ts:  # saved in the online phase
        return Start(without_online(ts), resume_step, resume_step, online_state=ts)
    return Start(ts, int(ts["step"][0]), resume_step)


def restore_group(members: list, template, log):
    """``(step, stacked state)`` restored at the newest step that reads in every member (newer
    checkpoints of some members are dropped); ``(None, None)`` when some member has none."""
    target = None
    while True:
        got = [m.ckpts.restore_newest(template, at_most=target, log=log) for m in members]
        steps = {s for s, _ in got}
        if len(steps) == 1:
            step = steps.pop()
            break
        if None in steps:
            step = None
            break
        target = min(steps)
    if step is None:
        return None, None
    for m in members:
        m.ckpts.delete_after(step)
    return step, stack_states([st for _, st in got])


def check_online_resume(run, run_dir) -> None:
    saved, _, _, _ = load_run_config(run_dir)
    if saved.steps != run.steps:
        raise RQLError(f"{run_dir}: --steps cannot be changed when resuming a run with --online-steps "
                       f"(checkpoint numbers past {saved.steps} are online steps)")


def write_configs(g: Group) -> None:
    """Every seed's ``config.json``: its options, the agent's and what the data turned out to be."""
    dataset, sharded = g.dataset, g.sharded
    extra = {"dataset": {"source": dataset.source, "size": dataset.size, "episodes": dataset.num_episodes,
                         "shards": len(sharded.files) if sharded else None},
             "obs_dim": g.obs_dim, "action_dim": dataset.action_dim}
    if len(g.seeds) > 1:
        extra["group"] = {"seeds": g.seeds, "dir": str(g.group_dir) if g.group_dir else None}
    if g.online_capacity:
        extra["online"] = {"capacity": g.online_capacity, "offline_size": dataset.size}
    for m in g.members:
        save_config(m.dir, m.run, g.agent_name, g.agent_cfg, extra)
