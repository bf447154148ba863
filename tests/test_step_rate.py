"""A metrics.csv row of the offline phase: its update rate (``updates_per_s``) counts training only (updates
since the last reading, or since the last evaluation or checkpoint, over the time they took), and its losses
are the mean over every block since the last row. A fake clock, group and services drive the real offline
loop (pure Python, no compiling)."""

import types

import numpy as np

from rql.runner import offline_phase, services
from rql.runner.services import StepRate


class Clock:
    def __init__(self):
        self.now = 1000.0

    def time(self):
        return self.now


def run_loop(run, run_block, ts, end, evaluate=None, save=None, block=10):
    """The real offline loop over one seed with blocks of ``block`` updates; evaluations every
    ``run.eval_every`` (when ``evaluate`` is given) and checkpoints every ``run.save_every`` (when ``save``
    is), both also at the end. Returns the rows written and the loop's ``(ts, step)``."""
    g = types.SimpleNamespace(run=run, block=block, run_block=run_block, sharded=None, data=None, members=[0])
    rows_written = []
    due = lambda every, on: (lambda step, end: on and (step % every == 0 or step >= end))  # noqa: E731
    svc = types.SimpleNamespace(
        eval_due=due(run.eval_every, evaluate is not None), evaluate=evaluate, show_eval=lambda step, res: None,
        save_due=due(run.save_every, save is not None), save=save,
        write_rows=lambda rows, step: rows_written.extend(r for r in rows if r),
        advance=lambda n: None, stop_if_asked=lambda step: None, check_finite=lambda step, rows: None,
        show=lambda **k: None)
    ts, step = offline_phase.OfflinePhase(g, start=None, end=end).run(ts, 0, svc)
    return rows_written, ts, step


def test_step_rate_window_starts_at_the_restart(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(services.time, "time", clock.time)
    rate = StepRate(0)
    clock.now += 10.0
    assert rate.read(1000) == 100.0
    clock.now += 5.0  # 500 more updates
    clock.now += 60.0  # an evaluation
    rate.restart(1500)
    clock.now += 5.0
    assert rate.read(2000) == 100.0  # 500 updates in 5 s, not 1000 in 5 s


def test_offline_rows_rate_and_mean_with_evaluation_between_rows(monkeypatch):
    """Blocks of 10 updates, 1 s each, block k's loss k; a row every 40 updates; an evaluation (100 s) every 20
    and a checkpoint (30 s) every 60 updates. Every row must say 10 updates/s and its four blocks' mean."""
    clock = Clock()
    monkeypatch.setattr(services.time, "time", clock.time)
    monkeypatch.setattr(offline_phase.time, "time", clock.time)

    def run_block(ts, data):
        clock.now += 1.0
        k = ts["updates"] // 10 + 1
        return {**ts, "updates": ts["updates"] + 10}, {"loss/total": np.array([float(k)], np.float32)}

    def evaluate(step, agent, rows):
        clock.now += 100.0
        return []

    def save(step, ts):
        clock.now += 30.0

    run = types.SimpleNamespace(log_every=40, save_every=60, eval_every=20)
    rows_written, ts, step = run_loop(run, run_block, {"agent": None, "updates": 0}, 120, evaluate, save)
    assert step == 120 and ts["updates"] == 120
    logged = [(r["step"], r["updates_per_s"]) for r in rows_written]
    assert [s for s, _ in logged] == [40, 80, 120]
    assert all(abs(ups - 10.0) < 1e-9 for _, ups in logged), logged
    assert [r["loss/total"] for r in rows_written] == [2.5, 6.5, 10.5]  # blocks 1-4, 5-8, 9-12


def test_offline_row_is_the_block_itself_when_a_row_is_one_block(monkeypatch):
    """log_every equal to the block: the row is the block's own metrics, bit for bit (no sum, no division)."""
    values = iter([0.1, 0.7, 1e-8])

    def run_block(ts, data):
        return ts, {"loss/total": np.array([next(values)], np.float32)}

    run = types.SimpleNamespace(log_every=10, save_every=30, eval_every=0)
    rows_written, _, _ = run_loop(run, run_block, {}, 30)
    assert [r["loss/total"] for r in rows_written] == [float(np.float32(v)) for v in (0.1, 0.7, 1e-8)]
