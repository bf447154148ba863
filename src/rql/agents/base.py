"""What every agent is: a config dataclass and three pure functions over a pytree state.

``init(key) -> state``, ``update(state, batch, key) -> (state, metrics)`` and
``act(state, obs, key) -> action chunk``. Pure means no Python side effects and no host
round trips, so the runner can ``lax.scan`` many updates per dispatch.

A batch is a :class:`Batch` of windows, batch-major: ``observations`` (B, h+1, obs_dim),
``actions`` (B, h+1, action_dim), ``rewards``/``terminals``/``masks`` (B, h+1). How the data
pipeline fills a window is the agent's ``windows`` field (:data:`Windows`):

``rql``    (the official RQL's) ``h + 1`` consecutive steps of one episode, the episode drawn
           uniformly, then a start among its steps but the last; index ``i`` past the episode's
           last step repeats that step (clamping), and index ``h`` is the state the target
           bootstraps from.
``suite``  (the QAM suite's ``sample_sequence``) a start drawn uniformly over the dataset's steps;
           indices ``0 .. h-1`` are the steps ``start + i`` as stored (past an episode end they
           run into the next episode), ``terminals`` is their running maximum and ``masks`` the
           running minimum of the masks over the valid steps (those before the first episode end);
           index ``h`` holds the successor state of the last valid step (the dataset's next
           observation, also at an episode's end), with the last entry of ``masks``/``terminals``
           repeated and a zero reward.

Under both, :func:`n_step_return` gives each semantics' target and :func:`chunk_action_mask` its
valid steps, so an agent reads a batch the same way whichever windows it trains on.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp

from rql.agents.fields import in_range, layer_sizes, non_negative, positive, positive_int, unit_interval

Windows = Literal["rql", "suite"]
Encoder = Literal["none", "impala_small", "impala", "impala_debug"]


class Batch(NamedTuple):
    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    terminals: jax.Array
    masks: jax.Array


@dataclasses.dataclass
class AgentConfig:
    """Fields every agent has. Subclasses add their own, each with the reference default."""

    horizon: int = dataclasses.field(default=1, metadata=positive_int())
    """Action chunk length h: the policy outputs h actions, executed open loop."""
    batch_size: int = dataclasses.field(default=256, metadata=positive_int())
    """Windows per update."""
    discount: float = dataclasses.field(default=0.99, metadata=in_range(0, 1, lo_open=True))
    """Discount gamma per environment step."""
    lr: float = dataclasses.field(default=3e-4, metadata=positive())
    """Adam learning rate."""
    sparse: bool = False
    """Make rewards sparse: -1 wherever the dataset reward is non-zero, 0 elsewhere."""
    windows: Windows = "rql"
    """How training windows are drawn: 'rql' (the official RQL's: an episode drawn uniformly, indices
    clamped to its last step, the last step's mask, the clamped next state) or 'suite' (the QAM suite's:
    starts uniform over steps, the running minimum of the masks over the valid steps, the true successor
    state of the last valid step)."""
    encoder: Encoder = "none"
    """Image encoder of every network for pixel observations: 'impala_small', 'impala' (the FQL codebase's
    IMPALA CNNs) or 'impala_debug' (a tiny one for tests); 'none' for state observations. Each network
    has its own encoder, trained by that network's loss (docs/pixels.md)."""
    image_shape: tuple[int, ...] = dataclasses.field(default=(), metadata=layer_sizes())
    """(H, W, C) of the image observations, frames stacked along C: set by rql train from the data (a
    record, not an option of its own; empty for state observations)."""


@dataclasses.dataclass
class ActorCriticConfig(AgentConfig):
    """Network fields shared by the methods with an actor and value networks."""

    actor_hidden_dims: tuple[int, ...] = dataclasses.field(default=(512, 512, 512, 512), metadata=layer_sizes())
    """Hidden layer sizes of the actor (velocity field or policy)."""
    actor_layer_norm: bool = False
    """LayerNorm after each hidden activation of the actor."""
    value_hidden_dims: tuple[int, ...] = dataclasses.field(default=(512, 512, 512, 512), metadata=layer_sizes())
    """Hidden layer sizes of each value/critic network."""
    layer_norm: bool = True
    """LayerNorm after each hidden activation of the value/critic networks."""
    tau: float = dataclasses.field(default=0.005, metadata=unit_interval())
    """Polyak rate of the target value/critic networks."""


@dataclasses.dataclass
class SuiteConfig(ActorCriticConfig):
    """Fields every method of the QAM suite has (its defaults; ``--task`` sets the protocol's values)."""

    ensemble: int = dataclasses.field(default=10, metadata=positive_int())
    """Number of critics (the suite's num_qs)."""
    rho: float = dataclasses.field(default=0.5, metadata=non_negative())
    """Pessimism: critics are aggregated as mean_E - rho * std_E."""
    flow_steps: int = dataclasses.field(default=10, metadata=positive_int())
    """Euler steps F of the flow policy."""
    windows: Windows = "suite"
    """How training windows are drawn: 'suite' (the QAM suite's, its default here: starts uniform over
    steps, the running minimum of the masks over the valid steps, the true successor state of the last
    valid step) or 'rql' (the official RQL's: an episode drawn uniformly, indices clamped to its last
    step, the last step's mask)."""


def pessimistic(qs: jax.Array, rho: float) -> jax.Array:
    """``mean - rho * std`` over the ensemble axis (axis 0) of ``qs``.

    The values are ``jnp.std``'s, but the std has a zero gradient where all members tie exactly:
    there ``sqrt``'s gradient is infinite, the chain rule gives NaN, and one tied sample in a batch
    turns every parameter NaN (seen with 2 critics in training; the suite's code has the same hazard)."""
    var = qs.var(axis=0)
    tied = var <= 0.0
    std = jnp.where(tied, 0.0, jnp.sqrt(jnp.where(tied, 1.0, var)))
    return qs.mean(axis=0) - rho * std


@dataclasses.dataclass(frozen=True)
class Agent:
    name: str
    config: Any
    obs_dim: int
    action_dim: int
    init: Callable[[jax.Array], Any]
    update: Callable[[Any, Batch, jax.Array], tuple[Any, dict]]
    act: Callable[[Any, jax.Array, jax.Array], jax.Array]
    """``act(state, obs (B, obs_dim), key) -> (B, horizon, action_dim)`` inside [-1, 1]."""
    extras: dict = dataclasses.field(default_factory=dict)
    """Named pure functions for inspection and tests (e.g. ``loss_terms``), never used by the runner."""


def optimizer_step(tx, loss_fn, state) -> tuple[Any, Any, dict]:
    """One step of ``tx`` on ``loss_fn(params) -> (loss, metrics)`` from ``state["params"]`` and
    ``state["opt_state"]``; returns ``(params, opt_state, metrics)``."""
    import optax

    grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return optax.apply_updates(state["params"], updates), opt_state, metrics


def polyak(new, old, rate: float):
    """``rate * new + (1 - rate) * old``, leaf by leaf."""
    return jax.tree_util.tree_map(lambda n, o: rate * n + (1.0 - rate) * o, new, old)


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """Asymmetric squared loss: weight ``expectile`` where ``diff >= 0``, else ``1 - expectile``."""
    weight = jnp.where(diff >= 0, expectile, 1.0 - expectile)
    return weight * jnp.square(diff)


def shifted_terminals(terminals: jax.Array) -> jax.Array:
    """``T_{i-1}`` for ``i = 0..h``: the window's terminal flags shifted right by one, zero first."""
    return jnp.concatenate([jnp.zeros_like(terminals[:, :1]), terminals[:, :-1]], axis=1)


def n_step_return(batch: Batch, horizon: int, discount: float) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The chunked n-step pieces shared by chunked agents.

    Returns ``(reward_sum, bootstrap_scale, valid)`` per window, where the target is
    ``reward_sum + bootstrap_scale * next_value`` (``next_value`` read at window index ``h``):
    rewards after an episode end are dropped, the bootstrap is ``gamma^h * mask_{h-1}``, and
    windows that run more than one step past an episode end are invalid (``valid = 0``). On
    ``suite`` windows ``terminals`` is already a running maximum and ``masks`` a running minimum
    over the valid steps, so the same lines give the suite's return, bootstrap mask and ``valid``.
    """
    rs_t = shifted_terminals(batch.terminals)
    powers = discount ** jnp.arange(horizon, dtype=batch.rewards.dtype)
    reward_sum = jnp.sum(batch.rewards[:, :horizon] * powers * (1.0 - rs_t[:, :horizon]), axis=1)
    bootstrap = (discount**horizon) * batch.masks[:, horizon - 1]
    valid = (jnp.sum(rs_t, axis=1) <= 1).astype(batch.rewards.dtype)
    return reward_sum, bootstrap, valid


def chunk_action_mask(batch: Batch, horizon: int, action_dim: int) -> jax.Array:
    """(B, h * action_dim) mask that zeroes the action dims after an episode end in the window."""
    keep = 1.0 - shifted_terminals(batch.terminals)[:, :horizon]
    return jnp.repeat(keep, action_dim, axis=1)


def flat_chunk(batch: Batch, horizon: int) -> jax.Array:
    """The first ``h`` actions of each window flattened to ``(B, h * action_dim)``."""
    a = batch.actions[:, :horizon]
    return a.reshape(a.shape[0], -1)
