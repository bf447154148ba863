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

    run = types.SimpleNamespace(log_every=40, save_every=60, eval_every=20)
    g = types.SimpleNamespace(run=run, block=10, run_block=run_block, sharded=None, data=None, members=[0])
    rows_written = []

    def evaluate(step, agent, rows):
        clock.now += 100.0
        return []

    def save(step, ts):
        clock.now += 30.0

    svc = types.SimpleNamespace(
        eval_due=lambda step, end: step % run.eval_every == 0 or step >= end,
        evaluate=evaluate, show_eval=lambda step, res: None, evaluates=True,
        save_due=lambda step, end: step % run.save_every == 0 or step >= end, save=save,
        write_rows=lambda rows, step: rows_written.extend(r for r in rows if r),
        advance=lambda n: None, stop_if_asked=lambda step: None, check_finite=lambda step, rows: None,
        show=lambda **k: None)
    phase = offline_phase.OfflinePhase(g, start=None, end=120)
    ts, step = phase.run({"agent": None, "updates": 0}, 0, svc)
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
    g = types.SimpleNamespace(run=run, block=10, run_block=run_block, sharded=None, data=None, members=[0])
    rows_written = []
    svc = types.SimpleNamespace(
        eval_due=lambda step, end: False, evaluates=False, save_due=lambda step, end: False,
        write_rows=lambda rows, step: rows_written.extend(r for r in rows if r),
        advance=lambda n: None, stop_if_asked=lambda step: None, check_finite=lambda step, rows: None,
        show=lambda **k: None)
    offline_phase.OfflinePhase(g, start=None, end=30).run({}, 0, svc)
    assert [r["loss/total"] for r in rows_written] == [float(np.float32(v)) for v in (0.1, 0.7, 1e-8)]
