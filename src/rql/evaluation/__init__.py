"""Batched evaluation: several environments at once, one compiled policy call for all of them,
action chunks executed open loop, success rate reported with a 95% Wilson interval.

One idea a module, each importing only those before it in this list (no module of the package
imports this ``__init__``, which gathers their names):

- :mod:`~rql.evaluation.stats`: success rate, Wilson interval, pooling of disjoint evaluations;
- :mod:`~rql.evaluation.shared_model`: OGBench environments sharing one compiled MuJoCo model;
- :mod:`~rql.evaluation.local`: the environments of one task made and held in one process;
- :mod:`~rql.evaluation.workers`: worker processes stepping some of them (``python -m rql.env_workers``);
- :mod:`~rql.evaluation.pool`: :class:`EnvPool`, over this process and the workers, and its slots;
- :mod:`~rql.evaluation.policies`: the compiled policy, one call for every running episode;
- :mod:`~rql.evaluation.episodes`: the episode loop, :func:`evaluate_group` and :func:`evaluate`;
- :mod:`~rql.evaluation.processes`: ``rql eval --workers``, one evaluation split into processes.
"""

from rql.evaluation.episodes import evaluate, evaluate_group, run_episodes
from rql.evaluation.policies import make_group_policy, make_policy
from rql.evaluation.pool import EnvPool
from rql.evaluation.processes import evaluate_in_processes
from rql.evaluation.shared_model import MODEL_FIELDS_CHANGED_BY_OGBENCH, SharedModelEnv
from rql.evaluation.stats import pool_results, wilson_interval

__all__ = ["MODEL_FIELDS_CHANGED_BY_OGBENCH", "EnvPool", "SharedModelEnv", "evaluate", "evaluate_group",
           "evaluate_in_processes", "make_group_policy", "make_policy", "pool_results", "run_episodes",
           "wilson_interval"]
