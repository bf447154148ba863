"""ReBRAC (Tarasov et al., 2023): TD3+BC with LayerNorm critics and separate behaviour
penalties on the actor and the critic target, as in the FQL codebase, with action chunks.

One update (critic and actor share one Adam step on the sum of the losses); updates are
counted from 1 and update ``k`` is *full* when ``k % actor_freq == 0``:

critic  next chunk ``a' = clip(pi_target(s_h) + clip(eps, -c, c), -1, 1)``, ``eps ~ N(0, actor_noise^2)``;
        ``q' = min_E Q_target(s_h, a') - alpha_critic ||a'_0 - a_h||^2`` (``a'_0`` the first action of
        the next chunk, ``a_h`` the dataset's action after the chunk: the one next action a window
        holds; with h = 1 this is the whole next action as in ReBRAC);
        target ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} q'``; loss squared error
        averaged over members and valid windows
actor   on full updates only: ``-mean(lambda min_E Q(s_0, pi(s_0))) + alpha_actor mean ||pi(s_0) - a||^2``
        with ``lambda = 1 / mean|min_E Q|`` (no gradient) and action dims after an episode end masked;
        on the other updates the actor's loss is zero (its Adam moments still step, as in the reference)
targets Polyak (tau) for critic and actor, on full updates only.

Acting is deterministic: ``pi(s)`` (the reference evaluates at temperature 0, i.e. without noise).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql.agents.base import (
    ActorCriticConfig,
    Agent,
    Batch,
    chunk_action_mask,
    flat_chunk,
    n_step_return,
    optimizer_step,
    polyak,
)
from rql.nets import Ensemble, GaussianActor


@dataclasses.dataclass
class ReBRACConfig(ActorCriticConfig):
    """ReBRAC. Defaults are the FQL codebase's ReBRAC."""

    alpha_actor: float = 0.0
    """Weight of the actor's behaviour-cloning penalty (tuned per environment)."""
    alpha_critic: float = 0.0
    """Weight of the behaviour penalty on the critic's next action (tuned per environment)."""
    actor_freq: int = 2
    """Update the actor (and both targets) every N updates."""
    actor_noise: float = 0.2
    """Standard deviation of the target policy smoothing noise."""
    actor_noise_clip: float = 0.5
    """Clip of the target policy smoothing noise."""
    ensemble: int = 2
    """Number of critics (targets and the actor use their minimum)."""
    actor_fc_scale: float = 0.01
    """Variance-scaling factor of the actor's output layer."""


def make(config: ReBRACConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h = c.horizon
    chunk_dim = h * action_dim
    actor_def = GaussianActor(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm, True, c.actor_fc_scale)
    critic_def = Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm)
    tx = optax.adam(c.lr)

    def actor(params, obs):
        return actor_def.apply(params, obs)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        o = jnp.zeros((1, obs_dim))
        params = {
            "actor": actor_def.init(k_actor, o),
            "critic": critic_def.init(k_critic, o, jnp.zeros((1, chunk_dim))),
        }
        return {
            "params": params,
            "target_actor": params["actor"],
            "target_critic": params["critic"],
            "opt_state": tx.init(params),
            "updates": jnp.zeros((), jnp.int32),
        }

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)

        # Critic: smoothed target policy, behaviour penalty on its next action.
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        next_actions = actor(state["target_actor"], sh)
        eps = jnp.clip(jax.random.normal(key, (B, chunk_dim)) * c.actor_noise, -c.actor_noise_clip, c.actor_noise_clip)
        next_actions = jnp.clip(next_actions + eps, -1.0, 1.0)
        next_q = critic(state["target_critic"], sh, next_actions).min(axis=0)
        penalty = jnp.sum(jnp.square(next_actions[:, :action_dim] - batch.actions[:, h]), axis=-1)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * (next_q - c.alpha_critic * penalty))
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Actor: normalised Q ascent plus behaviour cloning.
        pi = actor(params["actor"], s0)
        q_pi = critic(jax.lax.stop_gradient(params["critic"]), s0, pi).min(axis=0)
        lam = jax.lax.stop_gradient(1.0 / jnp.abs(q_pi).mean())
        q_loss = -jnp.mean(lam * q_pi)
        mse = jnp.sum(jnp.square(pi - actions) * chunk_action_mask(batch, h, action_dim), axis=-1)
        bc_loss = jnp.mean(mse)

        terms = {"critic": critic_loss, "q": q_loss, "bc": bc_loss}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "value/policy_q_mean": q_pi.mean(),
            "value/critic_penalty": penalty.mean(),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def update(state, batch: Batch, key):
        count = state["updates"] + 1
        full = (count % c.actor_freq) == 0
        w = full.astype(jnp.float32)

        def losses(params):
            terms, stats = loss_terms(params, state, batch, key)
            actor_loss = terms["q"] + c.alpha_actor * terms["bc"]
            total = terms["critic"] + w * actor_loss
            metrics = {"loss/total": total, "loss/actor": actor_loss, **{f"loss/{k}": v for k, v in terms.items()}}
            return total, {**metrics, **stats, "actor/full_update": w}

        params, opt_state, metrics = optimizer_step(tx, losses, state)
        old = state["params"]

        def on_full(new, kept):
            return jax.tree_util.tree_map(lambda n, k: jnp.where(full, n, k), new, kept)

        new_state = {
            "params": params,
            "target_actor": on_full(polyak(old["actor"], state["target_actor"], c.tau), state["target_actor"]),
            "target_critic": on_full(polyak(old["critic"], state["target_critic"], c.tau), state["target_critic"]),
            "opt_state": opt_state,
            "updates": count,
        }
        return new_state, metrics

    def act(state, obs, key):
        del key  # deterministic policy
        return actor(state["params"]["actor"], obs).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "actor": actor, "critic": critic}
    return Agent("rebrac", c, obs_dim, action_dim, init, update, act, extras)
