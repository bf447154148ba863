"""Per-trial overhead of Ray core tasks (what ``rql sweep`` uses) against Ray Tune, on a local Ray.

Runs N trivial trials (no JAX, nothing to train) two at a time three ways and prints one JSON line
of seconds per trial: Ray core tasks in a fresh worker process each (``max_calls=1``, as ``rql
sweep`` runs them), Ray core tasks in reused workers, and a Tune grid of the same function.
Tune needs ``pip install "ray[tune]"`` (pandas, pyarrow); without it its figure is left out.

    python benchmarks/sweep_overhead.py [N]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

import ray


def trial(config: dict) -> dict:
    return {"x": config["i"] * 2}


def core(n: int, **options) -> float:
    f = ray.remote(num_cpus=1, max_retries=2, **options)(lambda i: trial({"i": i}))
    ray.get(f.remote(-1))  # warm-up: the function is exported once
    t = time.time()
    ray.get([f.remote(i) for i in range(n)])
    return (time.time() - t) / n


def tune(n: int) -> float | None:
    try:
        from ray import tune
    except ImportError:
        return None
    store = tempfile.mkdtemp(prefix="tune-overhead-")
    try:
        tuner = tune.Tuner(
            tune.with_resources(trial, {"cpu": 1}),
            param_space={"i": tune.grid_search(list(range(n)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=store, verbose=0),
        )
        t = time.time()
        results = tuner.fit()
        assert len(results) == n and not results.errors
        return (time.time() - t) / n
    finally:
        shutil.rmtree(store, ignore_errors=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        res = {
            "trials": n,
            "core_fresh_worker_s_per_trial": core(n, max_calls=1),
            "core_reused_worker_s_per_trial": core(n),
            "tune_s_per_trial": tune(n),
            "load_avg_1min": os.getloadavg()[0],
        }
    finally:
        ray.shutdown()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
