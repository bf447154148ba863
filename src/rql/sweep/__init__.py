"""``rql sweep``: a grid of tasks x agents x seeds x agent fields, trained on Ray.

Each cell of the grid is one ordinary run directory, ``OUT/<task>/<label>/s<seed>``, where the
label is the agent's name followed by its grid fields (``rql-alpha=3``); ``rql compare`` reads the
folder as it reads any runs, and the label (written into each run's config.json) keeps variants
of one agent apart.

How it runs:

- The driver (this process) plans the cells, skips those already finished (``summary.json`` with
  at least the requested steps), and submits the rest as Ray core tasks ("trials"), each holding
  up to ``--seeds-per-run`` seeds of one cell, trained by :func:`rql.training.train_group`. Ray core
  tasks rather than Tune: a trial is one function call with a fixed resource request, retried by
  Ray when its worker process or node dies (``max_retries``); an error in the settings
  (:class:`~rql.errors.RQLError`) is caught inside the trial and reported, never retried.
- Every trial runs in a fresh worker process (``max_calls=1``) that sets the same environment
  as the command line (quiet logs, ``MUJOCO_GL=egl``) and, before JAX starts, limits its threads
  to its CPUs and its share of a GPU's memory.
- A trial whose worker sees the sweep folder (the driver writes a random token into it; the
  worker reads it back) trains in place. Otherwise it trains in a local temporary folder
  (continuing from the copy of an interrupted run the driver sends along) and returns the run
  directories as a tar archive, which the driver unpacks into place.
- Progress: each trial reads the step of its runs' metrics.csv every second and reports it to a
  small actor; the driver shows cells done / running / failed / queued and the total updates/s.
- ``OUT/sweep.json`` records each cell's status (queued, running, done, skipped, failed), its
  one-line error, the Ray node id and host it ran on and its wall time. At the end, and with
  ``rql sweep status OUT``, ``rql compare``'s table and plots are written into ``OUT/compare/``.

Setting the environment variable ``RQL_SWEEP_COPY=1`` makes every trial take the copy-back path
even on a shared file system (for testing that path).

The package: :mod:`~rql.sweep.plan` (sweep file, command-line grid, cells), :mod:`~rql.sweep.trial`
(what runs on a worker), :mod:`rql.values` (parsing and coercing values), :mod:`~rql.sweep.execution` (the driver on Ray), :mod:`~rql.sweep.rundirs`
(run directories and their archives), :mod:`~rql.sweep.status` (sweep.json, ``rql sweep status``, the
comparison), :mod:`~rql.sweep.paper` (``rql sweep init --paper``) and :mod:`~rql.sweep.commands`.
"""

from rql.sweep.commands import DESCRIPTION, InitArgs, StatusArgs, SweepArgs, cmd_sweep, dry_run
from rql.sweep.execution import COPY_ENV, run_sweep
from rql.sweep.plan import (FILE_OPTIONS, FILE_TABLES, RUN_OPTIONS, RUN_RESERVED, Cell, Plan, agent_config,
                            agent_variants, describe_cells, load_sweep_file, make_cells, make_plan)
from rql.sweep.rundirs import finished, install_runs, last_step, pack, summary_steps, unpack, write_label
from rql.sweep.status import SWEEP_FILE, read_sweep_file, sweep_status, write_comparison, write_sweep_file
from rql.sweep.trial import TOKEN_FILE, Progress, run_trial, worker_env
from rql.values import coerce, parse_value

__all__ = [
    "COPY_ENV", "DESCRIPTION", "FILE_OPTIONS", "FILE_TABLES", "RUN_OPTIONS", "RUN_RESERVED", "SWEEP_FILE", "TOKEN_FILE",
    "Cell", "InitArgs", "Plan", "Progress", "StatusArgs", "SweepArgs", "agent_config", "agent_variants", "cmd_sweep",
    "coerce", "describe_cells", "dry_run", "finished", "install_runs", "last_step", "load_sweep_file", "make_cells",
    "make_plan", "pack", "parse_value", "read_sweep_file", "run_sweep", "run_trial", "summary_steps", "sweep_status",
    "unpack", "worker_env", "write_comparison", "write_label", "write_sweep_file",
]
