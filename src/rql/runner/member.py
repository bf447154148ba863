"""A member of a group: one seed's run directory and the logs written into it."""

from __future__ import annotations

import csv
import dataclasses
import pathlib
from typing import Any

from rql.checkpoint import Checkpoints
from rql.errors import RQLError
from rql.faults import RunLock, check_writable
from rql.runner.config import EVAL_KEYS, RunConfig
from rql.runner.rundir import MetricsCSV


class Member:
    """One seed of a group and everything it writes: its run directory, lock, checkpoints,
    metrics.csv, TensorBoard and W&B logs, and its evaluation history."""

    def __init__(self, seed: int, run_dir: pathlib.Path, run: RunConfig, keep: int):
        self.seed, self.dir, self.run = seed, run_dir, run
        check_writable(run_dir)
        self.lock = RunLock(run_dir)
        self.ckpts = Checkpoints(run_dir / "checkpoints", keep=keep)
        self.ckpts.remove_temporaries()  # an earlier save cut short (kill -9, full disk)
        self.csv: MetricsCSV | None = None
        self.tb = self.wb = None
        self.evals: list[dict] = []
        self.last_saved: int | None = None
        self.row: dict[str, Any] = {}

    def open_logs(self, columns: list[str], resume_step: int | None, start: int, agent_name: str) -> None:
        self.csv = MetricsCSV(self.dir / "metrics.csv", columns, resume_step)
        if resume_step is not None:
            with (self.dir / "metrics.csv").open(newline="") as f:
                for r in csv.DictReader(f):
                    if r.get("eval/success"):
                        self.evals.append({"step": int(float(r["step"])),
                                           **{k: float(r[f"eval/{k}"]) for k in EVAL_KEYS}})
        if self.run.tensorboard:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(str(self.dir / "tb"), purge_step=start if resume_step is not None else None)
        if self.run.wandb:
            try:
                import wandb
            except ImportError:
                raise RQLError("--wandb needs the wandb package: pip install 'reversal-ql[wandb]'") from None
            self.wb = wandb.init(project="rql", dir=str(self.dir), reinit=True, name=self.dir.name,
                                 config={"agent": agent_name, **dataclasses.asdict(self.run)})

    def write_row(self, row: dict, step: int) -> None:
        self.row = row
        self.csv.write(row)
        for k, v in row.items():
            if k != "step" and isinstance(v, float) and self.tb is not None:
                self.tb.add_scalar(k if "/" in k else f"time/{k}", v, step)
        if self.wb is not None:
            self.wb.log({k: v for k, v in row.items() if k != "step"}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None
        try:
            self.ckpts.close()
        except Exception:
            pass
        self.lock.release()
