"""Q-learning with Adjoint Matching (QAM; Li and Levine, 2026), with its two variants QAM-E and QAM-F.

QAM keeps two flow policies on the flattened action chunk: a *base* flow ``v_b`` trained by
behaviour cloning, and a *fine* flow ``v_f`` trained by adjoint matching (Domingo-Enrich et al.,
2024) to sample from ``pi(a|s) ~ pi_b(a|s) exp(inv_temp * Q(s, a))``. Time ``t in [0, 1]`` runs from
noise to action on the grid ``t_k = k h``, ``h = 1 / F``, ``k = 0..F-1``. One update (all losses
summed, one Adam step after clipping the global gradient norm to 1 (``clip_grad``)):

critic
  next action  ``a' ~ pi(.|s_h)`` (the fine flow from ``z ~ N(0, I)``, or the one-step policy when
               ``fql_alpha > 0``, or flow + edit when ``edit_scale > 0``; best of ``best_of_n`` by
               ``mean_E Q``), clipped to [-1, 1]
  target       ``y = sum_{i<h} gamma^i r_i + gamma^h mask Q'``, ``Q' = mean_E - rho * std_E`` of the
               target critics at ``(s_h, a')``
  loss         ``(Q_e(s_0, a) - y)^2`` averaged over members, invalid windows zeroed
base flow (BC)
  ``|| v_b(s, x_t, t) - (a - x_0) ||^2`` (mean over dims) on ``x_t = (1 - t) x_0 + t a``, valid windows
adjoint matching (fine flow), everything below without gradient except ``v_f`` in the loss
  memoryless SDE   ``sigma_k = sqrt(2 (1 - t_k + h) / (t_k + h))``, drift
                   ``b(x, t) = 2 v(x, t) - x / (t + h)``:
                   ``x_{k+1} = x_k + h b_f(x_k, t_k) + sqrt(h) sigma_k eps_k`` for ``k < F-1`` with the
                   fine field, and the last step the base ODE ``x_F = x_{F-1} + h v_b(x_{F-1}, t_{F-1})``
  adjoint state    ``a_F = -inv_temp * grad_x mean_E Q(s, clip(x_F))`` (target critics,
                   ``use_target_grad``), the terminal condition ``-grad r`` with reward
                   ``r = inv_temp * Q``
  lean adjoint     backwards with the *base* drift only (no gradient of the fine field: the
                   lean adjoint of the paper), one explicit step each
                   ``a_k = a_{k+1} + h a_{k+1}^T d/dx [2 v_b(x, t_k + h) - x / (t_k + h)] |_{x = x_k}``
                   (``k = F-1..0``; ``v_b`` is the target base flow when ``target_actor``)
  targets          ``v*(x_k, t_k) = v_b(x_k, t_k) - sigma_k^2 / 2 * a_k``
  loss             ``sum_k || 2 / sigma_k (v_f - v_b)(x_k, t_k) + sigma_k a_k ||^2``, averaged over
                   the batch, i.e. ``sum_k 4 / sigma_k^2 || v_f(x_k, t_k) - v*(x_k, t_k) ||^2``
QAM-F (``fql_alpha > 0``): a one-step policy ``mu(s, z)`` is distilled from the fine flow and
  pushed up the critic: ``fql_alpha * || mu(s, z) - flow_f(s, z) ||^2 - mean_E Q(s, clip(mu(s, z)))``
  (flow without gradient, critic frozen); it acts.
QAM-E (``edit_scale > 0``): an edit policy ``e ~ tanh N(m(s, a), s(s, a))`` on the fine flow's
  action ``a`` acts as ``clip(a + edit_scale * e)`` (so ``|edit| < edit_scale``), trained SAC-style:
  ``-mean_E Q(s, clip(a + edit_scale e)) + alpha log p(e)`` and the temperature loss
  ``alpha (H - H_target)``, ``H_target = -edit_target_entropy_multiplier * h * action_dim``.
Then the target critic and the target base flow move towards the parameters the step started
from (Polyak, tau). With ``residual`` the fine flow is a residual added to the base flow.

Acting: the fine flow (the base flow when ``inv_temp = 0``), or the one-step policy (QAM-F), plus
the edit (QAM-E), best of ``best_of_n``. The three registered names differ only in their defaults:
``qam`` (the suite's defaults), ``qam-e`` (``edit_scale = 0.1``) and ``qam-f`` (``fql_alpha = 30``),
the values the suite uses most across its environments; ``--task`` sets the suite's own.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from rql.agents.fields import any_number, non_negative, positive_int
from rql.agents.kit import (
    Agent,
    Batch,
    SuiteConfig,
    TanhGaussian,
    flat_chunk,
    n_step_return,
    network,
    pessimistic,
    suite_spec,
    tanh_gaussian_sample,
    update_with_targets,
)
from rql.errors import RQLError
from rql.nets import MLP, Ensemble, VelocityField


@dataclasses.dataclass
class QAMConfig(SuiteConfig):
    """Q-learning with Adjoint Matching. Defaults are the suite's ``agents/qam.py``."""

    inv_temp: float = dataclasses.field(default=0.3, metadata=non_negative())
    """Inverse temperature of the tilt exp(inv_temp * Q): the adjoint starts at -inv_temp * dQ/da."""
    fql_alpha: float = dataclasses.field(default=0.0, metadata=non_negative())
    """If > 0 (QAM-F): a one-step policy acts, distilled from the fine flow with this weight while maximising Q."""
    edit_scale: float = dataclasses.field(default=0.0, metadata=non_negative())
    """If > 0 (QAM-E): an edit policy adds at most this much (per dimension) to the fine flow's action."""
    best_of_n: int = dataclasses.field(default=1, metadata=positive_int())
    """Actions sampled per state when acting and for the critic target; the one with the highest mean Q is taken."""
    target_actor: bool = True
    """Use the target (Polyak) base flow in the adjoint and as the fine flow's reference."""
    residual: bool = False
    """The fine flow is a residual on the base flow (velocity v_b + v_f) instead of a full velocity."""
    clip_adj: bool = True
    """Clip the final action to [-1, 1] before taking the critic's gradient for the adjoint."""
    clip_grad: bool = True
    """Clip the global gradient norm to 1 before Adam."""
    use_target_grad: bool = True
    """Take the adjoint's initial gradient from the target critics (else the online ones)."""
    edit_target_entropy: float | None = dataclasses.field(default=None, metadata=any_number(optional=True))
    """Target entropy of the edit policy (None: -edit_target_entropy_multiplier * h * action_dim)."""
    edit_target_entropy_multiplier: float = dataclasses.field(default=0.5, metadata=any_number())
    """Multiplier of the chunk's dimension for the automatic target entropy of the edit policy."""


@dataclasses.dataclass
class QAMEConfig(QAMConfig):
    """QAM-E: QAM with an edit policy on top of the fine flow."""

    edit_scale: float = dataclasses.field(default=0.1, metadata=non_negative())
    """If > 0 (QAM-E): an edit policy adds at most this much (per dimension) to the fine flow's action."""


@dataclasses.dataclass
class QAMFConfig(QAMConfig):
    """QAM-F: QAM with a one-step policy distilled from the fine flow (FQL-style)."""

    fql_alpha: float = dataclasses.field(default=30.0, metadata=non_negative())
    """If > 0 (QAM-F): a one-step policy acts, distilled from the fine flow with this weight while maximising Q."""


def memoryless_sigma(t, h):
    """The memoryless noise level ``sqrt(2 (1 - t + h) / (t + h))`` at time ``t`` (``h`` offsets both ends)."""
    return jnp.sqrt(2.0 * (1.0 - t + h) / (t + h))


Velocity = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def adjoint_states(fine: Velocity, base: Velocity, reward_grad, obs, x0, noises):
    """The memoryless SDE path of the fine flow and its lean adjoint states (module docstring).

    ``fine``/``base``: ``(obs, x, t) -> velocity``; ``reward_grad(obs, x_F) -> grad_x r`` (``r =
    inv_temp * Q``); ``noises``: ``F`` arrays like ``x0`` (the last one is unused, as in the suite).
    Returns ``(xs, adjs, ts, x_F)``: ``xs[k] = x_k``, ``adjs[k] = a_k``, ``ts[k] = t_k`` for ``k < F``.
    """
    F = len(noises)
    h = 1.0 / F
    x, xs, ts = x0, [], []
    for k in range(F):
        t = jnp.full((*x.shape[:-1], 1), k / F, x.dtype)
        xs.append(x)
        ts.append(t)
        if k < F - 1:
            drift = 2.0 * fine(obs, x, t) - x / (t + h)
            x = x + h * drift + jnp.sqrt(h) * memoryless_sigma(t, h) * noises[k]
        else:  # the last step integrates the base ODE
            x = x + h * base(obs, x, t)
    x_final = x
    adj = -reward_grad(obs, x_final)
    adjs = [None] * F
    for k in reversed(range(F)):
        s = ts[k] + h

        def drift_base(xk, s=s):
            return 2.0 * base(obs, xk, s) - xk / s

        adj = adj + h * jax.vjp(drift_base, xs[k])[1](adj)[0]
        adjs[k] = adj
    return jnp.stack(xs), jnp.stack(adjs), jnp.stack(ts), x_final


def adjoint_targets(v_base, adjs, ts, flow_steps):
    """The regression targets of the fine field: ``v_b - sigma_k^2 / 2 * a_k``."""
    sigma = memoryless_sigma(ts, 1.0 / flow_steps)
    return v_base - 0.5 * jnp.square(sigma) * adjs


def adjoint_matching_loss(v_fine_minus_base, adjs, ts, flow_steps):
    """``sum_k || 2 / sigma_k (v_f - v_b) + sigma_k a_k ||^2`` averaged over the batch (arrays (F, B, D))."""
    sigma = memoryless_sigma(ts, 1.0 / flow_steps)
    per = jnp.sum(jnp.square(v_fine_minus_base * 2.0 / sigma + sigma * adjs), axis=-1)
    return jnp.mean(jnp.sum(per, axis=0))


def make(config: QAMConfig, obs_dim: int, action_dim: int, name: str = "qam") -> Agent:
    c = config
    if c.fql_alpha > 0 and c.edit_scale > 0:
        raise RQLError("QAM takes either fql_alpha > 0 (QAM-F) or edit_scale > 0 (QAM-E), not both; set one to 0")
    h, F = c.horizon, c.flow_steps
    D = h * action_dim
    flow_def = network(VelocityField(c.actor_hidden_dims, D, c.actor_layer_norm), c)
    onestep_def = network(MLP(c.actor_hidden_dims, D, c.actor_layer_norm), c, concat=True)
    edit_def = network(TanhGaussian(c.actor_hidden_dims, D), c, concat=True)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    target_entropy = c.edit_target_entropy
    if target_entropy is None:
        target_entropy = -c.edit_target_entropy_multiplier * D
    tx = optax.adam(c.lr)
    if c.clip_grad:
        tx = optax.chain(optax.clip_by_global_norm(1.0), tx)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def velocity(p):
        return lambda o, x, t: flow_def.apply(p, o, x, t)  # noqa: E731

    def flow_actions(params, obs, noise, model="fine"):
        """F Euler steps from ``noise`` with the fine flow (plus the base flow when ``residual``),
        or with the base flow (``model="base"``); clipped to [-1, 1]."""
        if model == "base":
            fields = [params["base"]]
        else:
            fields = [params["base"], params["fine"]] if c.residual else [params["fine"]]
        x = noise
        for k in range(F):
            t = jnp.full((*x.shape[:-1], 1), k / F, x.dtype)
            x = x + sum(flow_def.apply(p, obs, x, t) for p in fields) / F
        return jnp.clip(x, -1.0, 1.0)

    def onestep(params, obs, noise):
        return onestep_def.apply(params["onestep"], obs, noise)

    def edit_sample(params, obs, actions, key):
        """``(e, log p(e))``: the edit policy's squashed sample at ``(s, a)``, ``|e| < 1``."""
        mean, log_std = edit_def.apply(params["edit"], obs, actions)
        return tanh_gaussian_sample(mean, log_std, key)

    def edit_actions(params, obs, actions, key):
        """``clip(a + edit_scale * e)``: the edited action chunk."""
        e, _ = edit_sample(params, obs, actions, key)
        return jnp.clip(actions + c.edit_scale * e, -1.0, 1.0)

    def sample_actions(params, obs, key):
        """The policy's chunks ``(B, D)`` at ``obs`` (best of ``best_of_n`` by mean_E Q), no gradient."""
        params = jax.lax.stop_gradient(params)
        k_noise, k_edit = jax.random.split(key)
        B, n = obs.shape[0], c.best_of_n
        noise = jax.random.normal(k_noise, (B, n, D))
        obs_n = jnp.repeat(obs[:, None, :], n, axis=1)
        if c.fql_alpha > 0:
            actions = jnp.clip(onestep(params, obs_n, noise), -1.0, 1.0)
        else:
            actions = flow_actions(params, obs_n, noise, "base" if c.inv_temp == 0 else "fine")
            if c.edit_scale > 0:
                actions = edit_actions(params, obs_n, actions, k_edit)
        if n == 1:
            return actions[:, 0]
        best = jnp.argmax(critic(params["critic"], obs_n, actions).mean(axis=0), axis=-1)
        return jnp.take_along_axis(actions, best[:, None, None], axis=1)[:, 0]

    def init(key):
        k_critic, k_base, k_fine, k_onestep, k_edit = jax.random.split(key, 5)
        o, x, t = jnp.zeros((1, obs_dim)), jnp.zeros((1, D)), jnp.zeros((1, 1))
        params = {
            "critic": critic_def.init(k_critic, o, x),
            "base": flow_def.init(k_base, o, x, t),
            "fine": flow_def.init(k_fine, o, x, t),
        }
        if c.fql_alpha > 0:
            params["onestep"] = onestep_def.init(k_onestep, o, x)
        if c.edit_scale > 0:
            params["edit"] = edit_def.init(k_edit, o, x)
            params["log_alpha"] = jnp.zeros(())
        return {
            "params": params,
            "target_critic": params["critic"],
            "target_base": params["base"],
            "opt_state": tx.init(params),
        }

    def adjoint(params, state, obs, key):
        """``(xs, adjs, ts, x_F)`` of :func:`adjoint_states` for this agent (no gradient)."""
        params = jax.lax.stop_gradient(params)
        base_params = state["target_base"] if c.target_actor else params["base"]
        base = velocity(base_params)
        if c.residual:
            fine = lambda o, x, t: base(o, x, t) + flow_def.apply(params["fine"], o, x, t)  # noqa: E731
        else:
            fine = velocity(params["fine"])
        grad_critic = state["target_critic"] if c.use_target_grad else params["critic"]

        def reward_grad(o, x):
            q = lambda a: critic(grad_critic, o, jnp.clip(a, -1.0, 1.0) if c.clip_adj else a).mean(axis=0).sum()  # noqa: E731
            return c.inv_temp * jax.grad(q)(x)

        # The suite's key use: the start from ``key`` itself, the noise from its F splits.
        x0 = jax.random.normal(key, (obs.shape[0], D))
        noises = [jax.random.normal(k, x0.shape) for k in jax.random.split(key, F)]
        return adjoint_states(fine, base, reward_grad, obs, x0, noises)

    def loss_terms(params, state, batch: Batch, key):
        B = batch.observations.shape[0]
        # Key splits as in the suite, so that one key gives both the same draws.
        _, k_actor, k_next = jax.random.split(key, 3)
        _, k_noise, k_time, k_adj, k_extra = jax.random.split(k_actor, 5)
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)

        # Critic: chunked n-step target, pessimistic over the target ensemble.
        next_actions = sample_actions(params, sh, k_next)
        next_q = pessimistic(critic(state["target_critic"], sh, next_actions), c.rho)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Base flow: flow-matching BC on the interpolant.
        x0 = jax.random.normal(k_noise, (B, D))
        t = jax.random.uniform(k_time, (B, 1))
        x_t = (1.0 - t) * x0 + t * actions
        pred = flow_def.apply(params["base"], s0, x_t, t)
        bc_loss = jnp.mean(jnp.mean(jnp.square(pred - (actions - x0)), axis=-1) * valid)

        # Fine flow: adjoint matching along the memoryless path.
        xs, adjs, ts, _ = adjoint(params, state, s0, k_adj)
        obs_f = jnp.broadcast_to(s0, (F, *s0.shape))
        v_fine = flow_def.apply(params["fine"], obs_f, xs, ts)
        if c.residual:
            diff = v_fine
        else:
            base_params = state["target_base"] if c.target_actor else params["base"]
            diff = v_fine - jax.lax.stop_gradient(flow_def.apply(base_params, obs_f, xs, ts))
        adjoint_loss = adjoint_matching_loss(diff, adjs, ts, F)

        terms = {"critic": critic_loss, "bc": bc_loss, "adjoint": adjoint_loss}
        frozen = jax.lax.stop_gradient(params)
        abs_adj = jnp.abs(adjs)
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "adjoint/abs_mean": abs_adj.mean(),
            "adjoint/abs_max": abs_adj.max(),
            "data/valid_fraction": valid.mean(),
        }

        if c.fql_alpha > 0:  # QAM-F: one-step policy distilled from the fine flow, pushed up Q.
            z = jax.random.normal(jax.random.split(k_extra)[0], (B, D))
            teacher = flow_actions(frozen, s0, z)
            student = onestep(params, s0, z)
            terms["distill"] = jnp.mean(jnp.square(teacher - student))
            q_pi = critic(frozen["critic"], s0, jnp.clip(student, -1.0, 1.0)).mean(axis=0)
            terms["q"] = -q_pi.mean()
            stats["value/policy_q_mean"] = q_pi.mean()

        if c.edit_scale > 0:  # QAM-E: SAC-style edit policy on the fine flow's actions.
            k_z, k_e = jax.random.split(k_extra)
            base_actions = flow_actions(frozen, s0, jax.random.normal(k_z, (B, D)))
            e, log_p = edit_sample(params, s0, base_actions, k_e)
            edited = jnp.clip(base_actions + c.edit_scale * e, -1.0, 1.0)
            q_pi = critic(frozen["critic"], s0, edited).mean(axis=0)
            alpha_frozen = jnp.exp(frozen["log_alpha"])
            entropy = -jax.lax.stop_gradient(log_p).mean()
            terms["edit_q"] = -q_pi.mean()
            terms["edit_entropy"] = jnp.mean(log_p * alpha_frozen)
            terms["edit_alpha"] = jnp.exp(params["log_alpha"]) * (entropy - target_entropy)
            stats.update({"value/policy_q_mean": q_pi.mean(), "edit/entropy": entropy, "edit/alpha": alpha_frozen})
        return terms, stats

    def total(terms):
        return sum(c.fql_alpha * v if k == "distill" else v for k, v in terms.items())

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        loss = total(terms)
        return loss, {"loss/total": loss, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    # The targets move towards the parameters the step started from, as the suite does.
    update = update_with_targets(tx, losses, ("critic", "base"), c.tau)

    def act(state, obs, key):
        return sample_actions(state["params"], obs, key).reshape(obs.shape[0], h, action_dim)

    extras = {
        "loss_terms": loss_terms,
        "losses": losses,
        "total": total,
        "adjoint": adjoint,
        "critic": critic,
        "flow_actions": flow_actions,
        "onestep": onestep,
        "edit_sample": edit_sample,
        "edit_actions": edit_actions,
        "sample_actions": sample_actions,
        "target_entropy": target_entropy,
    }
    return Agent(name, c, obs_dim, action_dim, init, update, act, extras)


VARIANTS = (
    ("qam", "Q-learning with Adjoint Matching: a flow fine-tuned by adjoint matching towards exp(inv_temp Q)",
     QAMConfig),
    ("qam-e", "QAM-E: QAM with a bounded edit policy (edit_scale) on the fine flow's actions", QAMEConfig),
    ("qam-f", "QAM-F: QAM with a one-step policy distilled from the fine flow (fql_alpha)", QAMFConfig),
)


def specs() -> list:
    import functools

    return [suite_spec(n, d, cls, functools.partial(make, name=n)) for n, d, cls in VARIANTS]
