"""Advantage-weighted flow matching (AWFM): a method written outside rql, as a user would.

Flow behaviour cloning whose loss is weighted, window by window, by ``min(exp(A / temperature),
max_weight)``, with the advantage ``A = Q(s, a) - V(s)`` of the dataset's action chunk learned as in
IQL: ``V`` regresses on the target critics (``mean - rho * std``) with an expectile loss, each critic
on the chunked n-step target bootstrapped from ``V(s_h)``. Acting samples the flow.

    rql train --agent examples/awfm.py --task cube-single-play-singletask-task2-v0 --preset small
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import open_unit_interval, positive
from rql.agents.kit import (SMALL, Agent, AgentSpec, SuiteConfig, aggregate, chunk_action_mask, chunk_td,
                            expectile_loss, update_with_targets, value_stats)
from rql.agents.presets import chunk_env_preset
from rql.nets import Ensemble, VelocityField


@dataclasses.dataclass
class AWFMConfig(SuiteConfig):
    """Advantage-weighted flow matching (the example plugin agent)."""

    temperature: float = dataclasses.field(default=1.0, metadata=positive())
    """Advantage temperature: weights are exp(A / temperature)."""
    max_weight: float = dataclasses.field(default=100.0, metadata=positive())
    """Upper clip of the weights."""
    expectile: float = dataclasses.field(default=0.9, metadata=open_unit_interval())
    """Expectile of the value's regression on the critics."""


def make(c: AWFMConfig, obs_dim: int, action_dim: int) -> Agent:
    h, chunk = c.horizon, c.horizon * action_dim
    flow_def = VelocityField(c.actor_hidden_dims, chunk, c.actor_layer_norm)
    critic_def = Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm)
    value_def = Ensemble(c.value_hidden_dims, 1, c.layer_norm)
    tx = optax.adam(c.lr)

    def init(key):
        k_flow, k_critic, k_value = jax.random.split(key, 3)
        o, a, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk)), jnp.zeros((1, 1))
        params = {"flow": flow_def.init(k_flow, o, a, t), "critic": critic_def.init(k_critic, o, a),
                  "value": value_def.init(k_value, o)}
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def losses(params, state, batch, key):
        s0, sh, a, reward_sum, bootstrap, valid = chunk_td(batch, h, c.discount)
        q_target = aggregate(critic_def.apply(state["target_critic"], s0, a), "pessimistic", c.rho)
        v = value_def.apply(params["value"], s0)[0]
        value_loss = jnp.mean(expectile_loss(q_target - v, c.expectile) * valid)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * value_def.apply(params["value"], sh)[0])
        qs = critic_def.apply(params["critic"], s0, a)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)
        weight = jax.lax.stop_gradient(jnp.minimum(jnp.exp((q_target - v) / c.temperature), c.max_weight))
        k_x0, k_t = jax.random.split(key)
        x0, t = jax.random.normal(k_x0, a.shape), jax.random.uniform(k_t, (a.shape[0], 1))
        x_t, velocity = flow.interpolate(x0, a, t)
        err = jnp.square(flow_def.apply(params["flow"], s0, x_t, t) - velocity) * chunk_action_mask(batch, h, action_dim)
        bc = jnp.mean(err.mean(axis=-1) * weight * valid)
        total = value_loss + critic_loss + bc
        return total, {"loss/total": total, "loss/critic": critic_loss, "loss/value": value_loss, "loss/bc": bc,
                       "actor/weight_mean": weight.mean(), **value_stats(qs, target, valid)}

    def act(state, obs, key):
        noise = jax.random.normal(key, (obs.shape[0], chunk))
        velocity = lambda o, x, t: flow_def.apply(state["params"]["flow"], o, x, t)  # noqa: E731
        return flow.euler_sample(velocity, obs, noise, c.flow_steps).reshape(obs.shape[0], h, action_dim)

    update = update_with_targets(tx, losses, ["critic"], c.tau)
    return Agent("awfm", c, obs_dim, action_dim, init, update, act, {"losses": losses})


# What rql reads from this file: its agents. --task sets the RQL protocol's chunk length, discount and
# reward sparsity; --preset small gives 2x256 networks and two critics.
SPECS = [AgentSpec("awfm", "advantage-weighted flow matching (example plugin)", AWFMConfig, make,
                   chunk_env_preset, {"small": SMALL, "reference": {}}, settings="rql-paper")]
