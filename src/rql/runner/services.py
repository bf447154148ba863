"""What every phase of a run uses around its updates, in one place: metric rows (metrics.csv,
TensorBoard, W&B), the divergence check, evaluation (and videos), checkpoints, stop signals, the
progress bar, and at the end the summaries.

A phase decides *when* (its own steps and intervals); :class:`Services` does the *what*, the
same way for every phase, so that the offline and the online phase write the same files.
"""

from __future__ import annotations

import math
import time

import jax

from rql.errors import RQLError
from rql.faults import StopSignals, Stopped, is_no_space
from rql.learner import member_state
from rql.online import ONLINE_COLUMNS
from rql.runner.config import EVAL_KEYS
from rql.runner.evaluator import Evaluator
from rql.runner.resume import Start
from rql.runner.rundir import write_json_atomic
from rql.runner.setup import Group


class Services:
    """Opened once a run knows where it starts (:class:`~rql.runner.resume.Start`); closed (the
    progress bar) before the group closes its members."""

    def __init__(self, g: Group, start: Start, log=print):
        self.g, self.run, self.members, self.log = g, g.run, g.members, log
        self.signals = StopSignals()
        self._open_logs(start)
        self.evaluator = Evaluator(g.run, g.agent, g.members, g.eval_envs) if g.eval_envs else None
        self.bar = self._progress_bar(start.step)
        self.t0 = time.time()

    def _open_logs(self, start: Start) -> None:
        block = getattr(self.g.run_block, "traceable", self.g.run_block)  # frames on the host: a traceable form
        metric_keys = sorted(jax.eval_shape(block, start.state, self.g.data)[1].keys())
        columns = ["step", "time_s", "updates_per_s", *metric_keys, *[f"eval/{k}" for k in EVAL_KEYS]]
        if self.g.online_capacity:
            columns += list(ONLINE_COLUMNS)
        for m in self.members:
            m.last_saved = start.resume_step
            m.open_logs(columns, start.resume_step, start.step, self.g.agent_name)

    def _progress_bar(self, start: int):
        if not self.run.progress:
            return None
        from tqdm.auto import tqdm

        n = len(self.members)
        desc = "train" if n == 1 else f"train x{n} seeds"
        return tqdm(total=self.run.steps + self.run.online_steps, initial=start, desc=desc, unit="step",
                    dynamic_ncols=True, smoothing=0.1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    # --- metric rows ---------------------------------------------------------------------------
    def check_finite(self, step: int, per_seed: list[dict]) -> None:
        """Stop with one line when a training metric of some seed is not finite."""
        for m, mi in zip(self.members, per_seed):
            bad = [k for k, v in mi.items() if not math.isfinite(v)]
            if bad:
                raise RQLError(f"training diverged at step {step} (seed {m.seed}: {', '.join(bad)} not finite); "
                               f"last good checkpoint: {m.last_saved}; lower --agent.lr or check the data")

    def write_rows(self, rows: list[dict], step: int) -> None:
        """Each seed's row (if any) to its metrics.csv, TensorBoard and W&B."""
        try:
            for m, row in zip(self.members, rows):
                if row:
                    m.write_row(row, step)
        except OSError as e:
            if is_no_space(e):
                raise RQLError(f"no space left on device while writing metrics at step {step} in "
                               f"{self.members[0].dir}; last complete checkpoint: {self.members[0].last_saved}") from None
            raise

    # --- evaluation ----------------------------------------------------------------------------
    @property
    def evaluates(self) -> bool:
        return self.evaluator is not None

    def eval_due(self, step: int, end: int) -> bool:
        """At every ``--eval-every`` steps and at the phase's last step, unless a stop was asked."""
        return self.evaluates and self.signals.requested is None and (
            (self.run.eval_every and step % self.run.eval_every == 0) or step >= end)

    def evaluate(self, step: int, agent_states, rows: list[dict]) -> list[dict]:
        """Evaluate every seed (and record its videos); the ``eval/`` columns go into ``rows``."""
        res = self.evaluator(step, agent_states)
        for row, r in zip(rows, res):
            row.update(step=step, **{f"eval/{k}": r[k] for k in EVAL_KEYS})
        return res

    def show_eval(self, step: int, res: list[dict]) -> None:
        """The success of every seed on the progress bar, or one log line per seed without it."""
        if self.bar is not None:
            self.bar.set_postfix(success=" ".join(f"{r['success']:.2f}" for r in res))
            return
        for m, r in zip(self.members, res):
            self.log(f"step {step} seed {m.seed}: success {r['success']:.3f} "
                     f"[{r['success_ci_low']:.3f}, {r['success_ci_high']:.3f}]")

    # --- checkpoints ---------------------------------------------------------------------------
    def save_due(self, step: int, end: int) -> bool:
        """At every ``--save-every`` steps, at the phase's last step, and when a stop was asked."""
        return step % self.run.save_every == 0 or step >= end or self.signals.requested is not None

    def save(self, step: int, group_state) -> None:
        """Checkpoint every seed at ``step`` (once per step)."""
        for i, m in enumerate(self.members):
            if m.last_saved != step:
                m.ckpts.save(step, member_state(group_state, i))
                m.last_saved = step

    # --- signals -------------------------------------------------------------------------------
    def stop_if_asked(self, step: int) -> None:
        """After a SIGTERM/SIGINT (the checkpoint of ``step`` being saved): stop with one line."""
        if self.signals.requested is None:
            return
        import signal as _signal

        name = _signal.Signals(self.signals.requested).name
        raise Stopped(f"stopped by {name} at step {step}; checkpoint {step} saved; "
                      f"continue with: {self.g.resume_cmd}", self.signals.requested)

    # --- progress ------------------------------------------------------------------------------
    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description(text)

    def show(self, **postfix) -> None:
        if self.bar is not None:
            self.bar.set_postfix(**postfix)

    def advance(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    # --- summary -------------------------------------------------------------------------------
    def write_summaries(self, step: int) -> list[dict]:
        """Every seed's ``summary.json`` (after the members closed); returns them."""
        summaries = []
        wall = time.time() - self.t0
        for m in self.members:
            summary = {
                "agent": self.g.agent_name,
                "task": self.run.task,
                "steps": step,
                "seed": m.seed,
                "wall_time_s": wall,
                "final_eval": m.evals[-1] if m.evals else None,
                "best_eval": max(m.evals, key=lambda e: e["success"]) if m.evals else None,
                "evals": m.evals,
                "final_metrics": {k: v for k, v in m.row.items() if k not in ("step",)} if m.row else {},
            }
            if len(self.g.seeds) > 1:
                summary["group"] = {"seeds": self.g.seeds}
            write_json_atomic(m.dir / "summary.json", summary)
            if m.wb is not None:
                m.wb.finish()
            summaries.append(summary)
        return summaries


class StepRate:
    """Steps per second between readings. After evaluating or saving, :meth:`restart` at the step reached
    starts the next reading's window there, so that the rate counts training only."""

    def __init__(self, step: int):
        self.t, self.step = time.time(), step
        self.now = self.t

    def read(self, step: int) -> float:
        self.now = time.time()
        rate = (step - self.step) / max(self.now - self.t, 1e-9)
        self.t, self.step = self.now, step
        return rate

    def restart(self, step: int) -> None:
        self.t, self.step = time.time(), step
