"""ReBRAC (Tarasov et al., 2023): TD3+BC with LayerNorm critics and behaviour penalties on the
actor (and, in the FQL codebase, on the critic target), with action chunks, as the QAM suite runs it.

One update (critic and actor share one Adam step on the sum of the losses); updates are
counted from 1 and update ``k`` is *full* when ``k % actor_freq == 0``:

critic  next chunk ``a' = clip(pi_target(s_h) + clip(eps, -c, c), -1, 1)``, ``eps ~ N(0, actor_noise^2)``;
        ``q' = agg_E Q_target(s_h, a') - alpha_critic ||a'_0 - a_h||^2`` with ``agg`` = ``q_agg``
        (``mean - rho * std``, the suite's, or the min); ``a'_0`` the first action of the next chunk,
        ``a_h`` the dataset's action after the chunk (the one next action a window holds; with h = 1
        the whole next action as in ReBRAC; the suite has no critic penalty, alpha_critic 0);
        target ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} q'``; loss squared error
        averaged over members and windows, invalid windows zeroed
actor   ``-mean(lambda agg_E Q(s_0, pi(s_0))) + alpha_actor mean(valid ||pi(s_0) - a||^2)`` with
        ``lambda = 1 / mean|agg_E Q|`` (no gradient), invalid windows zeroed. The suite's training
        loop adds it on every update (``actor_every_step``); the FQL codebase only on full updates
        (on the others the actor's loss is zero, its Adam moments still step)
targets Polyak (tau) for critic and actor, on full updates only.

Acting: ``pi(s)`` plus the clipped smoothing noise (the suite's sampler, ``act_noise``), or ``pi(s)``
alone (the FQL codebase evaluates at temperature 0). ``rql train --settings fql-paper`` gives the
FQL paper's values (two critics, min, critic penalty, actor on full updates, deterministic acting).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql.agents.fields import non_negative, positive_int
from rql.agents.kit import (
    ActorCriticConfig,
    Agent,
    Batch,
    QAgg,
    Windows,
    aggregate,
    flat_chunk,
    n_step_return,
    network,
    optimizer_step,
    polyak,
)
from rql.nets import Ensemble, GaussianActor


@dataclasses.dataclass
class ReBRACConfig(ActorCriticConfig):
    """ReBRAC. Defaults are the QAM suite's ReBRAC (its get_config)."""

    alpha_actor: float = dataclasses.field(default=0.0, metadata=non_negative())
    """Weight of the actor's behaviour-cloning penalty (tuned per environment)."""
    windows: Windows = "suite"
    """How training windows are drawn: 'suite' (the QAM suite's, its default here: starts uniform over
    steps, the running minimum of the masks over the valid steps, the true successor state of the last
    valid step) or 'rql' (the official RQL's: an episode drawn uniformly, indices clamped to its last
    step, the last step's mask)."""
    alpha_critic: float = dataclasses.field(default=0.0, metadata=non_negative())
    """Weight of the behaviour penalty on the critic's next action (the FQL codebase's; not in the suite)."""
    actor_freq: int = dataclasses.field(default=2, metadata=positive_int())
    """Full updates (both targets move; the actor's loss too unless actor_every_step) every N updates."""
    actor_noise: float = dataclasses.field(default=0.2, metadata=non_negative())
    """Standard deviation of the target policy smoothing noise (and of the acting noise, act_noise)."""
    actor_noise_clip: float = dataclasses.field(default=0.5, metadata=non_negative())
    """Clip of the target policy smoothing noise."""
    ensemble: int = dataclasses.field(default=10, metadata=positive_int())
    """Number of critics (the suite's num_qs)."""
    rho: float = dataclasses.field(default=0.5, metadata=non_negative())
    """Pessimism of q_agg 'pessimistic': critics are aggregated as mean_E - rho * std_E."""
    q_agg: QAgg = "pessimistic"
    """How the critics are combined for the target and the actor: 'pessimistic' (mean - rho * std,
    the suite's), 'mean' or 'min' (the FQL codebase's)."""
    actor_every_step: bool = True
    """Add the actor's loss on every update (the suite's training loop) rather than on full updates only
    (the FQL codebase); the targets move on full updates either way."""
    act_noise: bool = True
    """Act with the clipped smoothing noise added (the suite's sampler); False acts with pi(s) alone."""
    actor_fc_scale: float = dataclasses.field(default=0.01, metadata=non_negative())
    """Variance-scaling factor of the actor's output layer."""
    settings: str = "suite"
    """Which named settings --task applied ('suite' or 'fql-paper'): a record, set by build_config from
    rql train --settings (not an option of its own)."""


def make(config: ReBRACConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h = c.horizon
    chunk_dim = h * action_dim
    actor_def = network(GaussianActor(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm, True, c.actor_fc_scale), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def actor(params, obs):
        return actor_def.apply(params, obs)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def smoothed(actions, key):
        """``clip(actions + clip(N(0, actor_noise^2), -c, c), -1, 1)``: target smoothing and the suite's sampler."""
        eps = jax.random.normal(key, actions.shape) * c.actor_noise
        return jnp.clip(actions + jnp.clip(eps, -c.actor_noise_clip, c.actor_noise_clip), -1.0, 1.0)

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
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)

        # Critic: smoothed target policy, behaviour penalty on its next action.
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        next_actions = smoothed(actor(state["target_actor"], sh), key)
        next_q = aggregate(critic(state["target_critic"], sh, next_actions), c.q_agg, c.rho)
        penalty = jnp.sum(jnp.square(next_actions[:, :action_dim] - batch.actions[:, h]), axis=-1)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * (next_q - c.alpha_critic * penalty))
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Actor: normalised Q ascent plus behaviour cloning.
        pi = actor(params["actor"], s0)
        q_pi = aggregate(critic(jax.lax.stop_gradient(params["critic"]), s0, pi), c.q_agg, c.rho)
        lam = jax.lax.stop_gradient(1.0 / jnp.abs(q_pi).mean())
        q_loss = -jnp.mean(lam * q_pi)
        mse = jnp.sum(jnp.square(pi - actions), axis=-1) * valid
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

    def is_full(state):
        """Whether the coming update (counted from 1) is a full one."""
        return ((state["updates"] + 1) % c.actor_freq) == 0

    def losses(params, state, batch: Batch, key):
        full = is_full(state)
        w = jnp.ones((), jnp.float32) if c.actor_every_step else full.astype(jnp.float32)
        terms, stats = loss_terms(params, state, batch, key)
        actor_loss = terms["q"] + c.alpha_actor * terms["bc"]
        total = terms["critic"] + w * actor_loss
        metrics = {"loss/total": total, "loss/actor": actor_loss, **{f"loss/{k}": v for k, v in terms.items()}}
        return total, {**metrics, **stats, "actor/full_update": full.astype(jnp.float32)}

    def update(state, batch: Batch, key):
        count = state["updates"] + 1
        full = is_full(state)
        params, opt_state, metrics = optimizer_step(tx, lambda p: losses(p, state, batch, key), state)
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
        pi = actor(state["params"]["actor"], obs)
        if c.act_noise:
            pi = smoothed(pi, key)
        return pi.reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "actor": actor, "critic": critic}
    return Agent("rebrac", c, obs_dim, action_dim, init, update, act, extras)
