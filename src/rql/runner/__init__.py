"""The runner: the host side of a training run, around the compiled learner (:mod:`rql.learner`).

A run (a group of seeds; one seed is a group of one) is, in this order:

1. :mod:`~rql.runner.setup` -- check the arguments, open one :class:`~rql.runner.member.Member`
   per seed (its run directory, lock and checkpoints), the evaluation environments
   (:mod:`~rql.runner.evaluator`), the data, the agent and the compiled block of updates;
2. :mod:`~rql.runner.resume` -- restore the newest checkpoint every seed can read, or start a new
   run (``config.json``);
3. the phases, in order, each advancing the train state from one step to its last:
   :mod:`~rql.runner.offline_phase` (compiled blocks of updates on the offline data), then
   :mod:`~rql.runner.online_phase` (fine-tuning in the environment) when ``--online-steps`` asks;
4. around every phase the same :class:`~rql.runner.services.Services`: metric rows, divergence
   check, evaluation and videos, checkpoints, signals, progress, and the summary at the end.

:mod:`~rql.runner.config` holds the options (:class:`~rql.runner.config.RunConfig`) and
:mod:`~rql.runner.rundir` the files of a run directory. The entry points (``train``,
``train_group``, ``resume_group``, ``restore_agent``) are in :mod:`rql.training`.
"""
