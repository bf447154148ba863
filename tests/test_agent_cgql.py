"""CGQL's defining mechanism: the sampler's velocity is the flow's plus
``guidance_coef * (x + (1 - t) * inv_temp * grad_x mean_e Q_e(s, x, t_Q)) / t``, with the critic
read at ``t_Q = 1`` in 'simple' mode and at the flow's ``t`` in 'mse'/'linex' mode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import build_config, make_agent

OBS, ACT, H, B = 3, 2, 2, 5
TINY = dict(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, flow_steps=4,
            inv_temp=3.0, guidance_coef=0.7)


def tiny(name, **over):
    agent = make_agent(name, build_config(name, None, None, {**TINY, **over}), OBS, ACT)
    return agent, agent.init(jax.random.PRNGKey(0))


def inputs(seed=1):
    k_o, k_x, k_t = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jax.random.normal(k_o, (B, OBS))
    x = jax.random.normal(k_x, (B, H * ACT))
    t = jax.random.uniform(k_t, (B, 1), minval=0.1, maxval=0.9)
    return obs, x, t


def critic_grad(agent, critic_params, obs, x, t_q):
    """grad_x of the ensemble-mean critic, per sample (written here, not taken from the agent)."""
    per_sample = lambda o, a, tq: agent.extras["critic"](critic_params, o[None], a[None], tq[None]).mean()  # noqa: E731
    return jax.vmap(jax.grad(per_sample, argnums=1))(obs, x, t_q)


@pytest.mark.parametrize("name,mode", [("cgql", "simple"), ("cgql-m", "mse"), ("cgql-l", "linex")])
def test_guidance_adds_the_stated_term(name, mode):
    agent, state = tiny(name)
    assert agent.config.mode == mode
    actor_p, critic_p = state["params"]["actor"], state["params"]["critic"]
    obs, x, t = inputs()

    guided = agent.extras["guided_velocity"](actor_p, critic_p, obs, x, t)
    plain = agent.extras["velocity"](actor_p, obs, x, t)
    t_q = jnp.ones_like(t) if mode == "simple" else t
    g = critic_grad(agent, critic_p, obs, x, t_q)
    expected = 0.7 * (x + (1.0 - t) * 3.0 * g) / t
    np.testing.assert_allclose(guided - plain, expected, rtol=1e-5, atol=1e-6)

    # The modes differ only in the critic's time: that time matters here, so reading the critic at the
    # other mode's time would fail the check above.
    g_other = critic_grad(agent, critic_p, obs, x, t if mode == "simple" else jnp.ones_like(t))
    assert np.max(np.abs(0.7 * (1.0 - t) * 3.0 * (g - g_other) / t)) > 1e-3


def test_no_guidance_without_temperature():
    agent, state = tiny("cgql-m", inv_temp=0.0)
    actor_p, critic_p = state["params"]["actor"], state["params"]["critic"]
    obs, x, t = inputs()
    np.testing.assert_array_equal(agent.extras["guided_velocity"](actor_p, critic_p, obs, x, t),
                                  agent.extras["velocity"](actor_p, obs, x, t))


def test_sampler_first_step_unguided_then_guided():
    agent, state = tiny("cgql")
    actor_p, critic_p = state["params"]["actor"], state["params"]["critic"]
    obs, noise, _ = inputs(seed=2)
    F = agent.config.flow_steps
    x = noise
    for i in range(F):
        t = jnp.full((B, 1), i / F)
        if i == 0:
            x = x + agent.extras["velocity"](actor_p, obs, x, t) / F
        else:
            x = x + agent.extras["guided_velocity"](actor_p, critic_p, obs, x, t) / F
    got = agent.extras["sample"](actor_p, critic_p, obs, noise)
    np.testing.assert_allclose(got, jnp.clip(x, -1.0, 1.0), rtol=1e-5, atol=1e-6)
    # ... and the guidance moved the sample (the check is not vacuous).
    unguided = make_agent("cgql", build_config("cgql", None, None, {**TINY, "inv_temp": 0.0}), OBS, ACT)
    assert np.max(np.abs(got - unguided.extras["sample"](actor_p, critic_p, obs, noise))) > 1e-3
