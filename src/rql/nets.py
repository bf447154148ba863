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


# --- image encoders (pixel observations) -------------------------------------------------------
#
# An IMPALA-style CNN as the FQL codebase uses on OGBench's visual tasks: per stack a 3x3 convolution,
# a 3x3 max-pool of stride 2, then ``num_blocks`` residual blocks of two ReLU-3x3-convolutions; a ReLU,
# the features flattened, one Dense layer with a GELU after it. Images arrive as uint8 and are turned
# into floats in [0, 1] here, inside the compiled function (the data stays uint8 everywhere else).


class ResidualStack(nn.Module):
    """A 3x3 convolution, a stride-2 max-pool, then ``num_blocks`` residual blocks."""

    features: int
    num_blocks: int

    @nn.compact
    def __call__(self, x):
        conv = lambda: nn.Conv(self.features, (3, 3), strides=1, padding="SAME",  # noqa: E731
                               kernel_init=nn.initializers.xavier_uniform())
        x = nn.max_pool(conv()(x), window_shape=(3, 3), strides=(2, 2), padding="SAME")
        for _ in range(self.num_blocks):
            y = conv()(nn.relu(x))
            x = x + conv()(nn.relu(y))
        return x


class ImpalaEncoder(nn.Module):
    """``(..., H * W * C)`` flat images (any dtype, 0..255) to ``(..., mlp_dims[-1])`` features.

    ``image_shape`` is ``(H, W, C)`` with stacked frames along C; the leading axes are kept."""

    image_shape: Sequence[int]
    stack_sizes: Sequence[int] = (16, 32, 32)
    num_blocks: int = 2
    mlp_dims: Sequence[int] = (512,)

    @nn.compact
    def __call__(self, obs):
        lead = obs.shape[:-1]
        x = obs.reshape((-1, *self.image_shape)).astype(jnp.float32) / 255.0
        for size in self.stack_sizes:
            x = ResidualStack(size, self.num_blocks)(x)
        x = nn.relu(x).reshape((x.shape[0], -1))
        for size in self.mlp_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=default_init())(x))
        return x.reshape((*lead, x.shape[-1]))


ENCODERS = {
    # name: ImpalaEncoder fields (the FQL codebase's encoder names and sizes)
    "impala": dict(stack_sizes=(16, 32, 32), num_blocks=2, mlp_dims=(512,)),
    "impala_small": dict(stack_sizes=(16, 32, 32), num_blocks=1, mlp_dims=(512,)),
    "impala_debug": dict(stack_sizes=(4, 4), num_blocks=1, mlp_dims=(512,)),
}
"""The image encoders ``--agent.encoder`` names (``none``: state observations, no encoder)."""
