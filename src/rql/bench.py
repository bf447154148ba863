"""Throughput measurement: compiled update blocks on synthetic data, after a warm-up."""

from __future__ import annotations

import platform
import resource
import time

import jax
import numpy as np

from rql.agents import build_config, get_spec
from rql.data.dataset import validate
from rql.data.device import to_device
from rql.learner import init_group_state, init_train_state, make_block, make_group_block


def synthetic_dataset(obs_dim: int, action_dim: int, size: int, seed: int = 0, episode_len: int = 500):
    rng = np.random.default_rng(seed)
    terminals = np.zeros(size, np.float32)
    terminals[episode_len - 1 :: episode_len] = 1.0
    arrays = dict(
        observations=rng.standard_normal((size, obs_dim), dtype=np.float32),
        actions=rng.uniform(-1, 1, (size, action_dim)).astype(np.float32),
        rewards=-(rng.random(size) < 0.9).astype(np.float32),
        terminals=terminals,
    )
    return validate(arrays, "synthetic")


def throughput(agent: str, obs_dim: int, action_dim: int, horizon: int, batch_size: int, hidden_dims: tuple,
               ensemble: int, flow_steps: int, steps: int, block: int, dataset_size: int, seed: int = 0,
               seeds: int = 0) -> dict:
    """Updates per second after a warm-up block that compiles. ``seeds = 0``: one unstacked train
    state (the plain compiled block); ``seeds = N >= 1``: the group learner of ``rql train --seeds``
    over N seeds (N = 1 is what a single-seed ``rql train`` runs). ``updates_per_second`` counts
    the updates of every seed."""
    spec = get_spec(agent)
    fields = {f for f in spec.config_cls.__dataclass_fields__}
    overrides = dict(horizon=horizon, batch_size=batch_size)
    for k, v in dict(actor_hidden_dims=hidden_dims, value_hidden_dims=hidden_dims, ensemble=ensemble,
                     flow_steps=flow_steps).items():
        if k in fields:
            overrides[k] = v
    cfg = build_config(agent, None, None, overrides)
    ds = synthetic_dataset(obs_dim, action_dim, dataset_size, seed)
    ag = spec.make(cfg, obs_dim, action_dim)
    block = max(1, min(block, steps))
    data = to_device(ds)
    if seeds > 0:
        run_block = make_group_block(ag, horizon, batch_size, block)
        ts = init_group_state(ag, list(range(seed, seed + seeds)))
    else:
        run_block = make_block(ag, horizon, batch_size, block)
        ts = init_train_state(ag, seed)
    t0 = time.perf_counter()
    ts, m = run_block(ts, data)
    jax.block_until_ready(m)
    compile_s = time.perf_counter() - t0
    n_blocks = max(1, steps // block)
    t0 = time.perf_counter()
    for _ in range(n_blocks):
        ts, m = run_block(ts, data)
    jax.block_until_ready((ts, m))
    elapsed = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_seeds = max(1, seeds)
    return {
        "agent": agent,
        "seeds": n_seeds,
        "grouped": seeds > 0,
        "updates_per_second": n_seeds * n_blocks * block / elapsed,
        "updates_per_second_per_seed": n_blocks * block / elapsed,
        "updates": n_blocks * block,
        "seconds": elapsed,
        "warmup_compile_seconds": compile_s,
        "peak_rss_mb": peak_kb / 1024.0,
        "device": str(jax.devices()[0].platform),
        "cpu_count": __import__("os").cpu_count(),
        "config": {"obs_dim": obs_dim, "action_dim": action_dim, "horizon": horizon, "batch_size": batch_size,
                   "hidden_dims": list(hidden_dims), "ensemble": ensemble, "flow_steps": flow_steps,
                   "updates_per_dispatch": block},
        "machine": platform.machine(),
        "jax": jax.__version__,
    }
