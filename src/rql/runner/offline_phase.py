"""The offline phase: compiled blocks of updates on the offline data (one block of every seed per
dispatch, :func:`rql.learner.make_group_block`), from the step a run starts at to ``--steps``."""

from __future__ import annotations

import time

from rql.runner.resume import Start
from rql.runner.services import Services, StepRate
from rql.runner.setup import Group


class OfflinePhase:
    """Advances the group train state from its step to ``end`` in blocks of ``g.block`` updates;
    a folder of shards gives each block the shard due at its step."""

    name = "offline"

    def __init__(self, g: Group, start: Start, end: int):
        self.g, self.end = g, end

    def close(self) -> None:
        pass

    def run(self, ts, step: int, svc: Services):
        g, run = self.g, self.g.run
        self.t0 = time.time()
        rate = StepRate(step)
        data = g.data
        summed, blocks = None, 0  # a row's metrics: the mean over every block since the last row
        while step < self.end:
            if g.sharded is not None:
                data = g.sharded.data(step)
            ts, metrics = g.run_block(ts, data)
            step += g.block
            if run.log_every:  # (with --log-every 0 the one row at the end is the last block's)
                summed = metrics if summed is None else {k: summed[k] + v for k, v in metrics.items()}
                blocks += 1
            rows: list[dict] = [{} for _ in g.members]
            if (run.log_every and step % run.log_every == 0) or step >= self.end:
                if blocks > 1:
                    metrics = {k: v / blocks for k, v in summed.items()}
                summed, blocks = None, 0
                self._log_rows(rows, step, metrics, svc, rate)
            evaluated = svc.eval_due(step, self.end)
            if evaluated:
                svc.show_eval(step, svc.evaluate(step, ts["agent"], rows))
            svc.write_rows(rows, step)
            saved = svc.save_due(step, self.end)
            if saved:
                svc.save(step, ts)
            svc.advance(g.block)
            if evaluated or saved:
                rate.restart(step)  # the update rate counts updates only, not evaluation or saving
            svc.stop_if_asked(step)
        return ts, step

    def _log_rows(self, rows: list[dict], step: int, metrics, svc: Services, rate: StepRate) -> None:
        """The training columns of every seed's row at a logging step (the mean over the blocks since the
        last row; after a resume, over those since the resume)."""
        metrics = {k: [float(x) for x in v] for k, v in metrics.items()}
        per_seed = [{k: v[i] for k, v in metrics.items()} for i in range(len(rows))]
        ups = rate.read(step)
        for row, mi in zip(rows, per_seed):
            row.update(step=step, time_s=rate.now - self.t0, updates_per_s=ups, **mi)
        svc.check_finite(step, per_seed)
        if len(rows) > 1:
            svc.show(total_upd_s=f"{ups * len(rows):.0f}")
