"""FBRAC: a behaviour-cloning flow pushed up the critic by backpropagation through time (the QAM
suite's "BC flow + Q maximisation via direct BPTT", its flow version of BRAC/ReBRAC).

Notation: ``s_0`` the window's first observation, ``a`` the flattened chunk of its first ``h``
actions, ``s_h`` the observation after the chunk, ``v_theta(s, x, t)`` the velocity field,
``pi_theta(s, z)`` = ``clip(x_F, -1, 1)`` after F Euler steps ``x_{k+1} = x_k + v_theta(s, x_k, k/F) / F``
from ``x_0 = z ~ N(0, I)``, ``agg(Q) = mean_E Q - rho std_E Q``.

One update (one Adam step on the sum of the losses):

critic   next chunk ``a' = pi_theta(s_h, z')`` (best of ``best_of_n`` samples by ``mean_E Q``);
         target ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg(Q_target(s_h, a'))``;
         ``L_critic = mean_{E,B} valid (Q_e(s_0, a) - y)^2``
BC flow  ``L_bc = mean_B valid mean_dims (v_theta(s_0, x_t, t) - (a - z))^2`` with
         ``x_t = (1 - t) z + t a``, ``t ~ U(0, 1)``
Q        ``L_q = -mean_B mean_E Q(s_0, pi_theta(s_0, z))`` with the critic frozen; the gradient
         reaches ``theta`` through all F Euler steps (BPTT)
total    ``L_critic + L_bc + L_q / alpha``
then the target critic moves (Polyak ``tau``) towards the parameters the step started from.

Acting samples ``pi_theta(s, z)`` (best of ``best_of_n`` by ``mean_E Q``). Defaults are the
suite's ``get_config()``; ``--task`` sets its common protocol and the per-environment ``alpha``.

Its helpers (the suite's TD loss, its valid-weighted flow-matching loss, best-of-n selection) live
in :mod:`rql.agents.kit`, shared with fawac, fedit and dsrl.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import positive, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    SuiteConfig,
    best_of_n,
    chunk_td,
    network,
    suite_bc_flow_loss,
    suite_spec,
    td_loss,
    update_with_targets,
    value_stats,
)
from rql.nets import Ensemble, VelocityField


@dataclasses.dataclass
class FBRACConfig(SuiteConfig):
    """FBRAC. Defaults are the suite's ``get_config()``."""

    alpha: float = dataclasses.field(default=100.0, metadata=positive())
    """Divisor of the Q term: the actor loss is ``bc + q / alpha`` (the behaviour constraint)."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Flow samples per state for acting and for the critic's next chunk; the one with the highest
    ``mean_E Q`` is taken."""


def make(config: FBRACConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def flow_actions(flow_params, obs, noise):
        """``pi(s, z)``: F Euler steps from ``noise``, clipped; differentiable in ``flow_params``."""
        return flow.euler_sample(lambda o, x, t: flow_def.apply(flow_params, o, x, t), obs, noise, F)

    def sample_actions(params, obs, key):
        """Best of ``best_of_n`` flow samples per state, by the critic's ensemble mean."""
        noise = jax.random.normal(key, (obs.shape[0], c.best_of_n, chunk_dim))
        obs_n = jnp.repeat(obs[:, None], c.best_of_n, axis=1)
        candidates = flow_actions(params["flow"], obs_n, noise)
        return best_of_n(lambda o, a: critic(params["critic"], o, a), obs, candidates)

    def init(key):
        k_flow, k_critic = jax.random.split(key)
        o, x = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim))
        params = {"flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))), "critic": critic_def.init(k_critic, o, x)}
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        """Keys: ``split(key, 3)`` -> next chunk, BC flow (x0 then t), policy noise."""
        k_next, k_bc, k_pi = jax.random.split(key, 3)
        s0, sh, actions, reward_sum, bootstrap, valid = chunk_td(batch, h, c.discount)
        frozen = jax.lax.stop_gradient(params)

        next_actions = sample_actions(frozen, sh, k_next)
        qs = critic(params["critic"], s0, actions)
        next_qs = critic(state["target_critic"], sh, next_actions)
        critic_loss, target = td_loss(qs, next_qs, reward_sum, bootstrap, valid, c.rho)

        bc_loss = suite_bc_flow_loss(lambda o, x, t: flow_def.apply(params["flow"], o, x, t), s0, actions, valid, k_bc)

        # BPTT: the policy's chunk keeps its gradient through every Euler step; the critic is frozen.
        z = jax.random.normal(k_pi, (s0.shape[0], chunk_dim))
        pi = flow_actions(params["flow"], s0, z)
        q_pi = critic(frozen["critic"], s0, pi).mean(axis=0)
        q_loss = -q_pi.mean()

        terms = {"critic": critic_loss, "bc": bc_loss, "q": q_loss}
        stats = {**value_stats(qs, target, valid), "value/policy_q_mean": q_pi.mean(),
                 "actor/mse": jnp.mean(jnp.square(pi - actions))}
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["bc"] + terms["q"] / c.alpha
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def act(state, obs, key):
        return sample_actions(state["params"], obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "critic": critic, "flow_actions": flow_actions,
              "sample_actions": sample_actions}
    return Agent("fbrac", c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [suite_spec("fbrac", "FBRAC: BC flow pushed up Q by backpropagation through its Euler steps",
                       FBRACConfig, make)]
