"""The compiled policy an evaluation calls once per step for every running episode: each row acts
with its own seed's parameters and noise drawn from that seed's key, the episode's index and its
chunk count, so an episode does not depend on the episodes it shares a call with."""

from __future__ import annotations

from typing import Callable


def make_policy(agent, num_envs: int | None = None) -> Callable:
    """The compiled policy of :func:`rql.evaluation.evaluate` (``num_envs`` is not needed; kept for callers)."""
    return make_group_policy(agent)


def make_group_policy(agent) -> Callable:
    """A compiled ``(states (N, ...), seed_index (B,), obs (B, obs_dim), keys (N, 2), episode (B,),
    chunk (B,)) -> (B, h, action_dim)``: one policy call for the rows of every seed of a group.

    Row ``b`` acts with seed ``seed_index[b]``'s parameters and the noise of key
    ``fold_in(fold_in(keys[seed], episode), chunk)``: an episode's noise depends on its seed, its
    index and how many chunks it has drawn, not on which other episodes share the call.
    """

    import jax

    def row(state, obs, key, episode, chunk):
        key = jax.random.fold_in(jax.random.fold_in(key, episode), chunk)
        return agent.act(state, obs[None], key)[0]

    def call(states, seed_index, obs, keys, episode, chunk):
        rows = jax.tree.map(lambda x: x[seed_index], states)
        return jax.vmap(row)(rows, obs, keys[seed_index], episode, chunk)

    return jax.jit(call)
