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


def make_group_policy(agent) -> Callable:
    """A compiled ``(states (N, ...), obs (N, E, obs_dim), keys (N,)) -> (N, E, h, action_dim)``:
    one policy call for the environments of every seed of a group."""
    return jax.jit(jax.vmap(agent.act))


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

    def group_policy(states, obs, keys):
        return np.asarray(policy(states, obs[0], keys[0]))[None]

    return evaluate_group(group_policy, state, [envs], episodes, [key], [seed], progress)[0]


def evaluate_group(
    policy: Callable,
    states,
    env_groups: list[list],
    episodes: int,
    keys: list,
    seeds: list[int],
    progress: Callable[[int], None] | None = None,
) -> list[dict]:
    """Evaluate ``N`` policies at once: policy ``g`` runs ``episodes`` episodes on its own
    environments ``env_groups[g]`` (reset with seeds ``seeds[g] + episode index``).

    Each step, every environment of every policy that needs a new chunk gets it from one call
    ``policy(states, obs (N, E, obs_dim), keys (N,))``. Policy ``g``'s key is split only when one
    of its own environments needs a chunk, so each policy sees exactly the noise it would see
    evaluated alone.
    """
    G, n = len(env_groups), len(env_groups[0])
    obs_dim = env_groups[0][0].observation_space.shape[0]
    obs = np.zeros((G, n, obs_dim), np.float32)
    queue: list[list[list[np.ndarray]]] = [[[] for _ in range(n)] for _ in range(G)]
    ep_index = np.full((G, n), -1)
    ep_return = np.zeros((G, n))
    ep_len = np.zeros((G, n), dtype=np.int64)
    results: list[list[tuple[float, float, int]]] = [[] for _ in range(G)]
    started = [0] * G
    keys = list(keys)

    def start(g, i):
        if started[g] >= episodes:
            ep_index[g, i] = -1
            return
        ep_index[g, i] = started[g]
        o, _ = env_groups[g][i].reset(seed=seeds[g] + started[g])
        obs[g, i] = o
        queue[g][i] = []
        ep_return[g, i] = 0.0
        ep_len[g, i] = 0
        started[g] += 1

    for g in range(G):
        for i in range(n):
            start(g, i)
    while (ep_index >= 0).any():
        need = [[ep_index[g, i] >= 0 and not queue[g][i] for i in range(n)] for g in range(G)]
        if any(any(r) for r in need):
            subs = []
            for g in range(G):
                if any(need[g]):
                    keys[g], sub = jax.random.split(keys[g])
                else:
                    sub = keys[g]  # its chunks are not used
                subs.append(sub)
            chunks = np.asarray(policy(states, obs, jax.numpy.stack(subs)))
            for g in range(G):
                for i in range(n):
                    if need[g][i]:
                        queue[g][i] = list(np.clip(chunks[g, i], -1.0, 1.0))
        for g in range(G):
            for i in range(n):
                if ep_index[g, i] < 0:
                    continue
                o, r, terminated, truncated, info = env_groups[g][i].step(queue[g][i].pop(0))
                obs[g, i] = o
                ep_return[g, i] += float(r)
                ep_len[g, i] += 1
                if terminated or truncated:
                    results[g].append((float(info.get("success", 0.0)), float(ep_return[g, i]), int(ep_len[g, i])))
                    if progress is not None:
                        progress(1)
                    start(g, i)
    return [_summarise(r) for r in results]


def _summarise(results: list[tuple[float, float, int]]) -> dict:
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


def pool_results(parts: list[dict]) -> dict:
    """One result from evaluations of disjoint episodes (e.g. ``rql eval --first-episode`` ranges)."""
    n = sum(p["episodes"] for p in parts)
    k = sum(round(p["success"] * p["episodes"]) for p in parts)
    lo, hi = wilson_interval(k, n)

    def mean(key):
        return float(sum(p[key] * p["episodes"] for p in parts) / max(n, 1))

    return {**parts[0], "success": k / max(n, 1), "success_ci_low": lo, "success_ci_high": hi,
            "return": mean("return"), "length": mean("length"), "episodes": n}


def evaluate_in_processes(run_dir, episodes: int, workers: int, seed: int = 0, checkpoint: int | None = None,
                          envs: int = 10, first_episode: int = 0) -> dict:
    """``rql eval`` of ``episodes`` episodes split into ``workers`` processes with consecutive
    episode ranges (``--first-episode``), run side by side and pooled (``rql eval --workers``).
    Stepping MuJoCo is single-threaded, so N processes share N cores in about the time of one.
    All processes end before a failure is raised, as one line naming the run."""
    import json
    import os
    import subprocess
    import sys

    from rql.errors import RQLError

    workers = max(1, min(workers, episodes))
    sizes = [episodes // workers + (i < episodes % workers) for i in range(workers)]
    starts = [first_episode + sum(sizes[:i]) for i in range(workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = []
    for n, start in zip(sizes, starts):
        cmd = [sys.executable, "-m", "rql.cli", "eval", str(run_dir), "--episodes", str(n), "--seed", str(seed),
               "--envs", str(max(1, min(envs, n))), "--first-episode", str(start), "--json"]
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    done = [proc.communicate() for proc in procs]
    parts = []
    for proc, (out, err) in zip(procs, done):
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
            raise RQLError(f"evaluation of {run_dir} failed: {last}")
        parts.append(json.loads(out.strip().splitlines()[-1]))
    if len({p["checkpoint"] for p in parts}) > 1:
        raise RQLError(f"{run_dir}: a new checkpoint appeared during the evaluation; give --checkpoint STEP")
    return pool_results(parts)
