"""Diffusion policies guided by the critic's action gradient: QSM (Psenka et al., 2024, Q-score
matching) and DAC (Fang et al., 2025, diffusion actor-critic), as the QAM suite runs them (its
``dcgql`` agent: one algorithm, the two actor losses selected by ``actor_loss_type``).

The policy is a DDPM over the flattened action chunk with T = ``flow_steps`` denoising steps, a
noise predictor ``eps(s, x_t, t)`` and the schedule ``beta_t`` (``beta_schedule``; ``beta_0 = 0``),
``alpha_t = 1 - beta_t``, ``abar_t = prod_{k<=t} alpha_k``.

One update (critic and actor share one step of Adam after a global gradient-norm clip):

critic  next chunk ``a' ~ pi(s_h)`` (the sampler below, current actor), target
        ``y = sum_{i<h} gamma^i r_i (1 - T_{i-1}) + gamma^h mask_{h-1} (mean_E - rho std_E) Q_target(s_h, a')``,
        loss ``(Q_e(s_0, a) - y)^2`` averaged over members and valid windows
actor   ``t ~ U{1..T}``, ``n ~ N(0, I)``, ``x_t = sqrt(abar_t) a + sqrt(1 - abar_t) n``,
        ``g = d/dx mean_E Q_target(s_0, x) at x_t`` (the action gradient; no gradient into the critic)
        BC    ``|| n - eps(s_0, x_t, t) ||^2`` (the DDPM loss), times ``alpha``
        QSM   ``|| -inv_temp g - eps(s_0, x_t, t) ||^2``: the score ``-eps / sqrt(1 - abar_t)`` is
              matched to the scaled Q gradient (Q-score matching)
        DAC   ``sqrt(1 - abar_t) <g, eps(s_0, x_t, t)>``: the denoiser is pushed against the Q
              gradient (DAC's soft-Q-guided objective; ``inv_temp`` unused)
        each a mean over action dims, then over valid windows
targets Polyak (tau) on the critic, from the parameters the step started from.

Sampler (acting and the critic's next chunk), ``x_T ~ N(0, I)``, for t = T..1:
``x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``; with ``clip_sampler_before`` (DAC) x0 is
clipped to [-1, 1] and ``x_{t-1}`` is the DDPM posterior mean
``(sqrt(abar_{t-1}) beta_t x0 + sqrt(alpha_t) (1 - abar_{t-1}) x_t) / (1 - abar_t)``, otherwise
``x_{t-1} = x0`` (the suite's QSM sampler); then ``+ sqrt(beta_t) z`` for t > 1, and with
``clip_sampler_after`` (QSM) a clip to [-1, 1]. Acting clips the result to [-1, 1] (a no-op with
either published setting).

Deliberate difference from the suite: windows that are not valid are weighted by 0 in the actor's
losses; the suite raises each window's loss to the power ``valid``, which gives the same gradients
but adds 1 per invalid window to the reported loss.
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from rql.agents.fields import at_least_int, layer_sizes, non_negative, positive, positive_int
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
from rql.nets import Ensemble, default_init


@dataclasses.dataclass
class DiffusionQConfig(SuiteConfig):
    """QSM / DAC. Defaults are the suite's ``dcgql`` ``get_config()``."""

    actor_loss_type: Literal["qsm", "dac"] = "qsm"
    """The actor's critic-guided loss: 'qsm' (Q-score matching) or 'dac' (diffusion actor-critic)."""
    inv_temp: float = dataclasses.field(default=1.0, metadata=non_negative())
    """Inverse temperature: scale of the Q gradient the QSM loss regresses the noise prediction to."""
    alpha: float = dataclasses.field(default=0.0, metadata=non_negative())
    """Weight of the DDPM behaviour-cloning loss."""
    clip_sampler_before: bool = False
    """Sampler: clip the one-step estimate of the clean action to [-1, 1] and take the DDPM posterior
    mean from it (DAC's sampler); otherwise the next iterate is that estimate itself."""
    clip_sampler_after: bool = False
    """Sampler: clip each iterate to [-1, 1] after its noise is added (QSM's sampler)."""
    actor_hidden_dims: tuple[int, ...] = dataclasses.field(default=(512, 512, 512, 512), metadata=layer_sizes(1))
    """Hidden layer sizes of the actor, the noise predictor (at least one; the last also sizes its time condition)."""
    flow_steps: int = dataclasses.field(default=10, metadata=positive_int())
    """Denoising steps T of the DDPM policy (the suite's diffusion_steps)."""
    time_dim: int = dataclasses.field(default=64, metadata=at_least_int(2))
    """Size of the learnable Fourier embedding of the denoising step."""
    beta_schedule: Literal["vp", "cosine", "linear"] = "vp"
    """Noise schedule beta_1..beta_T."""
    use_target_critic_grad: bool = True
    """Take the action gradient from the target critic (else from the current critic)."""
    clip_grad_norm: float = dataclasses.field(default=1.0, metadata=positive(finite=False))
    """Clip of the global gradient norm before Adam."""


@dataclasses.dataclass
class QSMConfig(DiffusionQConfig):
    """QSM: the suite's QSM setting (Q-score matching, clipping after each sampler step)."""

    actor_loss_type: Literal["qsm", "dac"] = "qsm"
    """The actor's critic-guided loss: 'qsm' (Q-score matching) or 'dac' (diffusion actor-critic)."""
    clip_sampler_after: bool = True
    """Sampler: clip each iterate to [-1, 1] after its noise is added (QSM's sampler)."""


@dataclasses.dataclass
class DACConfig(DiffusionQConfig):
    """DAC: the suite's DAC setting (diffusion actor-critic loss, clipped clean-action estimate)."""

    actor_loss_type: Literal["qsm", "dac"] = "dac"
    """The actor's critic-guided loss: 'qsm' (Q-score matching) or 'dac' (diffusion actor-critic)."""
    clip_sampler_before: bool = True
    """Sampler: clip the one-step estimate of the clean action to [-1, 1] and take the DDPM posterior
    mean from it (DAC's sampler); otherwise the next iterate is that estimate itself."""


def mish(x):
    return x * jnp.tanh(jax.nn.softplus(x))


class MishMLP(nn.Module):
    """Dense layers with Mish activations (optional LayerNorm after each), a linear output."""

    hidden_dims: Sequence[int]
    out_dim: int
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x):
        for size in self.hidden_dims:
            x = mish(nn.Dense(size, kernel_init=default_init())(x))
            if self.layer_norm:
                x = nn.LayerNorm()(x)
        return nn.Dense(self.out_dim, kernel_init=default_init())(x)


class FourierTime(nn.Module):
    """``[cos(2 pi t W^T), sin(2 pi t W^T)]`` with a learnable ``W`` of shape (size / 2, 1)."""

    size: int

    @nn.compact
    def __call__(self, t):
        w = self.param("kernel", nn.initializers.normal(0.2), (self.size // 2, t.shape[-1]), jnp.float32)
        f = 2.0 * jnp.pi * t @ w.T
        return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class NoisePredictor(nn.Module):
    """``eps(s, x, t)``: the step's Fourier features go through an MLP (the condition), then an MLP
    on ``concat(x, s, condition)`` predicts the noise."""

    hidden_dims: Sequence[int]
    action_dim: int
    time_dim: int = 64
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, x, t):
        cond = FourierTime(self.time_dim, name="time")(t)
        cond = MishMLP(tuple(self.hidden_dims[:-1]), self.hidden_dims[-1], name="cond")(cond)
        h = jnp.concatenate([x, obs, cond], axis=-1)
        return MishMLP(self.hidden_dims, self.action_dim, self.layer_norm, name="net")(h)


def beta_schedule(name: str, steps: int) -> jax.Array:
    """``beta_1..beta_T`` of the named schedule."""
    if name == "vp":
        b_min, b_max = 0.1, 10.0
        t = jnp.arange(1, steps + 1)
        return 1.0 - jnp.exp(-b_min / steps - 0.5 * (b_max - b_min) * (2 * t - 1) / steps**2)
    if name == "linear":
        return jnp.linspace(1e-4, 2e-2, steps)
    if name == "cosine":
        s = 0.008
        t = jnp.linspace(0, steps, steps + 1) / steps
        abar = jnp.cos((t + s) / (1 + s) * jnp.pi * 0.5) ** 2
        abar = abar / abar[0]
        return jnp.clip(1.0 - abar[1:] / abar[:-1], 0.0, 0.999)
    raise RQLError(f"unknown beta_schedule '{name}'; choose one of: vp, cosine, linear")


def make(config: DiffusionQConfig, obs_dim: int, action_dim: int) -> Agent:
    c = config
    if c.actor_loss_type not in ("qsm", "dac"):
        raise RQLError(f"unknown actor_loss_type '{c.actor_loss_type}'; choose 'qsm' or 'dac'")
    if not c.actor_hidden_dims:
        raise RQLError("the diffusion policy needs at least one hidden layer (actor_hidden_dims)")
    h, T = c.horizon, c.flow_steps
    chunk_dim = h * action_dim
    actor_def = network(NoisePredictor(c.actor_hidden_dims, chunk_dim, c.time_dim, c.actor_layer_norm), c)
    critic_def = network(Ensemble(c.value_hidden_dims, c.ensemble, c.layer_norm), c)
    tx = optax.chain(optax.clip_by_global_norm(c.clip_grad_norm), optax.adam(c.lr))

    # Index 0 is the clean action (beta_0 = 0, abar_0 = 1).
    betas = jnp.concatenate([jnp.zeros((1,)), beta_schedule(c.beta_schedule, T)])
    alphas = 1.0 - betas
    abar = jnp.cumprod(alphas)

    def eps(params, obs, x, t):
        return actor_def.apply(params, obs, x, t)

    def critic(params, obs, actions):
        return critic_def.apply(params, obs, actions)

    def sample(actor_params, obs, key):
        """The DDPM sampler from ``x_T ~ N(0, I)``; (B, h * action_dim), not clipped at the end."""
        B = obs.shape[0]
        k_noise, k_sampler = jax.random.split(key)
        x_T = jax.random.normal(k_noise, (B, chunk_dim))
        _, k_steps = jax.random.split(k_sampler)

        def step(carry, t):
            x, k = carry
            e = eps(actor_params, obs, x, jnp.full((B, 1), t, x.dtype))
            x0 = (x - jnp.sqrt(1.0 - abar[t]) * e) / jnp.sqrt(abar[t])
            if c.clip_sampler_before:
                x0 = jnp.clip(x0, -1.0, 1.0)
                x = (jnp.sqrt(abar[t - 1]) * (1.0 - alphas[t]) * x0 + jnp.sqrt(alphas[t]) * (1.0 - abar[t - 1]) * x) / (
                    1.0 - abar[t]
                )
            else:
                x = x0
            k, k_z = jax.random.split(k)
            x = x + (t > 1) * jnp.sqrt(1.0 - alphas[t]) * jax.random.normal(k_z, x.shape)
            if c.clip_sampler_after:
                x = jnp.clip(x, -1.0, 1.0)
            return (x, k), None

        (x, _), _ = jax.lax.scan(step, (x_T, k_steps), jnp.arange(T, 0, -1))
        return x

    def actor_terms(actor_params, obs, actions, valid, key, q_fn):
        """The actor's losses with ``q_fn(obs, x) -> (B,)`` the critic it follows: ``(terms, parts)``,
        ``terms`` = {"bc", "actor"} (the QSM or DAC loss), ``parts`` the step's pieces (t, noise,
        noisy actions x_t, the Q gradient g at x_t, the predicted noise)."""
        B = actions.shape[0]
        k_t, rest = jax.random.split(key)
        t = jax.random.randint(k_t, (B,), 1, T + 1)
        k_n, _ = jax.random.split(rest)
        noise = jax.random.normal(k_n, actions.shape)
        keep = jnp.sqrt(abar[t])[:, None]
        spread = jnp.sqrt(1.0 - abar[t])[:, None]
        x_t = keep * actions + spread * noise
        g = jax.grad(lambda x: q_fn(obs, x).sum())(x_t)
        pred = eps(actor_params, obs, x_t, t[:, None].astype(x_t.dtype))
        bc = jnp.mean(jnp.square(noise - pred).mean(axis=-1) * valid)
        if c.actor_loss_type == "qsm":
            guided = jnp.mean(jnp.square(-c.inv_temp * g - pred).mean(axis=-1) * valid)
        else:
            guided = jnp.mean((spread * g * pred).mean(axis=-1) * valid)
        parts = {"t": t, "noise": noise, "x_t": x_t, "q_grad": g, "eps": pred}
        return {"bc": bc, "actor": guided}, parts

    def init(key):
        k_actor, k_critic = jax.random.split(key)
        o = jnp.zeros((1, obs_dim))
        x = jnp.zeros((1, chunk_dim))
        params = {
            "actor": actor_def.init(k_actor, o, x, jnp.zeros((1, 1))),
            "critic": critic_def.init(k_critic, o, x),
        }
        return {"params": params, "target_critic": params["critic"], "opt_state": tx.init(params)}

    def loss_terms(params, state, batch: Batch, key):
        _, k_actor, k_critic = jax.random.split(key, 3)
        s0, sh = batch.observations[:, 0], batch.observations[:, h]
        actions = flat_chunk(batch, h)
        reward_sum, bootstrap, valid = n_step_return(batch, h, c.discount)

        # Critic: chunked n-step target on the diffusion policy's next chunk.
        next_actions = sample(jax.lax.stop_gradient(params["actor"]), sh, k_critic)
        next_q = pessimistic(critic(state["target_critic"], sh, next_actions), c.rho)
        target = jax.lax.stop_gradient(reward_sum + bootstrap * next_q)
        qs = critic(params["critic"], s0, actions)
        critic_loss = jnp.mean(jnp.square(qs - target) * valid)

        # Actor: DDPM loss and the critic-guided loss, with the (frozen) critic's action gradient.
        guide = state["target_critic"] if c.use_target_critic_grad else jax.lax.stop_gradient(params["critic"])
        terms, parts = actor_terms(params["actor"], s0, actions, valid, k_actor, lambda o, x: critic(guide, o, x).mean(axis=0))
        terms = {"critic": critic_loss, **terms}
        stats = {
            "value/q_mean": qs.mean(),
            "value/q_min": qs.min(),
            "value/q_max": qs.max(),
            "value/target_mean": target.mean(),
            "actor/q_grad_norm": jnp.linalg.norm(parts["q_grad"], axis=-1).mean(),
            "data/valid_fraction": valid.mean(),
        }
        return terms, stats

    def losses(params, state, batch: Batch, key):
        terms, stats = loss_terms(params, state, batch, key)
        total = terms["critic"] + c.alpha * terms["bc"] + terms["actor"]
        return total, {"loss/total": total, **{f"loss/{k}": v for k, v in terms.items()}, **stats}

    update = update_with_targets(tx, losses, ("critic",), c.tau)

    def act(state, obs, key):
        a = jnp.clip(sample(state["params"]["actor"], obs, key), -1.0, 1.0)
        return a.reshape(obs.shape[0], h, action_dim)

    extras = {
        "loss_terms": loss_terms,
        "losses": losses,
        "actor_terms": actor_terms,
        "sample": sample,
        "eps": eps,
        "critic": critic,
        "schedule": {"betas": betas, "alphas": alphas, "abar": abar},
    }
    return Agent(c.actor_loss_type, c, obs_dim, action_dim, init, update, act, extras)


def specs() -> list:
    return [
        suite_spec("qsm", "QSM: DDPM policy whose noise prediction matches the critic's action gradient",
                   QSMConfig, make),
        suite_spec("dac", "DAC: DDPM policy pushed against the critic's action gradient, with a DDPM BC loss",
                   DACConfig, make),
    ]
