"""``rql lab``: the ideas of RQL on trained networks, as one live HTML page.

``rql lab [--out DIR]`` trains flow BC, RQL and FQL on a toy task with a 2-D action
(:mod:`rql.data.toy`) with the project's runner and writes a page whose figures follow the RQL
explainer in order (noise flowing into actions, backpropagation through the chain, the unrolled
decision steps, the horizon, flow reversal, the value along a reversed chain and its slope,
score-function vs pathwise gradients, gradient ascent on a critic, one hop per flow step, the
update running, the training loop, the policies compared). The trained networks travel in the page
(:mod:`rql.lab.live`) and run in the browser (:mod:`rql.lab.livejs`): every figure can be played
with, and every number it shows is computed from them. ``rql lab --run RUN_DIR`` does the same for
a real run from its checkpoint and dataset. Output: ``DIR/index.html`` (self-contained),
``DIR/figures/*.png`` (the pictures measured in JAX) and ``DIR/lab.json`` (the measured numbers).
See docs/lab.md.
"""

from __future__ import annotations

import dataclasses
import pathlib


@dataclasses.dataclass
class LabArgs:
    out: str = "lab"
    """Folder for index.html, figures/*.png, lab.json (and, for the toy lab, the runs under runs/)."""
    run: str | None = None
    """A run directory made by 'rql train': draw the figures that apply to it instead of the toy lab."""
    baseline: str | None = None
    """With --run: a second run on the same data (e.g. flow BC) whose samples are drawn beside it."""
    checkpoint: int | None = None
    """With --run: the checkpoint step to read (default: the latest)."""
    states: int = 64
    """With --run: dataset states the figures are computed on."""
    task: str = "toy:ring"
    """Toy task (rql.data.toy): toy:ring or toy:ring-context, optionally with ',field=value' options."""
    steps: int = 3000
    """Updates of RQL and FQL on the toy task (flow BC gets twice as many; it is much cheaper)."""
    agents: tuple[str, ...] = ("flow-bc", "rql", "fql")
    """Agents trained on the toy task (flow-bc and rql are needed)."""
    seed: int = 0
    """Seed of training and of the measurements."""


def run_lab(args: LabArgs, log=print) -> dict:
    from rql.errors import RQLError

    out = pathlib.Path(args.out)
    if args.run is None:
        if args.baseline or args.checkpoint is not None:
            raise RQLError("--baseline and --checkpoint go with --run RUN_DIR")
        from rql.lab.toylab import run_toy_lab

        return run_toy_lab(out, args.task, args.steps, args.seed, tuple(args.agents), log=log)
    if args.states < 2:
        raise RQLError("--states must be at least 2")
    from rql.lab.runlab import run_run_lab

    return run_run_lab(out, args.run, args.baseline, args.checkpoint, args.states, args.seed, log=log)


def cmd_lab(argv: list[str], parse) -> int:
    args = parse(LabArgs, argv, "rql lab",
                 "Measure the ideas of Reversal Q-Learning on trained networks and write one self-contained HTML "
                 "page (DIR/index.html) whose live figures run those networks in the browser, the pictures measured "
                 "in JAX (DIR/figures/*.png) and the numbers (DIR/lab.json). Without "
                 "--run: trains flow BC, RQL and FQL on a toy task with a 2-D action (a few minutes on a CPU). "
                 "With --run RUN_DIR: the figures that apply to that run, from its checkpoint and dataset.")
    run_lab(args)
    return 0
