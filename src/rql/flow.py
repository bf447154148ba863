"""The flow math every agent shares.

A velocity field ``v(obs, x, t)`` with normalised time ``t in [0, 1]`` turns noise
``x(0) ~ N(0, I)`` into an action ``x(1)`` by ``F`` Euler steps. ``velocity`` below is any
function ``(obs, x, t) -> dx/dt`` with ``t`` of shape ``(batch, 1)``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

Velocity = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def euler_sample(velocity: Velocity, obs: jax.Array, noise: jax.Array, flow_steps: int, clip: bool = True):
    """Integrate from ``t = 0`` to ``t = 1`` in ``flow_steps`` Euler steps; clip to [-1, 1]."""
    batch = noise.shape[:-1]

    def body(i, x):
        t = jnp.full((*batch, 1), i / flow_steps, dtype=noise.dtype)
        return x + velocity(obs, x, t) / flow_steps

    x = jax.lax.fori_loop(0, flow_steps, body, noise)
    return jnp.clip(x, -1.0, 1.0) if clip else x


def reversal_distances(key: jax.Array, batch_size: int, flow_steps: int) -> jax.Array:
    """How far back each sample is reversed: first half ``U(0, 1)``, second half ``k / F``
    with ``k`` uniform in ``{0..F}`` (the reference's continuous half and grid half)."""
    k_cont, k_grid = jax.random.split(key)
    half = batch_size // 2
    cont = jax.random.uniform(k_cont, (half,))
    grid = jax.random.randint(k_grid, (batch_size - half,), 0, flow_steps + 1) / flow_steps
    return jnp.concatenate([cont, grid.astype(cont.dtype)])


def reverse(velocity: Velocity, obs: jax.Array, action: jax.Array, distance: jax.Array, flow_steps: int):
    """Run the flow backwards from the complete action at ``t = 1`` by ``distance`` (per sample,
    in ``[0, 1]``) in ``flow_steps`` equal sub-steps. Returns ``(x_t, t)`` with ``t = 1 - distance``
    of shape ``(batch, 1)``."""
    dt = (distance / flow_steps)[..., None].astype(action.dtype)

    def body(_, carry):
        x, t = carry
        return x - velocity(obs, x, t) * dt, t - dt

    t1 = jnp.ones((*action.shape[:-1], 1), action.dtype)
    return jax.lax.fori_loop(0, flow_steps, body, (action, t1))


def interpolate(noise: jax.Array, action: jax.Array, t: jax.Array):
    """The linear interpolant ``x_t = (1 - t) x0 + t x1`` and its velocity ``x1 - x0``."""
    return (1.0 - t) * noise + t * action, action - noise


def one_step(velocity: Velocity, obs: jax.Array, x: jax.Array, t: jax.Array, flow_steps: int):
    """One Euler step of size ``min(1/F, 1 - t)`` from ``(x, t)``; returns ``(x_next, t_next)``."""
    step = jnp.minimum(1.0 / flow_steps, 1.0 - t)
    return x + velocity(obs, x, t) * step, jnp.minimum(t + 1.0 / flow_steps, 1.0)
