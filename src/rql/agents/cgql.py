"""Classifier-guidance Q-learning (CGQL, CGQL-M, CGQL-L) of the QAM suite (Li and Levine, 2026).

A behaviour flow is steered at sampling time by the action gradient of a critic, used as the
classifier of classifier guidance. The three published variants are one algorithm with three
``mode`` values: CGQL ('simple') guides with the ordinary critic; CGQL-M ('mse') and CGQL-L
('linex') also train the critic on noisy actions ``x_t`` with the time ``t`` as an input, so
that the guidance at time ``t`` uses a critic of the noisy action.

Networks: a velocity field ``v(s, x, t)`` and an ensemble of ``E`` critics ``Q_e(s, a, t)``
(one time-conditioned network; ``t = 1`` is the noise-free action), each with a Polyak target.
``a`` is the flattened chunk of ``h`` actions, ``beta`` = ``inv_temp``, ``theta`` =
``guidance_coef``.

Guided sampler (F Euler steps from ``x_0 ~ N(0, I)``, ``t_i = i / F``; ``x_{i+1} = x_i + u_i / F``):

    u_i = v(s, x_i, t_i)                                                       i = 0 or beta = 0
    u_i = v(s, x_i, t_i) + theta * (x_i + (1 - t_i) * beta * g_i) / t_i      otherwise
    g_i = grad_x mean_e Q_e(s, x_i, 1)      ('simple')
    g_i = grad_x mean_e Q_e(s, x_i, t_i)    ('mse', 'linex')

``(x + (1 - t) * score) / t`` is the velocity of the linear interpolant whose score is
``score``; the guidance adds ``theta`` times that velocity for the score ``beta * grad Q``. The
velocity field is the target one (``target_guidance``), the critic always the online one (mean
over members, no gradient into the losses). The result is clipped to [-1, 1]; with
``best_of_n > 1`` that many chunks are sampled per state and the one with the highest
``mean_e Q_e(s, a, 1)`` kept. Acting and the critic's next chunk both use this sampler.

One update (critic and velocity field share one Adam step on the sum of the losses):

critic       ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} * (mean - rho std)_E
             Q_target(s_h, a', 1)`` with ``a'`` from the guided sampler at ``s_h``;
             ``L_Q = mean_{e, b} valid * (Q_e(s_0, a, 1) - y)^2``
noisy critic ('mse', 'linex' only), ``x_t = (1 - t) z + t a``, ``t ~ U(0, 1)``, ``z ~ N(0, I)``,
             target per member ``y_e = Q_target_e(s_0, a, 1)``, ``d = beta (y_e - Q_e(s_0, x_t, t))``:
             'mse'   ``L_N = mean_{e, b} valid * (Q_e(s_0, x_t, t) - y_e)^2``
             'linex' ``L_N = mean_{e, b} valid * [ exp(d) + beta Q_e(s_0, x_t, t) ]`` where
                     ``d <= isd_clip``, and ``d`` where ``d > isd_clip`` (linear tail for stability)
             added as ``noisy_coef * L_N``
flow         ``L_BC = mean_b valid * mean_dims (v(s_0, x_t, t) - (a - z))^2`` (fresh ``z``, ``t``)
then Polyak-averaged targets of both networks (tau), moved towards the parameters the step started
from, as the suite does. ``valid`` (0 or 1) zeroes windows that run more than one step past an
episode end; the means are over all windows ``b`` of the batch, as in the suite.

Not carried over: the suite's ``separate`` option (a time-free critic plus a separate noisy critic);
its code path calls the time-free critic with a time input, so it never ran.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
import optax

from rql.agents.fields import any_number, non_negative, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    SuiteConfig,
    flat_chunk,
    n_step_return,
    network,
    pessimistic,
    suite_spec,
    update_with_targets,
)
from rql.errors import RQLError
from rql.nets import Ensemble, VelocityField

MODES = ("simple", "mse", "linex")


@dataclasses.dataclass
class CGQLConfig(SuiteConfig):
    """Classifier-guidance Q-learning. Defaults are the suite's ``get_config()``."""

    mode: Literal["simple", "mse", "linex"] = "simple"
    """Which critic guides: 'simple' (critic at t = 1 on the noisy action), 'mse' or 'linex' (a
    time-conditioned critic also distilled on noisy actions with that loss)."""
    inv_temp: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Inverse temperature beta of the guidance score ``beta * grad Q`` (0 turns guidance off)."""
    guidance_coef: float = dataclasses.field(default=0.1, metadata=non_negative())
    """Guidance coefficient theta: weight of the guidance velocity added to the flow's."""
    noisy_coef: float = dataclasses.field(default=0.001, metadata=non_negative())
    """Weight of the noisy-action critic loss ('mse' and 'linex' only)."""
    isd_clip: float = dataclasses.field(default=5.0, metadata=any_number(finite=False))
    """'linex' only: above this exponent the loss continues linearly instead of exponentially."""
    target_guidance: bool = True
    """Sample with the target velocity field (else the online one)."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Guided chunks sampled per state; the one with the highest mean critic value is used."""


@dataclasses.dataclass
class CGQLMConfig(CGQLConfig):
    """CGQL-M: classifier guidance with a noisy critic distilled by squared error."""

    mode: Literal["simple", "mse", "linex"] = "mse"
    """Which critic guides: 'simple' (critic at t = 1 on the noisy action), 'mse' or 'linex' (a
    time-conditioned critic also distilled on noisy actions with that loss)."""


@dataclasses.dataclass
class CGQLLConfig(CGQLConfig):
    """CGQL-L: classifier guidance with a noisy critic distilled by the linex loss."""

    mode: Literal["simple", "mse", "linex"] = "linex"
    """Which critic guides: 'simple' (critic at t = 1 on the noisy action), 'mse' or 'linex' (a
    time-conditioned critic also distilled on noisy actions with that loss)."""


def make(config: CGQLConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    if c.mode not in MODES:
        raise RQLError(f"cgql: unknown mode '{c.mode}'; choose one of: {', '.join(MODES)}")
    if c.best_of_n < 1:
        raise RQLError(f"cgql: best_of_n must be at least 1, got {c.best_of_n}")
    h, F, N = c.horizon, c.flow_steps, c.best_of_n
    chunk_dim = h * action_dim
    noisy = c.mode in ("mse", "linex")
    actor_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.adam(c.lr)

    def velocity(params, obs, x, t):
        """The flow's own (unguided) velocity."""
        return actor_def.apply(params, obs, x, t)

    def critic(params, obs, actions, t):
        """``Q_e(s, a, t)`` for every member: shape (E, *batch)."""
        return critic_def.apply(params, obs, actions, t)

    def q_grad(critic_params, obs, x, t):
        """``grad_x mean_e Q_e(s, x, t_Q)`` with ``t_Q = 1`` ('simple') or ``t`` (noisy modes)."""
        t_q = t if noisy else jnp.ones_like(t)
        return jax.grad(lambda x_: critic(critic_params, obs, x_, t_q).mean(axis=0).sum())(x)

    def guided_velocity(actor_params, critic_params, obs, x, t):
        """The sampler's velocity at ``t > 0``: the flow's plus ``theta (x + (1 - t) beta g) / t``."""
        vel = velocity(actor_params, obs, x, t)
        if c.inv_temp > 0.0:
            g = q_grad(critic_params, obs, x, t)
            vel = vel + (g * (1.0 - t) * c.inv_temp + x) * c.guidance_coef / t
        return vel

    def sample(actor_params, critic_params, obs, noise):
        """F guided Euler steps from ``noise`` (unguided first step at t = 0), clipped to [-1, 1]."""
        batch = noise.shape[:-1]
        t0 = jnp.zeros((*batch, 1), noise.dtype)
        x = noise + velocity(actor_params, obs, noise, t0) / F

        def body(i, x):
            t = jnp.full((*batch, 1), i / F, dtype=noise.dtype)
            return x + guided_velocity(actor_params, critic_params, obs, x, t) / F

        x = jax.lax.fori_loop(1, F, body, x)
        return jnp.clip(x, -1.0, 1.0)

    def sample_best(state, obs, key):
        """``best_of_n`` guided chunks per state, the highest ``mean_e Q_e(s, a, 1)`` kept: (B, chunk)."""
        actor_params = state["target_actor"] if c.target_guidance else state["params"]["actor"]
        critic_params = state["params"]["critic"]
        noise = jax.random.normal(key, (*obs.shape[:-1], N, chunk_dim))
        obs_n = jnp.repeat(obs[..., None, :], N, axis=-2)
        actions = sample(actor_params, critic_params, obs_n, noise)
        if N == 1:
            return actions[..., 0, :]
        q = critic(critic_params, obs_n, actions, jnp.ones_like(actions[..., :1])).mean(axis=0)
        best = jnp.argmax(q, axis=-1)
        return jnp.take_along_axis(actions, best[..., None, None], axis=-2)[..., 0, :]

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        o, x, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, chunk_dim)), jnp.zeros((1, 1))
        params = {"actor": actor_def.init(k_actor, o, x, t), "critic": critic_def.init(k_critic, o, x, t)}
        return {
            "params": params,
            "target_actor": params["actor"],
            "target_critic": params["critic"],
            "opt_state": tx.init(params),
        }

    def loss_terms(params, state, batch: Batch, key):
        """The loss terms at ``params`` (sampling and targets use ``state``), and statistics.

        The keys are split as in the suite, so equal keys give both the same draws."""
        B = batch.observations.shape[0]
        _, k_actor, k_critic = jax.random.split(key, 3)
        _, k_sample, k_time, k_noise = jax.random.split(k_critic, 4)
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        t1 = jnp.ones((B, 1), actions.dtype)

        # Critic: chunked n-step target on the guided sampler's next chunk.
        next_actions = jax.lax.stop_gradient(sample_best(state, sh, k_sample))
        next_q = pessimistic(critic(state["target_critic"], sh, next_actions, t1), c.rho)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions, t1)
        terms = {"critic": jnp.mean(jnp.square(qs - target) * valid)}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "data/valid_fraction": valid.mean(),
        }

        # Noisy critic: Q_e(s, x_t, t) regresses on the target member's value of the clean chunk.
        if noisy:
            t = jax.random.uniform(k_time, (B, 1))
            z = jax.random.normal(k_noise, actions.shape)
            x_t = (1.0 - t) * z + t * actions
            y = jax.lax.stop_gradient(critic(state["target_critic"], s0, actions, t1))
            q_t = critic(params["critic"], s0, x_t, t)
            if c.mode == "mse":
                per = jnp.square(q_t - y)
            else:
                d = (y - q_t) * c.inv_temp
                tail = d > c.isd_clip
                per = jnp.where(tail, d, jnp.exp(jnp.where(tail, c.isd_clip, d)) + q_t * c.inv_temp)
                stats["value/exp_bias"] = jnp.mean(jnp.exp(q_t * c.inv_temp) - jnp.exp(y * c.inv_temp))
            terms["noisy_critic"] = jnp.mean(per * valid)
            stats["value/noisy_q_mean"] = q_t.mean()

        # Flow matching of the behaviour velocity field.
        _, k_x, k_t = jax.random.split(k_actor, 3)
        z = jax.random.normal(k_x, (B, chunk_dim))
        t = jax.random.uniform(k_t, (B, 1))
        x_t = (1.0 - t) * z + t * actions
        pred = velocity(params["actor"], s0, x_t, t)
        terms["bc"] = jnp.mean(jnp.square(pred - (actions - z)).mean(axis=-1) * valid)
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["bc"]
        if noisy:
            total = total + c.noisy_coef * terms["noisy_critic"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("actor", "critic"), c.tau)

    def act(state, obs, key):
        return sample_best(state, obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {
        "loss_terms": loss_terms,
        "losses": losses,
        "velocity": velocity,
        "critic": critic,
        "q_grad": q_grad,
        "guided_velocity": guided_velocity,
        "sample": sample,
        "sample_best": sample_best,
    }
    name = {"simple": "cgql", "mse": "cgql-m", "linex": "cgql-l"}[c.mode]
    return Agent(name, c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [
        suite_spec("cgql", "CGQL: behaviour flow steered by the critic's action gradient (classifier guidance)",
                   CGQLConfig, make),
        suite_spec("cgql-m", "CGQL-M: CGQL with a time-conditioned critic distilled on noisy actions (squared error)",
                   CGQLMConfig, make),
        suite_spec("cgql-l", "CGQL-L: CGQL with a time-conditioned critic distilled on noisy actions (linex loss)",
                   CGQLLConfig, make),
    ]
