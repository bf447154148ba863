"""Basic adjoint matching (BAM), the QAM suite's baseline of Domingo-Enrich et al. (2025): a flow
policy fine-tuned to maximise Q by backpropagating through the memoryless SDE of a behaviour flow,
with that SDE's path KL to the behaviour flow as the regulariser (the suite's ``bam`` agent).

Two velocity fields over the flattened action chunk: the behaviour flow ``v_b`` (``slow``, flow
matching on the data) and the fine-tuned policy ``v`` (``fast``). With ``F = flow_steps``,
``dt = 1 / F`` and ``t_i = i dt``:

memoryless SDE  ``x_0 ~ N(0, I)``; for ``i < F - 1``: ``sigma_i = sqrt(2 (1 - t_i + dt) / (t_i + dt))``,
                ``x_{i+1} = x_i + dt (2 v(s, x_i, t_i) - x_i / (t_i + dt)) + sqrt(dt) sigma_i z_i``;
                the last step is the behaviour flow's Euler step ``x_F = x_{F-1} + dt v_b(s, x_{F-1}, t_{F-1})``.
                ``v_b`` is the target (Polyak) copy of the behaviour flow when ``target_actor``.
KL              ``sum_{i < F-1} (2 / sigma_i^2) || v(s, x_i, t_i) - v_b(s, x_i, t_i) ||^2`` (with
                ``residual``, ``v = v_b + r`` and the sum is over ``|| r ||^2``), averaged over the batch

One update (one Adam step on the sum, after a global gradient-norm clip of 1):

critic  next chunk ``a' = clip(pi(s_h))`` (best of ``best_of_n`` samples of the policy's Euler ODE by
        the current critic's mean), target
        ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} (mean_E - rho std_E) Q_target(s_h, a')``,
        loss ``(Q_e(s_0, a) - y)^2`` averaged over members and valid windows
flow    ``|| v_b(s_0, x_t, t) - (a - x_0) ||^2`` on ``x_t = (1 - t) x_0 + t a``, ``t ~ U(0, 1)``, mean over
        action dims and valid windows (trains ``slow``)
adjoint ``-inv_temp mean_B (mean_E - rho std_E) Q(s_0, x_F) + KL`` with the gradient through every SDE
        step into ``fast`` (backpropagation through time; no gradient into the critic or ``v_b``)
targets Polyak (tau) on the critic and the behaviour flow, from the parameters the step started from.

One deliberate difference from the suite's code: in the adjoint objective the ensemble's std has a
zero gradient where all members give exactly the same Q (``base.pessimistic``; ``jnp.std``'s gradient
is NaN there, which turns every parameter NaN through the global-norm clip). With 2 critics such float32 ties at the
SDE's ``x_F`` happen in training (cube-single, small preset, seed 0: at update 450); values are unchanged.

Acting: ``best_of_n`` samples of F Euler steps of ``v`` (``v_b`` alone when ``inv_temp = 0``;
``v_b + r`` with ``residual``), clipped to [-1, 1], the one with the highest mean Q.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from rql import flow
from rql.agents.fields import at_least_int, non_negative, positive, positive_int
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


@dataclasses.dataclass
class BAMConfig(SuiteConfig):
    """Basic adjoint matching. Defaults are the suite's ``bam`` ``get_config()``."""

    inv_temp: float = dataclasses.field(default=0.3, metadata=non_negative())
    """Weight of the Q objective against the path KL to the behaviour flow (0: act with the behaviour flow)."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Policy samples per state, for acting and for the critic's next chunk; the highest mean Q is taken."""
    target_actor: bool = True
    """The SDE's reference drift is the Polyak-averaged behaviour flow (else the current one)."""
    residual: bool = False
    """Learn a residual velocity added to the behaviour flow's (else the full velocity)."""
    clip_grad_norm: float = dataclasses.field(default=1.0, metadata=positive(finite=False))
    """Clip of the global gradient norm before Adam (fixed at 1 in the suite)."""
    flow_steps: int = dataclasses.field(default=10, metadata=at_least_int(2))
    """Euler steps F of the flow policy (at least 2: one SDE step and the final Euler step)."""


def make(config: BAMConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    if c.best_of_n < 1:
        raise RQLError(f"best_of_n must be at least 1, got {c.best_of_n}")
    if c.flow_steps < 2:
        raise RQLError(f"BAM needs flow_steps >= 2 (one SDE step and the final Euler step), got {c.flow_steps}")
    h, F = c.horizon, c.flow_steps
    dt = 1.0 / F
    chunk_dim = h * action_dim
    actor_def = network(VelocityField(c.actor_hidden_dims, chunk_dim, c.actor_layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.chain(optax.clip_by_global_norm(c.clip_grad_norm), optax.adam(c.lr))

    def velocity(params):
        return lambda obs, x, t: actor_def.apply(params, obs, x, t)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def sde(fast_params, ref_params, obs, key):
        """The memoryless SDE from ``x_0 = N(0, I)`` (drawn from ``key``); returns ``(x_F, KL)``."""
        fast, ref = velocity(fast_params), velocity(ref_params)
        x0 = jax.random.normal(key, (*obs.shape[:-1], chunk_dim))
        keys = jax.random.split(key, F)

        def step(carry, inputs):
            x, kl = carry
            i, k = inputs
            t = jnp.full((*x.shape[:-1], 1), i / F, x.dtype)
            sigma = jnp.sqrt(2.0 * (1.0 - t + dt) / (t + dt))
            v_ref = ref(obs, x, t)
            if c.residual:
                r = fast(obs, x, t)
                v, gap = v_ref + r, r
            else:
                v = fast(obs, x, t)
                gap = v - v_ref
            kl = kl + jnp.sum(jnp.square(gap), axis=-1) * 2.0 / jnp.square(sigma[..., 0])
            x = x + dt * (2.0 * v - x / (t + dt)) + jnp.sqrt(dt) * sigma * jax.random.normal(k, x.shape)
            return (x, kl), None

        kl0 = jnp.zeros(x0.shape[:-1], x0.dtype)
        (x, kl), _ = jax.lax.scan(step, (x0, kl0), (jnp.arange(F - 1), keys[: F - 1]))
        t = jnp.full((*x.shape[:-1], 1), (F - 1) / F, x.dtype)
        return x + dt * ref(obs, x, t), kl.mean()

    def adjoint_terms(fast_params, ref_params, obs, key, q_fn):
        """The fast policy's objective with ``q_fn(obs, x) -> (B,)`` the critic it maximises:
        ``{"adjoint": -inv_temp mean q_fn(x_F) + KL, "kl": KL}`` and the SDE's ``x_F``."""
        x, kl = sde(fast_params, ref_params, obs, key)
        q = q_fn(obs, x).mean()
        return {"adjoint": -c.inv_temp * q + kl, "kl": kl}, x

    def policy_actions(params, critic_params, obs, key):
        """``best_of_n`` Euler samples of the acting flow, clipped, the one with the highest mean Q."""
        noise = jax.random.normal(key, (*obs.shape[:-1], c.best_of_n, chunk_dim))
        obs_n = jnp.repeat(obs[..., None, :], c.best_of_n, axis=-2)
        if c.inv_temp == 0.0:
            vel = velocity(params["slow"])
        elif c.residual:
            slow, fast = velocity(params["slow"]), velocity(params["fast"])
            vel = lambda o, x, t: slow(o, x, t) + fast(o, x, t)  # noqa: E731
        else:
            vel = velocity(params["fast"])
        candidates = flow.euler_sample(vel, obs_n, noise, F)
        best = jnp.argmax(critic(critic_params, obs_n, candidates).mean(axis=0), axis=-1)
        return jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]

    def init(key):
        k_fast, k_slow, k_critic = jax.random.split(key, 3)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        t = jnp.zeros((1, 1))
        params = {
            "fast": actor_def.init(k_fast, o, x, t),
            "slow": actor_def.init(k_slow, o, x, t),
            "critic": critic_def.init(k_critic, o, x),
        }
        return {
            "params": params,
            "target_critic": params["critic"],
            "target_slow": params["slow"],
            "opt_state": tx.init(params),
        }

    def loss_terms(params, state, batch: Batch, key):
        _, k_actor, k_critic = jax.random.split(key, 3)
        B = batch.observations.shape[0]
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)
        frozen = jax.lax.stop_gradient(params)

        # Critic: chunked n-step target on the policy's next chunk.
        _, k_next = jax.random.split(k_critic)
        next_actions = policy_actions(frozen, frozen["critic"], sh, k_next)
        next_q = pessimistic(critic(state["target_critic"], sh, next_actions), c.rho)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Behaviour flow: flow matching on the interpolant.
        _, k_x0, k_t, k_sde = jax.random.split(k_actor, 4)
        x0 = jax.random.normal(k_x0, (B, chunk_dim))
        t = jax.random.uniform(k_t, (B, 1))
        x_t, target_vel = flow.interpolate(x0, actions, t)
        pred = actor_def.apply(params["slow"], s0, x_t, t)
        flow_loss = jnp.mean(jnp.square(pred - target_vel).mean(axis=-1) * valid)

        # Policy: the Q of the SDE's action, through every step, against the path KL.
        ref = state["target_slow"] if c.target_actor else frozen["slow"]
        adj, x = adjoint_terms(params["fast"], ref, s0, k_sde,
                               lambda o, a: pessimistic(critic(frozen["critic"], o, a), c.rho))
        terms = {"critic": critic_loss, "flow": flow_loss, **adj}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "actor/sde_action_abs_max": jnp.abs(x).max(),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + terms["flow"] + terms["adjoint"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic", "slow"), c.tau)

    def act(state, obs, key):
        params = state["params"]
        a = policy_actions(params, params["critic"], obs, key)
        return a.reshape(obs.shape[0], h, action_dim)

    extras = {
        "loss_terms": loss_terms,
        "losses": losses,
        "sde": sde,
        "adjoint_terms": adjoint_terms,
        "policy_actions": policy_actions,
        "velocity": lambda params, obs, x, t: actor_def.apply(params, obs, x, t),
        "critic": critic,
    }
    return Agent("bam", c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [
        suite_spec("bam", "BAM: flow policy maximising Q through the memoryless SDE of a behaviour flow, path-KL regularised",
                   BAMConfig, make),
    ]
