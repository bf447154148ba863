"""Flow behaviour cloning: the flow-matching loss alone, no value. The floor every RL method
must beat; same velocity field, chunks, sampling and EMA actor as RQL."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.base import Agent, AgentConfig, Batch, chunk_action_mask, flat_chunk, optimizer_step, polyak
from rql.agents.fields import layer_sizes, non_negative, positive_int, unit_interval
from rql.agents.kit import network
from rql.nets import VelocityField


@dataclasses.dataclass
class FlowBCConfig(AgentConfig):
    """Flow-matching behaviour cloning."""

    horizon: int = dataclasses.field(default=3, metadata=positive_int())
    """Action chunk length h."""
    flow_steps: int = dataclasses.field(default=10, metadata=positive_int())
    """Euler steps F used for sampling."""
    actor_hidden_dims: tuple[int, ...] = dataclasses.field(default=(512, 512, 512, 512), metadata=layer_sizes())
    """Hidden layer sizes of the velocity field."""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden activation of the velocity field."""
    actor_out_init_scale: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Variance-scaling factor of the velocity field's output layer."""
    ema: float = dataclasses.field(default=0.999, metadata=unit_interval())
    """EMA decay of the actor copy used for evaluation."""


def make(config: FlowBCConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    actor_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm, c.actor_out_init_scale), c)
    tx = optax.adam(c.lr)

    def init(key):
        params = {"actor": actor_def.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim)), jnp.zeros((1, 1)))}
        return {"params": params, "target_actor": params["actor"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        k_noise, k_time = jax.random.split(key)
        noise = jax.random.normal(k_noise, (B, chunk_dim))
        t = jax.random.uniform(k_time, (B, 1))
        x_t, target_vel = flow.interpolate(noise, flat_chunk(batch, h), t)
        pred = actor_def.apply(params["actor"], batch.observations[:, 0], x_t, t)
        return {"bc": jnp.mean(jnp.square(pred - target_vel) * chunk_action_mask(batch, h, action_dim))}, {}

    def update(state, batch: Batch, key):
        def loss(params):
            bc = loss_terms(params, state, batch, key)[0]["bc"]
            return bc, {"loss/total": bc, "loss/bc": bc}

        params, opt_state, metrics = optimizer_step(tx, loss, state)
        return {
            "params": params,
            "target_actor": polyak(state["params"]["actor"], state["target_actor"], 1.0 - c.ema),
            "opt_state": opt_state,
        }, metrics

    def act(state, obs, key):
        noise = jax.random.normal(key, (obs.shape[0], chunk_dim))
        vel = lambda o, x, t: actor_def.apply(state["target_actor"], o, x, t)  # noqa: E731
        return flow.euler_sample(vel, obs, noise, F).reshape(obs.shape[0], h, action_dim)

    return Agent("flow-bc", c, obs_dim, action_dim, init, update, act, {"loss_terms": loss_terms})
