"""The agent kit: everything a module that defines an agent imports from this package.

An agent module (``make(config, obs_dim, action_dim) -> Agent`` and its config dataclass, see
``docs/agents.md``) takes its shared pieces from here (or from :mod:`rql.agents.base`, which this
module re-exports), from :mod:`rql.flow` (flow sampling, reversal, the interpolant) and from
:mod:`rql.nets` (the networks), never from another agent module (``tests/test_agent_kit.py``).

The contract (:mod:`rql.agents.base`)
    :class:`Batch`, :class:`Agent`, :data:`Windows`; the config bases :class:`AgentConfig`,
    :class:`ActorCriticConfig` (actor/critic networks, ``tau``) and :class:`SuiteConfig` (the QAM
    suite's ensemble, ``rho``, ``flow_steps``, its ``suite`` windows).
Update glue
    :func:`optimizer_step` (one optimiser step on ``loss_fn(params) -> (loss, metrics)``),
    :func:`polyak` (target networks) and :func:`update_with_targets` (both: a whole ``update``).
Windows and targets
    :func:`n_step_return`, :func:`chunk_action_mask`, :func:`flat_chunk` (both window semantics),
    :func:`chunk_td` (the chunked TD pieces of one batch), :func:`td_loss` (the suite's critic loss).
Critic ensembles
    :func:`pessimistic` (``mean - rho * std``), :func:`aggregate` with :data:`QAgg` (that, the mean or
    the minimum), :func:`best_of_n` (the candidate action with the highest mean value),
    :func:`value_stats` (the ``value/...`` and ``data/valid_fraction`` metrics).
Losses
    :func:`expectile_loss`, :func:`window_mean` (the suite's valid-weighted mean),
    :func:`suite_bc_flow_loss` (the suite's flow-matching BC loss).
Networks
    :func:`network` (:class:`Network`): every network on observations is built through it, so that
    ``--agent.encoder`` puts an image encoder in front of each (none for state observations).
Policies
    :class:`TanhGaussian` and :func:`tanh_gaussian_sample` (a squashed Gaussian head and its sample).
Registration
    :class:`AgentSpec` and :func:`suite_spec` (the registry entry of a method run under the suite's
    protocol); agents are listed in :mod:`rql.agents.extra` today.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from rql import flow
from rql.agents.base import (
    ActorCriticConfig,
    Agent,
    AgentConfig,
    Batch,
    SuiteConfig,
    Windows,
    chunk_action_mask,
    expectile_loss,
    flat_chunk,
    n_step_return,
    optimizer_step,
    pessimistic,
    polyak,
)
from rql.agents.spec import AgentSpec
from rql.nets import default_init

# --- critic aggregation ------------------------------------------------------------------------

QAgg = Literal["pessimistic", "mean", "min"]

def aggregate(qs: jax.Array, how: str, rho: float) -> jax.Array:
    """Combine an ensemble's values (axis 0): ``mean - rho * std``, the mean, or the minimum."""
    if how == "pessimistic":
        return pessimistic(qs, rho)
    return qs.min(axis=0) if how == "min" else qs.mean(axis=0)


def window_mean(per_dim: jax.Array, valid: jax.Array) -> jax.Array:
    """Mean over windows of the per-window mean over dims, invalid windows zeroed (the suite's masking)."""
    return jnp.mean(per_dim.mean(axis=-1) * valid)


# --- the suite's chunked TD target, flow-matching loss and best-of-n selection -----------------


def suite_bc_flow_loss(velocity: flow.Velocity, obs, actions, valid, key):
    """The suite's flow-matching loss: ``mean_B valid * mean_dims (v(s, x_t, t) - (a - x0))^2``.

    Draws ``x0 ~ N(0, I)`` then ``t ~ U(0, 1)`` (that order) from ``key``."""
    k_x0, k_t = jax.random.split(key)
    x0 = jax.random.normal(k_x0, actions.shape)
    t = jax.random.uniform(k_t, (actions.shape[0], 1))
    x_t, target_vel = flow.interpolate(x0, actions, t)
    return jnp.mean(jnp.mean(jnp.square(velocity(obs, x_t, t) - target_vel), axis=-1) * valid)


def chunk_td(batch: Batch, horizon: int, discount: float):
    """``(s_0, s_h, a, reward_sum, bootstrap, valid)`` of the chunked n-step target."""
    reward_sum, bootstrap, valid = n_step_return(batch, horizon, discount)
    s0, sh = batch.observations[:, 0], batch.observations[:, horizon]
    return s0, sh, flat_chunk(batch, horizon), reward_sum, bootstrap, valid


def td_loss(qs, next_qs, reward_sum, bootstrap, valid, rho: float):
    """``mean_{E,B} valid (Q_e - y)^2`` with ``y = reward_sum + bootstrap * (mean_E - rho std_E)(next_qs)``
    (no gradient through ``y``). Returns ``(loss, y)``."""
    target = jax.lax.stop_gradient(reward_sum + bootstrap * pessimistic(next_qs, rho))
    return jnp.mean(jnp.square(qs - target) * valid), target


def best_of_n(q_fn: Callable, obs, candidates):
    """The candidate (``(B, n, D)``) with the highest ``mean_E q_fn(obs, candidate)`` per state.
    With one candidate the critic is not evaluated (the choice is the same)."""
    n = candidates.shape[1]
    if n == 1:
        return candidates[:, 0]
    q = q_fn(jnp.repeat(obs[:, None], n, axis=1), candidates).mean(axis=0)  # (B, n)
    idx = jnp.argmax(q, axis=-1)
    return jnp.take_along_axis(candidates, idx[:, None, None], axis=1)[:, 0]


def value_stats(qs, target, valid) -> dict:
    return {
        "value/q_mean": qs.mean(),
        "value/q_min": qs.min(),
        "value/q_max": qs.max(),
        "value/target_mean": target.mean(),
        "data/valid_fraction": valid.mean(),
    }


# --- the update glue ----------------------------------------------------------------------------


def update_with_targets(tx, losses: Callable, targets: Sequence[str], tau: float) -> Callable:
    """``update(state, batch, key) -> (state, metrics)``: one ``tx`` step on
    ``losses(params, state, batch, key) -> (loss, metrics)`` (:func:`optimizer_step`), then each target
    network ``state["target_<name>"]`` (``name`` in ``targets``) moves (Polyak ``tau``) towards
    ``state["params"][name]`` as the step started from (the suite's order). The state is
    ``{"params", "opt_state", "target_<name>", ...}``."""

    def update(state, batch: Batch, key):
        params, opt_state, metrics = optimizer_step(tx, lambda p: losses(p, state, batch, key), state)
        new_state = {
            "params": params,
            **{f"target_{n}": polyak(state["params"][n], state[f"target_{n}"], tau) for n in targets},
            "opt_state": opt_state,
        }
        return new_state, metrics

    return update


# --- networks on observations: the one place image encoders come in -----------------------------


class Network:
    """A network of an agent on observations, with the image encoder of ``config.encoder`` in front.

    ``init(key, obs, *rest)`` and ``apply(params, obs, *rest)`` as a Flax module's, ``obs`` first
    (``(..., obs_dim)``; flat images ``(..., H * W * C)``, uint8 or float). With ``encoder = "none"``
    they are the module's own ``init``/``apply`` (same parameters, same numbers); with an encoder the
    parameters are ``{"encoder": ..., "net": ...}`` and the module sees the encoder's features instead of
    ``obs``. Every network built through here has its own encoder (the FQL codebase's choice: actor and
    critic do not share one), trained by the losses that reach that network's parameters; a target copy
    of a network copies (and Polyak-averages) its encoder too. ``concat=True``: the module takes one
    input, ``concatenate([obs, *rest])`` (features in place of ``obs``), as one-step policies do."""

    def __init__(self, module, config=None, concat: bool = False):
        from rql.nets import ENCODERS, ImpalaEncoder

        self.module, self.concat = module, concat
        name = getattr(config, "encoder", "none")
        self.encoder = None
        if name != "none":
            shape = tuple(getattr(config, "image_shape", ()) or ())
            if len(shape) != 3:
                from rql.errors import RQLError

                raise RQLError(f"--agent.encoder {name} reads image observations (N, H, W, C), but the "
                               f"observations are flat vectors; use --agent.encoder none for state observations")
            self.encoder = ImpalaEncoder(shape, **ENCODERS[name])

    def _inputs(self, obs, rest):
        return (jnp.concatenate([obs, *rest], axis=-1),) if self.concat else (obs, *rest)

    def init(self, key, obs, *rest):
        if self.encoder is None:
            return self.module.init(key, *self._inputs(obs, rest))
        k_enc, k_net = jax.random.split(key)
        enc = self.encoder.init(k_enc, obs)
        return {"encoder": enc, "net": self.module.init(k_net, *self._inputs(self.encoder.apply(enc, obs), rest))}

    def apply(self, params, obs, *rest):
        if self.encoder is None:
            return self.module.apply(params, *self._inputs(obs, rest))
        return self.module.apply(params["net"], *self._inputs(self.encoder.apply(params["encoder"], obs), rest))


def network(module, config, concat: bool = False) -> Network:
    """``module`` (a Flax module whose first input is the observation) behind ``config``'s image encoder
    (:class:`Network`); the same module, same parameters, when ``config.encoder`` is ``none``."""
    return Network(module, config, concat)


# --- a squashed Gaussian policy head -----------------------------------------------------------


class TanhGaussian(nn.Module):
    """``(mean, log_std)`` of a Gaussian from an MLP trunk (GELU after every layer), two linear heads;
    ``log_std`` clipped to [-20, 2]. Samples are squashed with tanh (see :func:`tanh_gaussian_sample`)."""

    hidden_dims: Sequence[int]
    action_dim: int

    @nn.compact
    def __call__(self, x):
        for size in self.hidden_dims:
            x = nn.gelu(nn.Dense(size, kernel_init=default_init())(x))
        mean = nn.Dense(self.action_dim, kernel_init=default_init())(x)
        log_std = nn.Dense(self.action_dim, kernel_init=default_init())(x)
        return mean, jnp.clip(log_std, -20.0, 2.0)


def tanh_gaussian_sample(mean, log_std, key):
    """A reparameterised sample ``tanh(mean + std * eps)`` and its log-density (summed over the last axis)."""
    eps = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * eps
    log_normal = -0.5 * jnp.square(eps) - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    # log |d tanh(u) / du| = log(1 - tanh(u)^2), in a form that is stable for large |u|.
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.tanh(u), jnp.sum(log_normal - log_det, axis=-1)


# --- registration ------------------------------------------------------------------------------

# 2x256 networks and two critics (clipped double Q where the method takes the minimum).
SMALL = dict(actor_hidden_dims=(256, 256), value_hidden_dims=(256, 256), ensemble=2)


def suite_spec(name: str, description: str, config_cls: type, make):
    """The registry entry of a suite method: the suite's protocol under ``--task``, ``small`` = 2x256, 2 critics."""
    from rql.agents import suite

    return AgentSpec(name, description, config_cls, make, suite.env_preset(name), {"small": SMALL, "reference": {}})


__all__ = [
    "ActorCriticConfig", "Agent", "AgentConfig", "AgentSpec", "Batch", "Network", "QAgg", "SMALL", "SuiteConfig",
    "TanhGaussian", "Windows", "aggregate", "best_of_n", "chunk_action_mask", "chunk_td", "expectile_loss",
    "flat_chunk", "n_step_return", "network", "optimizer_step", "pessimistic", "polyak", "suite_bc_flow_loss", "suite_spec",
    "tanh_gaussian_sample", "td_loss", "update_with_targets", "value_stats", "window_mean",
]
