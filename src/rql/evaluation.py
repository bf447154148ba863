"""Batched evaluation: several environments at once, one compiled policy call for all of them,
action chunks executed open loop, success rate reported with a 95% Wilson interval."""

from __future__ import annotations

import math
from typing import Callable

import jax
import numpy as np


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def make_policy(agent, num_envs: int) -> Callable:
    """A compiled ``(state, obs (num_envs, obs_dim), key) -> (num_envs, h, action_dim)``."""
    return jax.jit(agent.act)


def evaluate(
    policy: Callable,
    state,
    envs: list,
    episodes: int,
    key: jax.Array,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Run ``episodes`` episodes over ``envs`` (reset with seeds ``seed + episode index``).

    Every environment that needs a new chunk gets it from one batched policy call; a chunk's
    ``h`` actions are executed open loop, then the policy re-plans.
    """
    n = len(envs)
    obs_dim = envs[0].observation_space.shape[0]
    obs = np.zeros((n, obs_dim), np.float32)
    queue: list[list[np.ndarray]] = [[] for _ in range(n)]
    ep_index = [-1] * n
    ep_return = np.zeros(n)
    ep_len = np.zeros(n, dtype=np.int64)
    results: list[tuple[float, float, int]] = []
    started = 0

    def start(i):
        nonlocal started
        if started >= episodes:
            ep_index[i] = -1
            return
        ep_index[i] = started
        o, _ = envs[i].reset(seed=seed + started)
        obs[i] = o
        queue[i] = []
        ep_return[i] = 0.0
        ep_len[i] = 0
        started += 1

    for i in range(n):
        start(i)
    while any(e >= 0 for e in ep_index):
        if any(ep_index[i] >= 0 and not queue[i] for i in range(n)):
            key, sub = jax.random.split(key)
            chunks = np.asarray(policy(state, obs, sub))
            for i in range(n):
                if ep_index[i] >= 0 and not queue[i]:
                    queue[i] = list(np.clip(chunks[i], -1.0, 1.0))
        for i in range(n):
            if ep_index[i] < 0:
                continue
            o, r, terminated, truncated, info = envs[i].step(queue[i].pop(0))
            obs[i] = o
            ep_return[i] += float(r)
            ep_len[i] += 1
            if terminated or truncated:
                results.append((float(info.get("success", 0.0)), float(ep_return[i]), int(ep_len[i])))
                if progress is not None:
                    progress(1)
                start(i)
    succ = np.array([r[0] for r in results])
    k = int(np.sum(succ > 0.5))
    lo, hi = wilson_interval(k, len(results))
    return {
        "success": float(k / max(len(results), 1)),
        "success_ci_low": lo,
        "success_ci_high": hi,
        "return": float(np.mean([r[1] for r in results])) if results else 0.0,
        "length": float(np.mean([r[2] for r in results])) if results else 0.0,
        "episodes": len(results),
    }
