"""Reversal Q-Learning (RQL) for flow policies, trained from offline data.

The Python API (:mod:`rql.api`), loaded on first use::

    rql.train(task=..., agent="rql", steps=..., seeds=..., agent_config={...})  -> TrainResult
    rql.load(run_dir)                      -> Policy: policy(obs, key), policy.act(obs)
    rql.evaluate(run_dir, episodes=...)    -> success rate with its 95% interval, return, length
    rql.export(run_dir, out)               -> a policy file that runs with JAX alone
    rql.load_exported(path)                -> its callable (obs, key) -> action chunks
    rql.load_dataset(task=..., dataset_path=...), rql.generate_dataset(name, ...)

User errors raise :class:`rql.RQLError` with one line saying what is wrong and what to do.
"""

__version__ = "0.1.0"

_LAZY = {
    "train": "rql.api", "load": "rql.api", "evaluate": "rql.api", "export": "rql.api",
    "load_dataset": "rql.api", "generate_dataset": "rql.api", "Policy": "rql.api", "TrainResult": "rql.api",
    "load_exported": "rql.exported", "ExportedPolicy": "rql.exported", "RQLError": "rql.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    # Imported when first used: `import rql` stays light (the command line's --help, and an exported
    # policy loaded where only JAX is installed).
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rql' has no attribute '{name}'")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
