"""The episode loop: the episodes of one or several policies scheduled over one set of evaluation
environments, one batched policy call per step for every running episode, each action chunk
executed open loop (:func:`run_episodes`), and the results it reports (:func:`evaluate_group`,
:func:`evaluate` for one policy)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

import numpy as np

from rql.evaluation.pool import stepper_for
from rql.evaluation.stats import summarise

if TYPE_CHECKING:
    import jax


def evaluate(
    policy: Callable,
    state,
    envs,
    episodes: int,
    key: jax.Array,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    first_episode: int = 0,
) -> dict:
    """Run ``episodes`` episodes of one policy over ``envs`` (a list or an :class:`EnvPool`),
    episode ``i`` reset with seed ``seed + i``; see :func:`evaluate_group`."""
    import jax

    states = jax.tree.map(lambda x: jax.numpy.asarray(x)[None], state)
    return evaluate_group(policy, states, envs, episodes, [key], [seed], progress, first_episode=first_episode)[0]


def evaluate_group(
    policy: Callable,
    states,
    envs,
    episodes: int,
    keys: list,
    seeds: list[int],
    progress: Callable[[int], None] | None = None,
    timings: dict | None = None,
    first_episode: int = 0,
) -> list[dict]:
    """Evaluate ``N`` policies (``states`` stacked on a leading axis) with ``episodes`` episodes
    each, all scheduled over one set of environments ``envs``: an :class:`EnvPool`, a list of
    environments, or a list of lists (flattened into one).

    Episode ``i`` of policy ``g`` is reset with seed ``seeds[g] + i`` and draws its noise from
    ``keys[g]``, the episode index and its chunk count (:func:`make_group_policy`), so a policy's
    results do not depend on the other policies evaluated with it nor on the number of
    environments. Each step, every environment whose chunk is used up gets a new one from one
    policy call for all of them; a chunk's ``h`` actions are executed open loop.

    ``first_episode``: the episodes are ``first_episode, first_episode + 1, ...`` (their reset
    seeds and noise): an evaluation split into consecutive ranges runs the episodes of one.
    """
    return [summarise(r) for r in run_episodes(policy, states, envs, episodes, keys, seeds, progress, timings,
                                               first_episode)]


def run_episodes(policy, states, envs, episodes: int, keys: list, seeds: list[int],
                 progress: Callable[[int], None] | None = None,
                 timings: dict | None = None, first_episode: int = 0) -> list[list[tuple[float, float, int]]]:
    """The episodes of :func:`evaluate_group`: for each policy, ``(success, return, length)`` of
    its episodes in episode order. ``timings``: a dict that receives the seconds spent making
    environments, resetting, stepping and in policy calls (keys ``make``, ``reset``, ``step``,
    ``policy``; added to what it holds)."""
    import jax

    G = len(seeds)
    total = G * episodes
    if total <= 0:
        return [[] for _ in range(G)]
    clock = {k: 0.0 for k in ("make", "reset", "step", "policy")}
    t0 = time.perf_counter()
    stepper = stepper_for(envs, total)
    n = stepper.n
    obs_dim = stepper.obs_dim
    clock["make"] = time.perf_counter() - t0
    # episodes in the order they start: episode 0 of every policy, then episode 1, ...
    todo = [(g, i) for i in range(first_episode, first_episode + episodes) for g in range(G)][::-1]
    key_data = jax.numpy.stack([jax.numpy.asarray(k) for k in keys])
    obs = np.zeros((n, obs_dim), getattr(stepper, "obs_dtype", np.float32))
    slot_seed = np.zeros(n, np.int32)
    slot_episode = np.zeros(n, np.int32)
    slot_chunk = np.zeros(n, np.int32)
    active = np.zeros(n, bool)
    ep_return = np.zeros(n)
    ep_len = np.zeros(n, dtype=np.int64)
    results: list[dict[int, tuple[float, float, int]]] = [{} for _ in range(G)]

    def start(slots):
        """The next episodes in these slots (reset together), or the slots stay idle."""
        go, reset_seeds = [], []
        for s in slots:
            active[s] = bool(todo)
            if todo:
                g, i = todo.pop()
                slot_seed[s], slot_episode[s], slot_chunk[s] = g, i, 0
                ep_return[s], ep_len[s] = 0.0, 0
                go.append(s)
                reset_seeds.append(seeds[g] + i)
        if go:
            t = time.perf_counter()
            for s, o in zip(go, stepper.reset(go, reset_seeds)):
                obs[s] = o
            clock["reset"] += time.perf_counter() - t

    start(range(n))
    while active.any():
        # every running episode has used up its chunk: one policy call draws the next for all
        t = time.perf_counter()
        chunks = np.clip(np.asarray(policy(states, slot_seed, obs, key_data, slot_episode, slot_chunk)), -1.0, 1.0)
        clock["policy"] += time.perf_counter() - t
        running = [s for s in range(n) if active[s]]
        slot_chunk[running] += 1
        t = time.perf_counter()
        played = stepper.play(running, chunks[running])
        clock["step"] += time.perf_counter() - t
        ended = []
        for s, (o, rewards, done, success) in zip(running, played):
            obs[s] = o
            for r in rewards:
                ep_return[s] += r
            ep_len[s] += len(rewards)
            if done:
                g, i = int(slot_seed[s]), int(slot_episode[s])
                results[g][i] = (success, float(ep_return[s]), int(ep_len[s]))
                if progress is not None:
                    progress(1)
                ended.append(s)
        start(ended)
    _add_timings(timings, clock)
    return [[r[i] for i in sorted(r)] for r in results]


def _add_timings(timings: dict | None, clock: dict[str, float]) -> None:
    """Add an evaluation's seconds in ``clock`` to what ``timings`` holds (if a dict is given)."""
    if timings is not None:
        for k, v in clock.items():
            timings[k] = timings.get(k, 0.0) + v
