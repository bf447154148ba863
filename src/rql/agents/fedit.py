"""FEdit: a behaviour-cloning flow followed by a bounded Gaussian edit policy trained with SAC
(the QAM suite's flow version of EXPO's edit policy, Dong et al. 2025, arXiv:2507.07986).

Notation as in :mod:`rql.agents.fbrac`: ``s_0``, the chunk ``a``, ``s_h``, ``pi_theta(s, z)`` the BC
flow's F Euler steps from ``z ~ N(0, I)`` clipped to [-1, 1], ``agg(Q) = mean_E Q - rho std_E Q``.
The edit policy ``e ~ pi_phi(. | s, a_flow)`` is a tanh-squashed diagonal Gaussian (``|e| < 1``);
the executed chunk is ``a_edit = clip(a_flow + edit_scale * e, -1, 1)``, so each dimension moves by
at most ``edit_scale`` from the flow's chunk. ``alpha = exp(log_alpha)`` is SAC's temperature.

One update (one Adam step on the sum of the losses):

critic   next chunk ``a' = a_edit`` at ``s_h`` (best of ``best_of_n`` by ``mean_E Q``); target
         ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg(Q_target(s_h, a'))``;
         ``L_critic = mean_{E,B} valid (Q_e(s_0, a) - y)^2``
BC flow  ``L_bc = mean_B valid mean_dims (v_theta(s_0, x_t, t) - (a - x0))^2``
edit     ``a_flow = pi_theta(s_0, z)`` (no gradient into the flow), reparameterised ``e``;
         ``L_edit_q = -mean_B mean_E Q(s_0, a_edit)`` (critic frozen),
         ``L_edit_entropy = mean_B alpha log pi_phi(e | s_0, a_flow)`` (alpha frozen)
alpha    ``L_alpha = alpha (H - H_target)`` with ``H = -mean_B log pi_phi`` (no gradient),
         ``H_target = edit_target_entropy`` or ``-edit_target_entropy_multiplier * h * action_dim``
total    ``L_critic + L_bc + L_edit_q + L_edit_entropy + L_alpha``
then the target critic moves (Polyak ``tau``) towards the parameters the step started from.

Acting: ``a_edit`` at ``s`` with a sampled edit (best of ``best_of_n``). Defaults are the suite's
``get_config()``; ``--task`` sets its common protocol and the per-environment ``edit_scale``. The
edit network and its sampler are :mod:`rql.agents.qam`'s (QAM-E uses the same edit policy).
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
class FEditConfig(SuiteConfig):
    """FEdit. Defaults are the suite's ``get_config()``."""

    edit_scale: float = dataclasses.field(default=0.0, metadata=non_negative())
    """Largest change of each action dimension the edit policy can make (tuned per environment)."""
    edit_target_entropy: float | None = dataclasses.field(default=None, metadata=any_number(optional=True))
    """SAC target entropy of the edit policy; None: ``-edit_target_entropy_multiplier * h * action_dim``."""
    edit_target_entropy_multiplier: float = dataclasses.field(default=0.5, metadata=any_number())
    """Multiplier of the chunk's dimension in the automatic target entropy."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Edited samples per state for acting and for the critic's next chunk; the one with the highest
    ``mean_E Q`` is taken."""


def make(config: FEditConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    target_entropy = (c.edit_target_entropy if c.edit_target_entropy is not None
                      else -c.edit_target_entropy_multiplier * chunk_dim)
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    edit_def = network(TanhGaussian(c.actor_hidden_dims, chunk_dim), c, concat=True)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def flow_actions(flow_params, obs, noise):
        return flow.euler_sample(lambda o, x, t: flow_def.apply(flow_params, o, x, t), obs, noise, F)

    def edit(edit_params, obs, actions, key):
        """``(clip(a + edit_scale * e, -1, 1), log pi(e | s, a))`` with ``e`` the squashed edit."""
        mean, log_std = edit_def.apply(edit_params, obs, actions)
        e, log_prob = tanh_gaussian_sample(mean, log_std, key)
        return jnp.clip(actions + c.edit_scale * e, -1.0, 1.0), log_prob

    def sample_actions(params, obs, key):
        """Keys: ``split(key)`` -> flow noise, edit. Best of ``best_of_n`` edited chunks."""
        k_noise, k_edit = jax.random.split(key)
        obs_n = jnp.repeat(obs[:, None], c.best_of_n, axis=1)
        base = flow_actions(params["flow"], obs_n, jax.random.normal(k_noise, (obs.shape[0], c.best_of_n, chunk_dim)))
        edited, _ = edit(params["edit"], obs_n, base, k_edit)
        return best_of_n(lambda o, a: critic(params["critic"], o, a), obs, edited)

    def init(key):
        k_flow, k_edit, k_critic = jax.random.split(key, 3)
        o, x = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "edit": edit_def.init(k_edit, o, x),
            "critic": critic_def.init(k_critic, o, x),
            "log_alpha": jnp.zeros(()),
        }
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        """Keys: ``split(key, 4)`` -> next chunk, BC flow (x0 then t), flow noise, edit."""
        k_next, k_bc, k_z, k_edit = jax.random.split(key, 4)
        s0, sh, actions, reward_sum, bootstrap, valid = chunk_td(batch, h, c.discount)
        frozen = jax.lax.stop_gradient(params)

        next_actions = sample_actions(frozen, sh, k_next)
        qs = critic(params["critic"], s0, actions)
        next_qs = critic(state["target_critic"], sh, next_actions)
        critic_loss, target = td_loss(qs, next_qs, reward_sum, bootstrap, valid, c.rho)

        bc_loss = suite_bc_flow_loss(lambda o, x, t: flow_def.apply(params["flow"], o, x, t), s0, actions, valid, k_bc)

        # SAC on the edit policy, on top of the (frozen) flow's chunk.
        base = flow_actions(frozen["flow"], s0, jax.random.normal(k_z, (s0.shape[0], chunk_dim)))
        edited, log_prob = edit(params["edit"], s0, base, k_edit)
        q_edit = critic(frozen["critic"], s0, edited).mean(axis=0)
        edit_q_loss = -q_edit.mean()
        edit_entropy_loss = jnp.mean(log_prob * jnp.exp(frozen["log_alpha"]))
        entropy = -jax.lax.stop_gradient(log_prob).mean()
        alpha_loss = jnp.exp(params["log_alpha"]) * (entropy - target_entropy)

        terms = {"critic": critic_loss, "bc": bc_loss, "edit_q": edit_q_loss, "edit_entropy": edit_entropy_loss,
                 "alpha": alpha_loss}
        stats = {
            **value_stats(qs, target, valid),
            "value/policy_q_mean": q_edit.mean(),
            "actor/edit_entropy": entropy,
            "actor/alpha": jnp.exp(params["log_alpha"]),
            "actor/edit_size": jnp.mean(jnp.abs(edited - base)),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        actor = terms["bc"] + terms["edit_q"] + terms["edit_entropy"] + terms["alpha"]
        total = terms["critic"] + actor
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def act(state, obs, key):
        return sample_actions(state["params"], obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "critic": critic, "flow_actions": flow_actions,
              "edit": edit, "sample_actions": sample_actions, "target_entropy": target_entropy}
    return Agent("fedit", c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [suite_spec("fedit", "FEdit: BC flow plus a SAC edit policy bounded by edit_scale", FEditConfig, make)]
