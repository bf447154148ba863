"""FAWAC: advantage-weighted flow matching (AWAC/AWR with a flow policy), as the QAM suite runs it.

Notation as in :mod:`rql.agents.fbrac`: ``s_0``, the chunk ``a``, ``s_h``, the velocity field
``v_theta``, ``pi_theta(s, z)`` its F Euler steps from ``z ~ N(0, I)`` clipped to [-1, 1],
``agg(Q) = mean_E Q - rho std_E Q``; ``V_psi(s)`` a state-value network.

One update (one Adam step on the sum of the losses):

critic   next chunk ``a' = pi_theta(s_h, z')``; target
         ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg(Q_target(s_h, a'))``;
         ``L_critic = mean_{E,B} valid (Q_e(s_0, a) - y)^2``
value    ``L_value = mean_{E,B} valid (Q_target,e(s_0, a) - V_psi(s_0))^2``: V regresses on every target
         critic member at the dataset's chunk (a plain mean, no expectile: the behaviour's value)
actor    advantage ``A = mean_E Q(s_0, a) - V(s_0)`` (both frozen), weight ``w = min(exp(inv_temp * A), 100)``;
         ``L_actor = mean_B valid w mean_dims (v_theta(s_0, x_t, t) - (a - x0))^2``,
         ``x_t = (1 - t) x0 + t a``, ``x0 ~ N(0, I)``, ``t ~ U(0, 1)``
total    ``L_critic + L_value + L_actor``
then the target critic moves (Polyak ``tau``) towards the parameters the step started from.

Acting samples ``pi_theta(s, z)`` (the suite's FAWAC has no best-of-n). Defaults are the suite's
``get_config()``; ``--task`` sets its common protocol and the per-environment ``inv_temp``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import non_negative, positive
from rql.agents.kit import Agent, Batch, SuiteConfig, chunk_td, suite_spec, td_loss, update_with_targets, value_stats
from rql.agents.kit import network
from rql.nets import MLP, Ensemble, VelocityField


@dataclasses.dataclass
class FAWACConfig(SuiteConfig):
    """FAWAC. Defaults are the suite's ``get_config()``."""

    inv_temp: float = dataclasses.field(default=10.0, metadata=non_negative())
    """Inverse temperature of the advantage weights ``exp(inv_temp * A)``."""
    max_weight: float = dataclasses.field(default=100.0, metadata=positive(finite=False))
    """Upper clip of the advantage weights (the suite's, after IQL's)."""


def make(config: FAWACConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    value_def = network(MLP(c.value_hidden_dims, 1, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def value(params, obs):
        return value_def.apply(params, obs)[..., 0]

    def flow_actions(flow_params, obs, noise):
        return flow.euler_sample(lambda o, x, t: flow_def.apply(flow_params, o, x, t), obs, noise, F)

    def sample_actions(params, obs, key):
        return flow_actions(params["flow"], obs, jax.random.normal(key, (obs.shape[0], chunk_dim)))

    def weights(params, obs, actions):
        """``min(exp(inv_temp * (mean_E Q(s, a) - V(s))), max_weight)``."""
        adv = critic(params["critic"], obs, actions).mean(axis=0) - value(params["value"], obs)
        return jnp.minimum(jnp.exp(adv * c.inv_temp), c.max_weight), adv

    def init(key):
        k_flow, k_critic, k_value = jax.random.split(key, 3)
        o, x = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "critic": critic_def.init(k_critic, o, x),
            "value": value_def.init(k_value, o),
        }
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        """Keys: ``split(key)`` -> next chunk, flow matching (x0 then t)."""
        k_next, k_bc = jax.random.split(key)
        s0, sh, actions, reward_sum, bootstrap, valid = chunk_td(batch, h, c.discount)
        frozen = jax.lax.stop_gradient(params)

        qs = critic(params["critic"], s0, actions)
        next_actions = sample_actions(frozen, sh, k_next)
        next_qs = critic(state["target_critic"], sh, next_actions)
        critic_loss, target = td_loss(qs, next_qs, reward_sum, bootstrap, valid, c.rho)

        v = value(params["value"], s0)
        value_loss = jnp.mean(jnp.square(critic(state["target_critic"], s0, actions) - v) * valid)

        # Advantage-weighted flow matching.
        w, adv = weights(frozen, s0, actions)
        k_x0, k_t = jax.random.split(k_bc)
        x0 = jax.random.normal(k_x0, actions.shape)
        t = jax.random.uniform(k_t, (actions.shape[0], 1))
        x_t, target_vel = flow.interpolate(x0, actions, t)
        sq = jnp.mean(jnp.square(flow_def.apply(params["flow"], s0, x_t, t) - target_vel), axis=-1)
        actor_loss = jnp.mean(sq * w * valid)

        terms = {"critic": critic_loss, "value": value_loss, "actor": actor_loss}
        stats = {
            **value_stats(qs, target, valid),
            "value/v_mean": v.mean(),
            "actor/adv_mean": adv.mean(),
            "actor/weight_mean": w.mean(),
            "actor/weight_max": w.max(),
            "actor/bc": jnp.mean(sq * valid),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["value"] + terms["actor"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def act(state, obs, key):
        return sample_actions(state["params"], obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "critic": critic, "value": value, "weights": weights,
              "flow_actions": flow_actions}
    return Agent("fawac", c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [suite_spec("fawac", "FAWAC: flow matching weighted by exp(inv_temp * advantage)", FAWACConfig, make)]
