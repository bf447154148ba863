"""Flow Q-Learning (Park, Li, Levine, 2025), with action chunks.

One update (critic and actor share one Adam step on the sum of the losses):

critic
  next action  ``a' = clip(mu(s_h, z'), -1, 1)``, ``z' ~ N(0, I)`` from the one-step policy
  target       ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg_E Q_target(s_h, a')``
               with ``agg`` the ensemble mean or min (``q_agg``)
  loss         ``(Q_e(s_0, a) - y)^2`` averaged over members and valid windows
actor
  BC flow      flow matching on the interpolant, action dims after an episode end masked
  distill      ``|| mu(s_0, z) - flow(s_0, z) ||^2`` where ``flow`` is F Euler steps of the
               velocity field from the same noise (no gradient into the flow), x alpha
  Q            ``-mean_E Q(s_0, clip(mu(s_0, z)))`` (critic frozen), optionally divided by the
               batch's mean ``|Q|`` (``normalize_q_loss``)
then Polyak-averaged target critic (tau). Evaluation uses the one-step policy ``mu``.

With ``horizon = 1`` this is FQL's own protocol; ``horizon = h`` makes the critic a function of
the flattened chunk and the target an h-step return (as in Q-chunking).
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
    flat_chunk,
    n_step_return,
    optimizer_step,
    polyak,
)
from rql.nets import MLP, Ensemble, VelocityField


@dataclasses.dataclass
class FQLConfig(ActorCriticConfig):
    """Flow Q-Learning. Defaults are the FQL reference implementation's."""

    alpha: float = 10.0
    """Weight of the distillation loss (the behaviour constraint; tuned per environment)."""
    flow_steps: int = 10
    """Euler steps F of the behaviour flow that the one-step policy is distilled from."""
    q_agg: Literal["mean", "min"] = "mean"
    """How the target critic's members are combined: 'mean', or 'min' (clipped double Q)."""
    normalize_q_loss: bool = False
    """Divide the actor's Q term by the batch's mean |Q| (makes alpha invariant to the reward scale)."""
    ensemble: int = 2
    """Number of critics."""


def make(config: FQLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    flow_def = VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm)
    onestep_def = MLP(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm)
    critic_def = Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm)
    tx = optax.adam(c.lr)

    def onestep(params, obs, noise):
        """The one-step policy: noise -> action chunk, clipped to [-1, 1]."""
        return jnp.clip(onestep_def.apply(params, jnp.concatenate([obs, noise], axis=-1)), -1.0, 1.0)

    def flow_actions(params, obs, noise):
        """F Euler steps of the behaviour flow from ``noise``, clipped to [-1, 1]."""
        vel = lambda o, x, t: flow_def.apply(params, o, x, t)  # noqa: E731
        return flow.euler_sample(vel, obs, noise, F)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def aggregate(qs):
        return qs.min(axis=0) if c.q_agg == "min" else qs.mean(axis=0)

    def init(key):
        k_flow, k_onestep, k_critic = jax.random.split(key, 3)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "onestep": onestep_def.init(k_onestep, jnp.concatenate([o, x], axis=-1)),
            "critic": critic_def.init(k_critic, o, x),
        }
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        k_next, k_noise, k_time, k_distill = jax.random.split(key, 4)
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)

        # Critic: chunked n-step target on the one-step policy's next chunk.
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        next_actions = onestep(params["onestep"], sh, jax.random.normal(k_next, (B, chunk_dim)))
        next_q = aggregate(critic(state["target_critic"], sh, jax.lax.stop_gradient(next_actions)))
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Behaviour flow: flow matching on the interpolant.
        noise = jax.random.normal(k_noise, (B, chunk_dim))
        t = jax.random.uniform(k_time, (B, 1))
        x_t, target_vel = flow.interpolate(noise, actions, t)
        pred = flow_def.apply(params["flow"], s0, x_t, t)
        bc_loss = jnp.mean(jnp.square(pred - target_vel) * chunk_action_mask(batch, h, action_dim))

        # One-step policy: distilled from the flow's samples and pushed up the (frozen) critic.
        z = jax.random.normal(k_distill, (B, chunk_dim))
        teacher = jax.lax.stop_gradient(flow_actions(params["flow"], s0, z))
        student = onestep_def.apply(params["onestep"], jnp.concatenate([s0, z], axis=-1))
        distill_loss = jnp.mean(jnp.square(student - teacher))
        q_pi = critic(jax.lax.stop_gradient(params["critic"]), s0, jnp.clip(student, -1.0, 1.0)).mean(axis=0)
        q_loss = -jnp.mean(q_pi)
        if c.normalize_q_loss:
            q_loss = q_loss * jax.lax.stop_gradient(1.0 / jnp.abs(q_pi).mean())

        terms = {"critic": critic_loss, "bc": bc_loss, "distill": distill_loss, "q": q_loss}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "value/policy_q_mean": q_pi.mean(),
            "actor/mse": jnp.mean(jnp.square(jnp.clip(student, -1.0, 1.0) - actions)),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["bc"] + c.alpha * terms["distill"] + terms["q"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    def update(state, batch: Batch, key):
        params, opt_state, metrics = optimizer_step(tx, lambda p: losses(p, state, batch, key), state)
        # The target moves towards the parameters the step started from, as the reference does.
        new_state = {
            "params": params,
            "target_critic": polyak(state["params"]["critic"], state["target_critic"], c.tau),
            "opt_state": opt_state,
        }
        return new_state, metrics

    def act(state, obs, key):
        noise = jax.random.normal(key, (obs.shape[0], chunk_dim))
        return onestep(state["params"]["onestep"], obs, noise).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "critic": critic, "onestep": onestep, "flow_actions": flow_actions}
    return Agent("fql", c, obs_dim, action_dim, init, update, act, extras)
