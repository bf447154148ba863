"""BAM: the memoryless SDE, its path KL and the gradient through every step, on a case small enough
to compute by hand (velocity fields that are constant: all kernels zero, output bias b)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents import Batch, build_config
from rql.agents.bam import make

OBS, ACT, H, F = 3, 2, 2, 4
D = H * ACT
TINY = dict(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16,), ensemble=2, flow_steps=F, inv_temp=2.0)
W = jnp.array([0.5, -1.0, 2.0, 0.25])


def agent(**overrides):
    return make(build_config("bam", None, None, {**TINY, **overrides}), OBS, ACT)


def constant_field(params, bias):
    """The velocity field's parameters with every kernel and bias zero but the output bias: v = bias."""
    zero = jax.tree_util.tree_map(jnp.zeros_like, params)
    last = f"Dense_{len(TINY['actor_hidden_dims'])}"
    zero["params"]["MLP_0"][last]["bias"] = jnp.asarray(bias, jnp.float32)
    return zero


def hand_sde(b_fast, b_ref):
    """Mean and per-dim variance of x_F, and the KL, with constant velocities (x_0 ~ N(0, I))."""
    dt, mean, var, kl = 1.0 / F, np.zeros(D), 1.0, 0.0
    for i in range(F - 1):
        t = i * dt
        sigma2 = 2 * (1 - t + dt) / (t + dt)
        decay = 1 - dt / (t + dt)  # from the drift's -x / (t + dt) term: 0 at the first step (memoryless)
        mean = decay * mean + 2 * dt * b_fast
        var = decay**2 * var + dt * sigma2
        kl += 2 / sigma2 * np.sum(np.square(b_fast - b_ref))
    return mean + dt * b_ref, var, kl


def test_sde_and_kl_by_hand():
    ag = agent()
    params = jax.jit(ag.init)(jax.random.PRNGKey(0))["params"]
    b_fast, b_ref = np.array([0.4, -0.3, 0.2, 0.1]), np.array([-0.2, 0.5, 0.0, 0.3])
    fast, ref = constant_field(params["fast"], b_fast), constant_field(params["slow"], b_ref)
    obs = jax.random.normal(jax.random.PRNGKey(1), (20000, OBS))
    x, kl = jax.jit(ag.extras["sde"])(fast, ref, obs, jax.random.PRNGKey(2))
    mean, var, kl_hand = hand_sde(b_fast, b_ref)
    np.testing.assert_allclose(kl, kl_hand, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(x).mean(axis=0), mean, atol=5 * np.sqrt(var / 20000))
    np.testing.assert_allclose(np.asarray(x).var(axis=0), var, rtol=0.05)
    # The initial noise is forgotten after the first step: x_F is uncorrelated with x_0 (drawn from the same key).
    x0 = jax.random.normal(jax.random.PRNGKey(2), (20000, D))
    corr = [np.corrcoef(np.asarray(x0[:, j]), np.asarray(x[:, j]))[0, 1] for j in range(D)]
    assert np.max(np.abs(corr)) < 0.05

    # No KL when the policy is the reference.
    _, kl_same = jax.jit(ag.extras["sde"])(ref, ref, obs, jax.random.PRNGKey(2))
    assert float(kl_same) == 0.0


def test_gradient_flows_through_every_sde_step():
    """With Q(s, x) = <W, x>: x_F moves one for one with the policy's constant velocity (the sum of
    2 dt over the SDE steps, each discounted by the later steps' decay, is exactly 1), so the
    objective's gradient w.r.t. the output bias is -inv_temp W + 2 (b - b_ref) sum_i 2 / sigma_i^2."""
    ag = agent()
    params = jax.jit(ag.init)(jax.random.PRNGKey(0))["params"]
    b_fast, b_ref = np.array([0.4, -0.3, 0.2, 0.1]), np.array([-0.2, 0.5, 0.0, 0.3])
    fast, ref = constant_field(params["fast"], b_fast), constant_field(params["slow"], b_ref)
    obs = jax.random.normal(jax.random.PRNGKey(1), (64, OBS))

    def objective(p):
        return ag.extras["adjoint_terms"](p, ref, obs, jax.random.PRNGKey(3), lambda o, x: x @ W)[0]["adjoint"]

    grad = jax.jit(jax.grad(objective))(fast)["params"]["MLP_0"][f"Dense_{len(TINY['actor_hidden_dims'])}"]["bias"]
    weight = sum((i + 1) / (F - i + 1) for i in range(F - 1))  # 2 / sigma_i^2 = (t_i + dt) / (1 - t_i + dt)
    np.testing.assert_allclose(grad, -2.0 * np.asarray(W) + 2 * weight * (b_fast - b_ref), rtol=1e-4, atol=1e-5)


def _random_batch(n: int = 32) -> Batch:
    ks = jax.random.split(jax.random.PRNGKey(4), 3)
    return Batch(
        observations=jax.random.normal(ks[0], (n, H + 1, OBS)),
        actions=jax.random.uniform(ks[1], (n, H + 1, ACT), minval=-1, maxval=1),
        rewards=jax.random.normal(ks[2], (n, H + 1)),
        terminals=jnp.zeros((n, H + 1)),
        masks=jnp.ones((n, H + 1)),
    )


def test_each_network_takes_its_own_loss():
    """Flow matching trains the behaviour flow only, the adjoint objective the policy only, the TD
    error the critic only."""
    ag = agent()
    state = jax.jit(ag.init)(jax.random.PRNGKey(0))
    batch = _random_batch()

    @jax.jit
    def grads(params):
        return {
            term: jax.grad(lambda p: ag.extras["loss_terms"](p, state, batch, jax.random.PRNGKey(5))[0][term])(params)
            for term in ("critic", "flow", "adjoint")
        }

    g = grads(state["params"])

    def norm(tree):
        return float(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))

    owner = {"critic": "critic", "flow": "slow", "adjoint": "fast"}
    for term, net in owner.items():
        for other in ("critic", "slow", "fast"):
            assert (norm(g[term][other]) > 0) == (other == net), (term, other)



def test_adjoint_gradient_finite_when_critics_tie():
    """Where every critic member gives the same Q (std exactly 0), the adjoint's gradient is finite:
    the std contributes nothing there, so it equals the gradient with rho = 0 (the ensemble mean).
    (``jnp.std``'s own gradient is NaN at a tie; one tied sample made every parameter NaN in training.)"""
    batch = _random_batch()
    state = jax.jit(agent().init)(jax.random.PRNGKey(0))
    tied = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x[:1], x.shape), state["params"]["critic"])
    state = {**state, "params": {**state["params"], "critic": tied}}

    def adjoint_grad(rho):
        terms = agent(rho=rho).extras["loss_terms"]
        return jax.jit(jax.grad(lambda p: terms(p, state, batch, jax.random.PRNGKey(5))[0]["adjoint"]))(
            state["params"])["fast"]

    g, g_mean = adjoint_grad(0.5), adjoint_grad(0.0)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree_util.tree_leaves(g))
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(g)) > 0
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g, g_mean)
