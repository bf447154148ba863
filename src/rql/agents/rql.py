"""Reversal Q-Learning (Oberai, Park, Levine, 2026).

One update, read against ``spec/RQL.md``:

critic
  next value   ``q' = mean_E V_target(s_h, x'0, 0) - rho * std_E``, ``x'0 ~ N(0, I)``
  reversal     from the dataset chunk at ``t = 1`` back by ``d`` (half ``U(0,1)``, half ``k/F``)
               in ``F`` sub-steps with the current actor, no gradient -> ``(x_t, t)``
  target       ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} q'`` (no ``t``!)
  loss         expectile(``y - V(s_0, x_t, t)``) for every member, invalid windows masked
actor
  BC           flow matching on the interpolant, action dims after an episode end masked, x alpha
  ascent       ``-mean_E V(s_0, x_t + v(s_0, x_t, t) min(1/F, 1-t), min(t + 1/F, 1))``, gradient
               reaches the actor through this one call of ``v`` only
then one Adam step on the sum, Polyak target value (tau) and EMA actor (ema).

Ablations (config switches, off by default):
  ``value_target="bootstrap"``  value bootstrapped through every flow step: the value at
      ``(x_t, t)`` regresses on ``V_target`` one Euler step later (the F-fold horizon RQL removes),
      and only at ``t = 1`` on the environment target.
  ``pessimism=False``           no ensemble pessimism (``rho`` ignored, plain ensemble mean).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.base import (
    ActorCriticConfig,
    Agent,
    Batch,
    chunk_action_mask,
    expectile_loss,
    flat_chunk,
    n_step_return,
    optimizer_step,
    polyak,
)
from rql.agents.fields import non_negative, open_unit_interval, positive_int, unit_interval
from rql.agents.kit import network
from rql.nets import Ensemble, VelocityField


@dataclasses.dataclass
class RQLConfig(ActorCriticConfig):
    """Reversal Q-Learning. Defaults are the reference implementation's."""

    horizon: int = dataclasses.field(default=3, metadata=positive_int())
    """Action chunk length h (reference default 3; the per-environment presets set 1 or 5)."""
    alpha: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Weight of the flow-matching behaviour-cloning loss."""
    expectile: float = dataclasses.field(default=0.5, metadata=open_unit_interval())
    """Expectile kappa of the value loss (0.5 is plain squared error)."""
    rho: float = dataclasses.field(default=0.0, metadata=non_negative())
    """Pessimism: the next value is mean_E - rho * std_E over the target ensemble."""
    ensemble: int = dataclasses.field(default=10, metadata=positive_int())
    """Number of value networks E."""
    flow_steps: int = dataclasses.field(default=10, metadata=positive_int())
    """Euler steps F of the flow, for sampling and for the reversal."""
    actor_out_init_scale: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Variance-scaling factor of the velocity field's output layer."""
    ema: float = dataclasses.field(default=0.999, metadata=unit_interval())
    """EMA decay of the actor copy used for evaluation."""
    value_target: Literal["reversal", "bootstrap"] = "reversal"
    """Ablation: 'reversal' (RQL) or 'bootstrap' through every flow step (F-fold horizon)."""
    pessimism: bool = True
    """Ablation: False ignores rho and aggregates the ensemble by its mean."""


def make(config: RQLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    actor_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm, c.actor_out_init_scale), c)
    value_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def velocity(params):
        return lambda o, x, t: actor_def.apply(params, o, x, t)

    def value(params, o, x, t):
        return value_def.apply(params, o, x, t)

    def aggregate(qs):
        if c.pessimism:
            return qs.mean(axis=0) - c.rho * qs.std(axis=0)
        return qs.mean(axis=0)

    def init(key):
        k_actor, k_value = jax.random.split(key)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        t = jnp.zeros((1, 1))
        params = {"actor": actor_def.init(k_actor, o, x, t), "value": value_def.init(k_value, o, x, t)}
        return {
            "params": params,
            "target_actor": params["actor"],
            "target_value": params["value"],
            "opt_state": tx.init(params),
        }

    def critic_target(params, state, batch: Batch, k_next, k_dist):
        """``(target, x_t, t, valid)``: partial actions by reversal and their (t-free) target."""
        B = batch.observations.shape[0]
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        frozen_actor = velocity(jax.lax.stop_gradient(params["actor"]))
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        next_noise = jax.random.normal(k_next, (B, chunk_dim))
        next_q = aggregate(value(state["target_value"], sh, next_noise, jnp.zeros((B, 1))))
        env_target = reward_sum + bootstrap * next_q
        d = flow.reversal_distances(k_dist, B, F)
        x_t, t = flow.reverse(frozen_actor, s0, flat_chunk(batch, h), d, F)
        x_t = jax.lax.stop_gradient(x_t)
        if c.value_target == "reversal":
            target = env_target
        else:
            # Ablation: one flow step is one decision step, bootstrapped on the target value.
            x_next, t_next = flow.one_step(frozen_actor, s0, x_t, t, F)
            inner = aggregate(value(state["target_value"], s0, x_next, t_next))
            target = jnp.where(t[:, 0] >= 1.0 - 1e-6, env_target, inner)
        return jax.lax.stop_gradient(target), x_t, t, valid

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        k_next, k_dist, k_noise, k_time = jax.random.split(key, 4)
        s0 = batch.observations[:, 0]
        actions = flat_chunk(batch, h)

        # Critic: target independent of the partial-action time.
        target, x_t, t, valid = critic_target(params, state, batch, k_next, k_dist)
        qs = value(params["value"], s0, x_t, t)
        critic_loss = jnp.mean(expectile_loss(target - qs, c.expectile) * valid)

        # Actor: flow-matching BC on the interpolant and one-step value ascent from it.
        noise = jax.random.normal(k_noise, (B, chunk_dim))
        tau_t = jax.random.uniform(k_time, (B, 1))
        x_tau, target_vel = flow.interpolate(noise, actions, tau_t)
        pred = actor_def.apply(params["actor"], s0, x_tau, tau_t)
        bc_loss = jnp.mean(jnp.square(pred - target_vel) * chunk_action_mask(batch, h, action_dim))
        x_next = x_tau + pred * jnp.minimum(1.0 / F, 1.0 - tau_t)
        t_next = jnp.minimum(tau_t + 1.0 / F, 1.0)
        q_pe = value(jax.lax.stop_gradient(params["value"]), s0, x_next, t_next).mean(axis=0)
        actor_loss = -jnp.mean(q_pe * valid)
        terms = {"critic": critic_loss, "actor": actor_loss, "bc": bc_loss}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "value/ascent_q_mean": q_pe.mean(),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["actor"] + c.alpha * terms["bc"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    def update(state, batch: Batch, key):
        params, opt_state, metrics = optimizer_step(tx, lambda p: losses(p, state, batch, key), state)
        # Targets move towards the parameters the step started from, as the reference does.
        old = state["params"]
        new_state = {
            "params": params,
            "target_actor": polyak(old["actor"], state["target_actor"], 1.0 - c.ema),
            "target_value": polyak(old["value"], state["target_value"], c.tau),
            "opt_state": opt_state,
        }
        return new_state, metrics

    def act(state, obs, key):
        noise = jax.random.normal(key, (obs.shape[0], chunk_dim))
        x = flow.euler_sample(velocity(state["target_actor"]), obs, noise, F)
        return x.reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "critic_target": critic_target, "value": value, "velocity": velocity}
    return Agent("rql", c, obs_dim, action_dim, init, update, act, extras)
