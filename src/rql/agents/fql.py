"""Flow Q-Learning (Park, Li, Levine, 2025), with action chunks, as the QAM suite runs it.

One update (critic and actor share one Adam step on the sum of the losses):

critic
  next action  ``a' = clip(mu(s_h, z'), -1, 1)``, ``z' ~ N(0, I)`` from the one-step policy; with
               ``best_of_n = N > 1`` the one of N such samples with the highest ``mean_E Q(s_h, .)``
               (current critic)
  target       ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} agg_E Q_target(s_h, a')``
               with ``agg`` = ``q_agg``: ``mean - rho * std`` (the suite's), the mean or the min
  loss         ``(Q_e(s_0, a) - y)^2`` averaged over members and windows, invalid windows zeroed
actor
  BC flow      flow matching on the interpolant: squared error averaged over the chunk's dims,
               invalid windows (more than one step past an episode end) zeroed, averaged over windows
  distill      ``|| mu(s_0, z) - flow(s_0, z) ||^2`` where ``flow`` is F Euler steps of the
               velocity field from the same noise (no gradient into the flow), x alpha
  Q            ``-mean_E Q(s_0, clip(mu(s_0, z)))`` (critic frozen), optionally divided by the
               batch's mean ``|Q|`` (``normalize_q_loss``, FQL's option)
then Polyak-averaged target critic (tau). Acting: ``best_of_n`` one-step samples, the one with the
highest ``mean_E Q`` (with N = 1 simply ``mu(s, z)``).

With ``horizon = 1`` this is FQL's own protocol; ``horizon = h`` makes the critic a function of
the flattened chunk and the target an h-step return (as in Q-chunking). ``rql train --settings
fql-paper`` gives the FQL paper's values (two critics, mean or min per environment).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import non_negative, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    QAgg,
    SuiteConfig,
    aggregate,
    flat_chunk,
    n_step_return,
    network,
    pessimistic,
    update_with_targets,
    window_mean,
)
from rql.nets import MLP, Ensemble, VelocityField

@dataclasses.dataclass
class FQLConfig(SuiteConfig):
    """Flow Q-Learning. Defaults are the QAM suite's FQL (its get_config)."""

    alpha: float = dataclasses.field(default=100.0, metadata=non_negative())
    """Weight of the distillation loss (the behaviour constraint; tuned per environment)."""
    q_agg: QAgg = "pessimistic"
    """How the target critic's members are combined: 'pessimistic' (mean - rho * std, the suite's),
    'mean', or 'min' (clipped double Q)."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """One-step samples per state for the target's next action and for acting; the one with the
    highest mean Q is taken."""
    normalize_q_loss: bool = False
    """Divide the actor's Q term by the batch's mean |Q| (makes alpha invariant to the reward scale)."""
    settings: str = "suite"
    """Which named settings --task applied ('suite' or 'fql-paper'): a record, set by build_config from
    rql train --settings (not an option of its own)."""


def make(config: FQLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F, N = c.horizon, c.flow_steps, c.best_of_n
    chunk_dim = h * action_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    onestep_def = network(MLP(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c, concat=True)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def onestep(params, obs, noise):
        """The one-step policy: noise -> action chunk, clipped to [-1, 1]."""
        return jnp.clip(onestep_def.apply(params, obs, noise), -1.0, 1.0)

    def flow_actions(params, obs, noise):
        """F Euler steps of the behaviour flow from ``noise``, clipped to [-1, 1]."""
        vel = lambda o, x, t: flow_def.apply(params, o, x, t)  # noqa: E731
        return flow.euler_sample(vel, obs, noise, F)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def best_of(params, obs, noise):
        """The one-step sample with the highest ``mean_E Q`` among ``noise`` (B, N, chunk_dim) per state."""
        B = obs.shape[0]
        obs_n = jnp.broadcast_to(obs[:, None, :], (B, N, obs.shape[-1]))
        samples = onestep(params["onestep"], obs_n, noise)
        if N == 1:
            return samples[:, 0]
        best = jnp.argmax(critic(params["critic"], obs_n, samples).mean(axis=0), axis=1)
        return jnp.take_along_axis(samples, best[:, None, None], axis=1)[:, 0]

    def init(key):
        k_flow, k_onestep, k_critic = jax.random.split(key, 3)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "onestep": onestep_def.init(k_onestep, o, x),
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
        frozen = jax.lax.stop_gradient(params)
        next_actions = best_of(frozen, sh, jax.random.normal(k_next, (B, N, chunk_dim)))
        next_q = aggregate(critic(state["target_critic"], sh, next_actions), c.q_agg, c.rho)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Behaviour flow: flow matching on the interpolant.
        noise = jax.random.normal(k_noise, (B, chunk_dim))
        t = jax.random.uniform(k_time, (B, 1))
        x_t, target_vel = flow.interpolate(noise, actions, t)
        pred = flow_def.apply(params["flow"], s0, x_t, t)
        bc_loss = window_mean(jnp.square(pred - target_vel), valid)

        # One-step policy: distilled from the flow's samples and pushed up the (frozen) critic.
        z = jax.random.normal(k_distill, (B, chunk_dim))
        teacher = jax.lax.stop_gradient(flow_actions(params["flow"], s0, z))
        student = onestep_def.apply(params["onestep"], s0, z)
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

    # The target moves towards the parameters the step started from, as the reference does.
    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def act(state, obs, key):
        noise = jax.random.normal(key, (obs.shape[0], N, chunk_dim))
        return best_of(state["params"], obs, noise).reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "critic": critic, "onestep": onestep,
              "flow_actions": flow_actions, "best_of": best_of}
    return Agent("fql", c, obs_dim, action_dim, init, update, act, extras)
