"""QSM and DAC: the actor's critic-guided losses against a critic whose action gradient is known."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rql.agents import build_config
from rql.agents.qsm_dac import make

OBS, ACT, H, B = 3, 2, 2, 64
D = H * ACT
TINY = dict(horizon=H, actor_hidden_dims=(32, 32), value_hidden_dims=(16,), ensemble=2, flow_steps=5, time_dim=8)
W = jnp.array([0.5, -1.0, 2.0, 0.25])  # a linear critic Q(s, x) = <W, x>: its action gradient is W everywhere
C = jnp.array([0.3, -0.2, 0.1, 0.6])  # a quadratic critic Q(s, x) = -|x - C|^2 / 2: gradient C - x


def agent(name, **overrides):
    return make(build_config(name, None, None, {**TINY, **overrides}), OBS, ACT)


def inputs(seed=0):
    k_o, k_a = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k_o, (B, OBS)), jax.random.uniform(k_a, (B, D), minval=-1.0, maxval=1.0)


def quadratic(obs, x):
    return -0.5 * jnp.sum(jnp.square(x - C), axis=-1)


def linear(obs, x):
    return x @ W


@pytest.mark.parametrize("name", ["qsm", "dac"])
def test_loss_is_the_stated_function_of_the_q_gradient(name):
    ag = agent(name, inv_temp=3.0)
    params = jax.jit(ag.init)(jax.random.PRNGKey(0))["params"]["actor"]
    obs, actions = inputs()
    valid = (jnp.arange(B) % 4 != 0).astype(jnp.float32)
    terms_fn = jax.jit(lambda a: ag.extras["actor_terms"](params, obs, a, valid, jax.random.PRNGKey(1), quadratic))
    terms, p = terms_fn(actions)
    abar = ag.extras["schedule"]["abar"][p["t"]][:, None]
    assert np.all((p["t"] >= 1) & (p["t"] <= 5))
    np.testing.assert_allclose(p["x_t"], jnp.sqrt(abar) * actions + jnp.sqrt(1 - abar) * p["noise"], atol=1e-6)
    grad = C - p["x_t"]  # the critic's action gradient, by hand
    np.testing.assert_allclose(p["q_grad"], grad, atol=1e-6)
    if name == "qsm":  # the noise prediction regressed to -inv_temp * dQ/da
        per_window = np.mean(np.square(-3.0 * grad - p["eps"]), axis=-1)
    else:  # sqrt(1 - abar_t) <dQ/da, eps> / D
        per_window = np.mean(np.sqrt(1 - abar) * grad * p["eps"], axis=-1)
    np.testing.assert_allclose(terms["actor"], np.mean(per_window * valid), rtol=1e-5)
    np.testing.assert_allclose(terms["bc"], np.mean(np.mean(np.square(p["noise"] - p["eps"]), -1) * valid), rtol=1e-5)

    # Invalid windows carry no weight: changing their actions leaves the losses as they were.
    moved = actions.at[::4].set(-actions[::4])
    terms2, _ = terms_fn(moved)
    for k in terms:
        np.testing.assert_allclose(terms2[k], terms[k], rtol=1e-6)


def fit_actor(ag, params, q_fn, steps, loss="actor"):
    """Adam on one actor loss alone, with the critic ``q_fn`` fixed."""
    obs, actions = inputs()
    valid = jnp.ones((B,))
    tx = optax.adam(3e-3)

    def step(carry, key):
        p, opt = carry
        grads = jax.grad(lambda q: ag.extras["actor_terms"](q, obs, actions, valid, key, q_fn)[0][loss])(p)
        updates, opt = tx.update(grads, opt, p)
        return (optax.apply_updates(p, updates), opt), None

    run = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), jax.random.split(jax.random.PRNGKey(2), steps))[0][0])
    return run(params)


def predicted_noise(ag, params, seed=5):
    k_o, k_x, k_t = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs, x = jax.random.normal(k_o, (256, OBS)), jax.random.normal(k_x, (256, D))
    t = jax.random.randint(k_t, (256, 1), 1, 6).astype(jnp.float32)
    return jax.jit(ag.extras["eps"])(params, obs, x, t)


def test_qsm_noise_prediction_follows_the_q_gradient():
    """QSM's minimiser: eps(s, x, t) = -inv_temp * dQ/da, a constant field -inv_temp * W for a linear
    critic; a sign or scale error in the loss moves the fit elsewhere."""
    ag = agent("qsm", inv_temp=0.5)
    params = fit_actor(ag, jax.jit(ag.init)(jax.random.PRNGKey(0))["params"]["actor"], linear, 600)
    eps = np.asarray(predicted_noise(ag, params))
    np.testing.assert_allclose(eps.mean(axis=0), -0.5 * np.asarray(W), atol=0.05)
    assert np.abs(eps - (-0.5 * np.asarray(W))).max() < 0.2


def test_dac_moves_samples_up_the_critic():
    """DAC's loss pushes the noise prediction against dQ/da, so the sampler's clean-action estimates
    (and its samples) move along the critic's gradient."""
    ag = agent("dac")
    params0 = jax.jit(ag.init)(jax.random.PRNGKey(0))["params"]["actor"]
    params = fit_actor(ag, params0, linear, 100)
    w = np.asarray(W)
    assert (np.asarray(predicted_noise(ag, params)) @ w).mean() < (np.asarray(predicted_noise(ag, params0)) @ w).mean() - 1.0

    obs = jax.random.normal(jax.random.PRNGKey(6), (256, OBS))
    sample = jax.jit(ag.extras["sample"])
    before, after = sample(params0, obs, jax.random.PRNGKey(7)), sample(params, obs, jax.random.PRNGKey(7))
    assert np.all(np.abs(np.asarray(after)) <= 1.0)  # DAC's sampler clips its clean-action estimate
    assert float((after @ W).mean()) > float((before @ W).mean()) + 0.5


def test_published_settings_differ_as_in_the_suite():
    qsm, dac = build_config("qsm", "scene-play-singletask-task1-v0"), build_config("dac", "scene-play-singletask-task1-v0")
    assert (qsm.actor_loss_type, qsm.clip_sampler_before, qsm.clip_sampler_after) == ("qsm", False, True)
    assert (dac.actor_loss_type, dac.clip_sampler_before, dac.clip_sampler_after) == ("dac", True, False)
    assert (qsm.inv_temp, qsm.alpha, dac.alpha) == (3.0, 30.0, 1.0)
