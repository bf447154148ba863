"""The pure, compiled learner under the runner.

Everything here is a pure function of arrays: initialise train states for a set of seeds, and run
``K`` updates of all seeds in one dispatch (``lax.scan`` over updates, ``vmap`` over a leading seed
axis). The host loop in :mod:`rql.training` only schedules these calls and logs, evaluates and
checkpoints around them. A single-seed run is the ``N = 1`` case of the same functions.

A train state is ``{"agent": agent state, "key": PRNG key, "step": int32}``; a group state has
the same structure with a leading axis of length ``N`` on every leaf.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rql.data.device import DeviceDataset, sample_windows
from rql.data.host_frames import frames_view
from rql.pixels import Pixels, augment, augment_key


def init_train_state(agent, seed: int):
    """The train state of one seed: ``PRNGKey(seed)`` split into an init key and a training key."""
    k_init, k_train = jax.random.split(jax.random.PRNGKey(seed))
    ts = {"agent": agent.init(k_init), "key": k_train, "step": jnp.asarray(0, jnp.int32)}
    # Every leaf its own buffer (targets start as copies), so the state can be donated.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), ts)


def init_group_state(agent, seeds):
    """Train states of several seeds stacked on a leading axis (``vmap`` of the per-seed init,
    so seed ``k`` of a group starts exactly where a run with ``--seed k`` starts)."""
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])

    def one(key):
        k_init, k_train = jax.random.split(key)
        return {"agent": agent.init(k_init), "key": k_train, "step": jnp.asarray(0, jnp.int32)}

    ts = jax.vmap(one)(keys)  # eager: a one-off that would cost more to compile than to run
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), ts)


def stack_states(states: list):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def member_state(group_state, i: int):
    """Seed ``i``'s train state out of a group state."""
    return jax.tree_util.tree_map(lambda x: x[i], group_state)


def windows_of(agent) -> str:
    """The window semantics an agent trains on (its config's ``windows`` field; ``rql`` without one)."""
    return getattr(agent.config, "windows", "rql")


def _block_fn(agent, horizon: int, batch_size: int, block: int, px: Pixels | None = None, host: bool = False,
              unroll: bool = False):
    windows = windows_of(agent)

    def run_block(ts, data: DeviceDataset, frames=None):
        def one(carry, f):
            agent_state, key = carry
            key, k_sample, k_update = jax.random.split(key, 3)
            view = data if f is None else frames_view(data, f)
            batch = sample_windows(view, k_sample, batch_size, horizon, windows, px)
            if px is not None and px.p_aug > 0:
                batch = augment(batch, augment_key(k_sample), px)
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            return (agent_state, key), metrics

        carry = (ts["agent"], ts["key"])
        if unroll:  # the updates written out one after another, no loop (a scan of length 1 still is one)
            rows = []
            for i in range(block):
                carry, m = one(carry, jax.tree_util.tree_map(lambda x: x[i], frames) if host else None)
                rows.append(m)
            (agent_state, key), metrics = carry, jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *rows)
        else:
            (agent_state, key), metrics = jax.lax.scan(one, carry, frames if host else None, length=block)
        out = {"agent": agent_state, "key": key, "step": ts["step"] + block}
        return out, jax.tree_util.tree_map(jnp.mean, metrics)

    return run_block


def image_block_cap() -> int | None:
    """Updates per block for agents on images: one, written out (``unroll``: no loop at all), on XLA's CPU
    backend, which runs the encoders' convolutions inside a loop in other layouts and many times slower (FQL
    on stacked 64x64 frames at batch 256: 342 s per update inside a scan of length one, 13 s outside,
    ``impala_small``; 3.5x at ``impala_debug``: benchmarks/README.md, "Pixels"); None (no cap) elsewhere.
    An update on images takes seconds on a CPU, so one dispatch per update costs nothing that shows."""
    return 1 if jax.default_backend() == "cpu" else None


def make_block(agent, horizon: int, batch_size: int, block: int, px: Pixels | None = None):
    """A compiled ``(train_state, data) -> (train_state, mean metrics)`` running ``block`` updates
    of one unstacked train state (image windows stacked and shifted as ``px`` says)."""
    return jax.jit(_block_fn(agent, horizon, batch_size, block, px), donate_argnums=(0,))


def make_group_block(agent, horizon: int, batch_size: int, block: int, px: Pixels | None = None, host: bool = False,
                     unroll: bool = False):
    """A compiled ``(group_state, data) -> (group_state, metrics)`` running ``block`` updates of every
    seed at once; the data is shared, each seed samples its own windows with its own key. Metrics
    are per seed (leading axis ``N``), each the mean over the block.

    With ``host`` (image frames left on the host, :mod:`rql.data.host_frames`) it is
    ``(group_state, data, frames) -> ...``: ``frames`` holds every seed's windows of every update of the
    block (leading axes ``N, block``), gathered on the host from the same draws.

    A group of one seed runs the unstacked block on its only member: ``vmap`` over an axis of
    length 1 turns every matrix product into a batched one, which XLA's CPU backend runs about 17%
    slower (``rql bench throughput --seeds 1`` against ``--seeds 0``, small network, 2-core CPU)."""
    one_seed = _block_fn(agent, horizon, batch_size, block, px, host, unroll)
    seeds = jax.vmap(one_seed, in_axes=(0, None, 0 if host else None))

    def run_group_block(group_state, data: DeviceDataset, frames=None):
        if jax.tree_util.tree_leaves(group_state)[0].shape[0] == 1:
            own = None if frames is None else member_state(frames, 0)
            out = one_seed(member_state(group_state, 0), data, own)
            return jax.tree_util.tree_map(lambda x: x[None], out)
        return seeds(group_state, data, frames)

    return jax.jit(run_group_block, donate_argnums=(0,))
