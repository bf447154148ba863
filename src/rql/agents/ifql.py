"""Implicit Flow Q-Learning: IQL's value learning with a flow behaviour policy, actions picked
by rejection over flow samples (the flow variant of IDQL, as in the FQL codebase), with chunks.

As the QAM suite runs it. One update (value, critic and flow share one Adam step on the sum of
the losses):

value   ``V(s_0)`` regresses on ``agg_E Q_target(s_0, a)`` with the expectile loss (expectile
        ``kappa``), ``agg`` = ``q_agg``: ``mean - rho * std`` (the suite's) or the min, averaged
        over all windows
critic  ``Q_e(s_0, a)`` regresses on ``sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} V(s_h)``
        (``V`` not moved by this loss), squared error averaged over members (summed with
        ``critic_sum``, the FQL codebase's) and windows, invalid windows zeroed
flow    flow matching on the interpolant: squared error averaged over the chunk's dims, invalid
        windows zeroed
then Polyak-averaged target critic (tau).

Acting: ``num_samples`` chunks from the flow (F Euler steps from independent noise), the one with
the highest ``min_E Q`` is executed (the suite's rejection step uses the minimum too).
``rql train --settings fql-paper`` gives the FQL paper's values (two critics, min, summed loss).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import open_unit_interval, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    QAgg,
    SuiteConfig,
    aggregate,
    expectile_loss,
    flat_chunk,
    n_step_return,
    network,
    update_with_targets,
    window_mean,
)
from rql.nets import MLP, Ensemble, VelocityField


@dataclasses.dataclass
class IFQLConfig(SuiteConfig):
    """Implicit Flow Q-Learning. Defaults are the QAM suite's IFQL (its get_config)."""

    kappa: float = dataclasses.field(default=0.9, metadata=open_unit_interval(alias=("expectile",)))
    """Expectile of the value loss (IQL's tau; tuned per environment)."""
    expectile: float | None = dataclasses.field(default=None, metadata=open_unit_interval(optional=True))
    """Alias of kappa (the FQL codebase's name): when given it sets kappa."""
    num_samples: int = dataclasses.field(default=32, metadata=positive_int())
    """Flow samples per state among which the action is picked by Q."""
    q_agg: QAgg = "pessimistic"
    """How the target critics are combined for the value's regression target: 'pessimistic'
    (mean - rho * std, the suite's), 'mean' or 'min' (the FQL codebase's)."""
    critic_sum: bool = False
    """Sum the critics' squared errors over the ensemble (the FQL codebase) instead of averaging (the suite)."""
    settings: str = "suite"
    """Which named settings --task applied ('suite' or 'fql-paper'): a record, set by build_config from
    rql train --settings (not an option of its own)."""

    def __post_init__(self):
        if self.expectile is not None:
            self.kappa, self.expectile = float(self.expectile), None


def make(config: IFQLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    h, F, N = c.horizon, c.flow_steps, c.num_samples
    chunk_dim = h * action_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    value_def = network(MLP(c.value_hidden_dims, 1, c.layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def value(params, obs):
        return value_def.apply(params, obs)[..., 0]

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def init(key):
        k_flow, k_value, k_critic = jax.random.split(key, 3)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        params = {
            "flow": flow_def.init(k_flow, o, x, jnp.zeros((1, 1))),
            "value": value_def.init(k_value, o),
            "critic": critic_def.init(k_critic, o, x),
        }
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        k_noise, k_time = jax.random.split(key)
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)

        # Value: expectile of the target critics' aggregate at the dataset chunk (every window, as the suite).
        q_data = aggregate(critic(state["target_critic"], s0, actions), c.q_agg, c.rho)
        v = value(params["value"], s0)
        value_loss = jnp.mean(expectile_loss(jax.lax.stop_gradient(q_data) - v, c.kappa))

        # Critic: chunked n-step target on the value of the state after the chunk.
        next_v = value(jax.lax.stop_gradient(params["value"]), sh)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_v)
        qs = critic(params["critic"], s0, actions)
        sq = jnp.square(qs - target) * valid
        critic_loss = jnp.mean(jnp.sum(sq, axis=0)) if c.critic_sum else jnp.mean(sq)

        # Behaviour flow.
        noise = jax.random.normal(k_noise, (B, chunk_dim))
        t = jax.random.uniform(k_time, (B, 1))
        x_t, target_vel = flow.interpolate(noise, actions, t)
        pred = flow_def.apply(params["flow"], s0, x_t, t)
        bc_loss = window_mean(jnp.square(pred - target_vel), valid)

        terms = {"value": value_loss, "critic": critic_loss, "bc": bc_loss}
        stats = {
            "value/v_mean": v.mean(),
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["value"] + terms["critic"] + terms["bc"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def candidates(params, obs, key):
        """(B, N, chunk_dim) flow samples per state."""
        B = obs.shape[0]
        noise = jax.random.normal(key, (B, N, chunk_dim))
        obs_n = jnp.broadcast_to(obs[:, None, :], (B, N, obs.shape[-1]))
        vel = lambda o, x, t: flow_def.apply(params["flow"], o, x, t)  # noqa: E731
        return flow.euler_sample(vel, obs_n, noise, F), obs_n

    def act(state, obs, key):
        params = state["params"]
        samples, obs_n = candidates(params, obs, key)
        q = critic(params["critic"], obs_n, samples).min(axis=0)  # (B, N)
        best = jnp.argmax(q, axis=1)
        chosen = jnp.take_along_axis(samples, best[:, None, None], axis=1)[:, 0]
        return chosen.reshape(obs.shape[0], h, action_dim)

    extras = {"loss_terms": loss_terms, "losses": losses, "value": value, "critic": critic, "candidates": candidates}
    return Agent("ifql", c, obs_dim, action_dim, init, update, act, extras)
