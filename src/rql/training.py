"""Training runs: the entry points of the runner (:mod:`rql.runner`).

A run trains every seed of a group at once through the compiled learner (:mod:`rql.learner`); a
single-seed run is a group of one. Each seed writes its own ordinary run directory, so
``rql eval``, ``rql compare`` and resume treat the seeds as separate runs.

A run directory holds ``config.json`` (everything needed to rebuild the run), ``metrics.csv``
(one row per logged step, evaluation columns filled at evaluation steps), ``tb/`` (TensorBoard
events), ``checkpoints/<step>/`` and, when the run finishes, ``summary.json``.

:func:`train_group` is the whole run in order: set up, restore or start, the phases, the summary.
"""

from __future__ import annotations

import dataclasses
import pathlib

from rql.agents import build_config, make_agent
from rql.checkpoint import Checkpoints
from rql.data.dataset import Dataset
from rql.errors import RQLError
from rql.learner import (  # noqa: F401  (part of this module's API)
    init_group_state, init_train_state, make_block, make_group_block, member_state, stack_states,
)
from rql.runner.config import EVAL_KEYS, RunConfig, parse_seeds, validate  # noqa: F401
from rql.runner.evaluator import make_eval_envs  # noqa: F401
from rql.runner.member import Member  # noqa: F401
from rql.runner.offline_phase import OfflinePhase
from rql.runner.online_phase import OnlinePhase
from rql.runner.resume import Start, checkpoint_template, restore_or_start, without_online
from rql.runner.rundir import (  # noqa: F401
    MetricsCSV, default_run_dir, group_run_dirs, load_group, load_run_config, save_config, write_json_atomic,
)
from rql.runner.services import Services
from rql.runner.setup import Group, check_group, set_up


def phases(g: Group):
    """The phases of a run, in order, each with the total step it ends at: the offline updates,
    then the online fine-tuning when ``--online-steps`` asks for it."""
    yield OfflinePhase, g.run.steps
    if g.online_capacity:
        yield OnlinePhase, g.run.steps + g.run.online_steps


def run_phases(g: Group, start: Start, svc: Services) -> int:
    """Every phase that is not over yet, each from the state and step the previous one left;
    returns the last step."""
    ts, step = start.state, start.step
    with svc.signals:
        for phase_cls, end in phases(g):
            if step >= end:
                continue
            phase = phase_cls(g, start, end)
            try:
                ts, step = phase.run(ts, step, svc)
            finally:
                phase.close()
    return step


def train_group(run: RunConfig, agent_name: str, agent_cfg, seeds, run_dirs=None, resume: bool = False,
                log=print, dataset: Dataset | None = None, group_dir=None) -> list[dict]:
    """Train several seeds of one configuration as one compiled function over a leading seed axis;
    seed ``seeds[i]`` is written to ``run_dirs[i]`` (an ordinary run directory). With ``resume`` the
    runs continue from the newest checkpoint every one of them can read. Returns one summary per seed.
    """
    g = check_group(run, agent_name, seeds, run_dirs, resume, group_dir)
    svc = None
    try:
        set_up(g, agent_cfg, dataset, log)
        start = restore_or_start(g, resume, log)
        svc = Services(g, start, log)
        step = run_phases(g, start, svc)
    except KeyboardInterrupt:  # outside the main thread's handler (e.g. before it was installed)
        last = g.members[0].last_saved if g.members else None
        raise RQLError(f"interrupted; last checkpoint: step {last}; continue with: {g.resume_cmd}") from None
    finally:
        if svc is not None:
            svc.close()
        g.close()
    return svc.write_summaries(step)


def train(
    run: RunConfig,
    agent_name: str,
    agent_cfg,
    dataset: Dataset | None = None,
    resume_dir: str | None = None,
    log=print,
) -> dict:
    """Train (or resume) one run; returns the summary written to ``summary.json``."""
    run = validate(run)
    run_dir = pathlib.Path(resume_dir or run.run_dir or default_run_dir(run, agent_name))
    return train_group(run, agent_name, agent_cfg, [run.seed], [run_dir], resume=resume_dir is not None,
                       log=log, dataset=dataset)[0]


def resume_group(path: str | pathlib.Path, steps: int | None = None, log=print) -> list[dict]:
    """Continue a group folder (``group.json``) or a single run directory."""
    group = load_group(path)
    if group is None:
        run, name, cfg, _ = load_run_config(path)
        if steps is not None:
            run = dataclasses.replace(run, steps=steps)
        return [train(run, name, cfg, resume_dir=str(path), log=log)]
    seeds, dirs = group
    run, name, cfg, _ = load_run_config(dirs[0])
    for d in dirs[1:]:
        r2, n2, c2, _ = load_run_config(d)
        if n2 != name or c2 != cfg or dataclasses.replace(r2, seed=run.seed, run_dir=run.run_dir) != run:
            raise RQLError(f"{d}: its configuration differs from {dirs[0]}'s; resume the runs one by one "
                           "with 'rql train --resume RUN_DIR'")
    if steps is not None:
        run = dataclasses.replace(run, steps=steps)
    return train_group(run, name, cfg, seeds, dirs, resume=True, log=log, group_dir=path)


def pixels_of_run(agent_cfg, run):
    """The :class:`rql.pixels.Pixels` a saved run trained with (its agent's ``image_shape`` is the stacked
    ``(H, W, K * C)``); None for state observations."""
    shape = tuple(getattr(agent_cfg, "image_shape", ()) or ())
    if not shape:
        return None
    from rql.pixels import pixels_for

    h, w, kc = shape
    k = max(1, int(run.frame_stack))
    return pixels_for((h, w, kc // k), k, run.p_aug, agent_cfg.encoder)


def restore_agent(run_dir: str | pathlib.Path, checkpoint: int | None = None, log=print):
    """The agent and the saved train state of a run (latest readable checkpoint unless ``checkpoint``)."""
    run, agent_name, agent_cfg, doc = load_run_config(run_dir)
    agent = make_agent(agent_name, agent_cfg, doc["obs_dim"], doc["action_dim"])
    ckpts = Checkpoints(pathlib.Path(run_dir) / "checkpoints")
    try:
        # checkpoints of the online phase hold the buffer too
        capacity = doc["online"]["capacity"] if run.online_steps > 0 and doc.get("online") else 0
        template = checkpoint_template(agent, run, run.seed, capacity, pixels_of_run(agent_cfg, run))
        if checkpoint is not None:
            ts, step = ckpts.restore(checkpoint, template), checkpoint
        else:
            step, ts = ckpts.restore_newest(template, log=log)
            if step is None:
                raise RQLError(f"{run_dir}: no checkpoint saved yet")
    finally:
        ckpts.close()
    if isinstance(ts, dict) and "online" in ts:
        ts = without_online(ts)
    return run, agent, ts, step


def build_agent_config(agent: str, task: str | None, preset: str | None, overrides: dict | None = None):
    return build_config(agent, task, preset, overrides)
