"""DSRL: diffusion steering by RL in the noise space of a behaviour-cloning flow (Wagenmaker et al.
2025, arXiv:2506.15799), as the QAM suite runs it.

Notation as in :mod:`rql.agents.fbrac`: ``s_0``, the chunk ``a``, ``s_h``, ``agg(Q) = mean_E Q - rho
std_E Q``. ``f(s, w)`` is the latent BC flow's F Euler steps from the noise ``w`` clipped to [-1, 1]
(the target flow when ``use_target_latent``; never differentiated). The actor is a tanh-squashed
Gaussian over noises, ``w = noise_scale * e``, ``e ~ pi_phi(. | s)``, ``|e| < 1``: it chooses the
noise, the flow maps it to the chunk ``f(s, w)``. ``Q^w_psi(s, w)`` is a latent critic ensemble on
noises; ``alpha = exp(log_alpha)`` is SAC's temperature.

One update (one Adam step on the sum of the losses):

critic   next chunk ``a' = f(s_h, w')``, ``w' = noise_scale * e'`` (best of ``best_of_n`` by
         ``mean_E Q``); ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg(Q_target(s_h, a'))``;
         ``L_critic = mean_{E,B} valid (Q_e(s_0, a) - y)^2``
distill  ``L_distill = mean_{E,B} (Q^w_e(s_0, w) - Q_e(s_0, f(s_0, w)))^2``, ``w ~ N(0, I)`` (unscaled),
         critic frozen: the latent critic learns the critic's value of the chunk its noise maps to
BC flow  ``L_bc = mean_B valid mean_dims (v_theta(s_0, x_t, t) - (a - x0))^2``
actor    ``L_actor = mean_B (alpha log pi_phi(e | s_0) - mean_E Q^w(s_0, noise_scale * e))`` with ``e``
         reparameterised, the latent critic and alpha frozen
alpha    ``L_alpha = alpha (H - H_target)``, ``H = -mean_B log pi_phi`` (no gradient),
         ``H_target = target_entropy`` or ``-target_entropy_multiplier * h * action_dim``
total    ``L_critic + L_distill + L_bc + L_actor + L_alpha``
then the target critic and the target flow move (Polyak ``tau``) towards the parameters the step
started from.

Acting: ``f(s, noise_scale * e)`` with ``e ~ pi_phi(. | s)`` (best of ``best_of_n``). Defaults are the
suite's ``get_config()``; ``--task`` sets its common protocol and the per-environment
``noise_scale``. The noise actor is :mod:`rql.agents.qam`'s tanh-Gaussian network on ``s`` alone.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import any_number, non_negative, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    SuiteConfig,
    TanhGaussian,
    best_of_n,
    chunk_td,
    network,
    suite_bc_flow_loss,
    suite_spec,
    tanh_gaussian_sample,
    td_loss,
    update_with_targets,
    value_stats,
)
from rql.nets import Ensemble, VelocityField


@dataclasses.dataclass
class DSRLConfig(SuiteConfig):
    """DSRL. Defaults are the suite's ``get_config()``."""

    noise_scale: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Largest magnitude of each noise dimension the actor can choose (tuned per environment)."""
    target_entropy: float | None = dataclasses.field(default=None, metadata=any_number(optional=True))
    """SAC target entropy of the noise actor; None: ``-target_entropy_multiplier * h * action_dim``."""
    target_entropy_multiplier: float = dataclasses.field(default=0.5, metadata=any_number())
    """Multiplier of the chunk's dimension in the automatic target entropy."""
    use_target_latent: bool = True
    """Map noises to chunks with the target (Polyak-averaged) BC flow rather than the trained one."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Steered samples per state for acting and for the critic's next chunk; the one with the
    highest ``mean_E Q`` is taken."""


def make(config: DSRLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    target_entropy = c.target_entropy if c.target_entropy is not None else -c.target_entropy_multiplier * chunk_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    actor_def = network(TanhGaussian(c.actor_hidden_dims, chunk_dim), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def critic(params, obs, actions):
        """``Q`` on chunks, or (with the latent critic's parameters) ``Q^w`` on noises: ``(E, ...)``."""
        return critic_def.apply(params, obs, actions)

    def latent_flow(state):
        """Parameters of the flow that maps noises to chunks (no gradient)."""
        return jax.lax.stop_gradient(state["target_flow"] if c.use_target_latent else state["params"]["flow"])

    def flow_actions(flow_params, obs, noise):
        return flow.euler_sample(lambda o, x, t: flow_def.apply(flow_params, o, x, t), obs, noise, F)

    def latent(actor_params, obs, key):
        """``(w, log pi(e | s))``: the actor's noise ``w = noise_scale * e``, ``|w| < noise_scale``."""
        mean, log_std = actor_def.apply(actor_params, obs)
        e, log_prob = tanh_gaussian_sample(mean, log_std, key)
        return c.noise_scale * e, log_prob

    def sample_actions(state, obs, key):
        """Best of ``best_of_n`` chunks ``f(s, w)`` with ``w`` from the actor (no gradient)."""
        params = jax.lax.stop_gradient(state["params"])
        obs_n = jnp.repeat(obs[:, None], c.best_of_n, axis=1)
        w, _ = latent(params["actor"], obs_n, key)
        candidates = flow_actions(latent_flow(state), obs_n, w)
        return best_of_n(lambda o, a: critic(params["critic"], o, a), obs, candidates)

    def init(key):
        k_flow, k_actor, k_critic, k_z = jax.random.split(key, 4)
        o, x = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "actor": actor_def.init(k_actor, o),
            "critic": critic_def.init(k_critic, o, x),
            "z_critic": critic_def.init(k_z, o, x),
            "log_alpha": jnp.zeros(()),
        }
        return {"params": params, "target_critic": params["critic"], "target_flow": params["flow"],
                "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        """Keys: ``split(key, 4)`` -> next chunk, distillation noise, BC flow (x0 then t), actor."""
        k_next, k_distill, k_bc, k_actor = jax.random.split(key, 4)
        s0, sh, actions, reward_sum, bootstrap, valid = chunk_td(batch, h, c.discount)
        frozen = jax.lax.stop_gradient(params)
        f_params = latent_flow(state)

        qs = critic(params["critic"], s0, actions)
        next_actions = sample_actions(state, sh, k_next)
        next_qs = critic(state["target_critic"], sh, next_actions)
        critic_loss, target = td_loss(qs, next_qs, reward_sum, bootstrap, valid, c.rho)

        # The latent critic learns Q of the chunk each (standard normal) noise is mapped to.
        w = jax.random.normal(k_distill, (s0.shape[0], chunk_dim))
        q_of_w = critic(frozen["critic"], s0, flow_actions(f_params, s0, w))
        distill_loss = jnp.mean(jnp.square(critic(params["z_critic"], s0, w) - q_of_w))

        bc_loss = suite_bc_flow_loss(lambda o, x, t: flow_def.apply(params["flow"], o, x, t), s0, actions, valid, k_bc)

        # SAC in noise space against the (frozen) latent critic.
        w_pi, log_prob = latent(params["actor"], s0, k_actor)
        q_pi = critic(frozen["z_critic"], s0, w_pi).mean(axis=0)
        actor_loss = jnp.mean(log_prob * jnp.exp(frozen["log_alpha"]) - q_pi)
        entropy = -jax.lax.stop_gradient(log_prob).mean()
        alpha_loss = jnp.exp(params["log_alpha"]) * (entropy - target_entropy)

        terms = {"critic": critic_loss, "distill": distill_loss, "bc": bc_loss, "actor": actor_loss,
                 "alpha": alpha_loss}
        stats = {
            **value_stats(qs, target, valid),
            "value/latent_q_mean": q_pi.mean(),
            "actor/entropy": entropy,
            "actor/alpha": jnp.exp(params["log_alpha"]),
            "actor/noise_abs_mean": jnp.mean(jnp.abs(w_pi)),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = (terms["critic"] + terms["distill"]) + (terms["bc"] + terms["actor"] + terms["alpha"])
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic", "flow"), c.tau)

    def act(state, obs, key):
        return sample_actions(state, obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "critic": critic, "flow_actions": flow_actions,
              "latent": latent, "latent_flow": latent_flow, "sample_actions": sample_actions,
              "target_entropy": target_entropy}
    return Agent("dsrl", c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [suite_spec("dsrl", "DSRL: SAC over the noise of a BC flow, noise bounded by noise_scale", DSRLConfig, make)]
