"""Networks: MLPs, the flow velocity field, value ensembles.

Initialisation follows the reference: every kernel is variance-scaling (fan_avg, uniform)
with scale 1 unless told otherwise, biases zero, GELU activations, optional LayerNorm
after each hidden activation.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def default_init(scale: float = 1.0):
    return nn.initializers.variance_scaling(scale, "fan_avg", "uniform")


class MLP(nn.Module):
    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        for size in self.hidden_dims:
            x = nn.Dense(size, kernel_init=default_init())(x)
            x = nn.gelu(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=default_init(self.out_init_scale))(x)


class VelocityField(nn.Module):
    """``v(obs, x, t)``: an MLP on ``concat(obs, x, t)`` returning a vector like ``x``."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, obs, x, t):
        h = jnp.concatenate([obs, x, t], axis=-1)
        return MLP(self.hidden_dims, self.action_dim, self.layer_norm, self.out_init_scale)(h)


class Ensemble(nn.Module):
    """``E`` independent scalar MLPs on the concatenated inputs; output shape ``(E, batch)``."""

    hidden_dims: Sequence[int]
    num: int
    layer_norm: bool = True

    @nn.compact
    def __call__(self, *inputs):
        x = jnp.concatenate(inputs, axis=-1)
        ens = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num,
        )
        return ens(self.hidden_dims, 1, self.layer_norm)(x)[..., 0]


class GaussianActor(nn.Module):
    """A deterministic (mean) actor with optional tanh squashing, for actor-critic baselines."""

    hidden_dims: Sequence[int]
    action_dim: int
    layer_norm: bool = False
    tanh: bool = True
    out_init_scale: float = 1.0

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_dims, self.action_dim, self.layer_norm, self.out_init_scale)(obs)
        return jnp.tanh(out) if self.tanh else out
