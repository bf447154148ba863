"""QAM, QAM-E and QAM-F: the adjoint states and targets on cases computed by hand, the edit bounded by
edit_scale, the one-step policy's distillation term only with fql_alpha > 0."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import REGISTRY, build_config
from rql.agents import qam
from rql.agents.base import Batch
from rql.agents.suite import METHOD_ENV
from rql.errors import RQLError

OBS, ACT, H, B, F = 3, 2, 2, 8, 3
TINY = dict(horizon=H, batch_size=B, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, flow_steps=F)


def agent_of(name, **overrides):
    cfg = build_config(name, None, None, {**TINY, **overrides})
    return REGISTRY[name].make(cfg, OBS, ACT)


def zeroed(tree):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


def scaled(tree, factor):
    return jax.tree_util.tree_map(lambda x: x * factor, tree)


def batch(key):
    k_o, k_a, k_r = jax.random.split(key, 3)
    zeros = jnp.zeros((B, H + 1))
    return Batch(
        jax.random.normal(k_o, (B, H + 1, OBS)),
        jax.random.uniform(k_a, (B, H + 1, ACT), minval=-1.0, maxval=1.0),
        jax.random.normal(k_r, (B, H + 1)),
        zeros,
        jnp.ones((B, H + 1)),
    )


def test_adjoint_states_and_targets_by_hand():
    """F = 2 (h = 1/2), zero fine field, linear base field v_b = beta x, Q = -|x - g|^2 / 2.

    Path: sigma_0^2 = 2 (1 + h) / h = 6, so x_1 = x_0 + h (0 - x_0 / h) + sqrt(h) sqrt(6) eps_0 =
    sqrt(3) eps_0; the last step is the base ODE, x_2 = (1 + beta h) x_1.
    Adjoint: a_2 = -inv_temp grad Q(x_2) = inv_temp (x_2 - g); a_k = a_{k+1} (1 + h (2 beta - 1 / (t_k + h))):
    a_1 = a_2 (1 + 2 beta h - h) = (1/2 + beta) a_2, a_0 = a_1 (1 + 2 beta h - 1) = beta a_1.
    Targets: v*_k = beta x_k - sigma_k^2 / 2 a_k with sigma_0^2 = 6, sigma_1^2 = 2 (1 - 1/2 + 1/2) / 1 = 2.
    """
    beta, inv_temp = 0.3, 2.0
    x0 = jnp.array([[0.5, -1.0, 2.0]])
    eps0, eps1 = jnp.array([[1.0, -0.5, 0.25]]), jnp.array([[9.0, 9.0, 9.0]])
    g = jnp.array([[0.1, 0.2, -0.3]])
    obs = jnp.zeros((1, 4))

    def fine(o, x, t):
        return jnp.zeros_like(x)

    def base(o, x, t):
        return beta * x

    def reward_grad(o, x):
        return inv_temp * jax.grad(lambda y: -0.5 * jnp.sum(jnp.square(y - g)))(x)

    xs, adjs, ts, x_final = qam.adjoint_states(fine, base, reward_grad, obs, x0, [eps0, eps1])

    x1 = np.sqrt(3.0) * np.asarray(eps0)
    x2 = 1.15 * x1
    a2 = inv_temp * (x2 - np.asarray(g))
    a1 = 0.8 * a2
    a0 = 0.3 * a1
    np.testing.assert_allclose(ts[:, 0, 0], [0.0, 0.5])
    np.testing.assert_allclose(xs, np.stack([x0, x1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(x_final, x2, rtol=1e-6)
    np.testing.assert_allclose(adjs, np.stack([a0, a1]), rtol=1e-5, atol=1e-6)

    v_base = beta * xs
    targets = qam.adjoint_targets(v_base, adjs, ts, 2)
    np.testing.assert_allclose(targets, np.stack([beta * x0 - 3.0 * a0, beta * x1 - 1.0 * a1]), rtol=1e-5, atol=1e-6)

    # The loss is zero at the targets and 4 / sigma^2 |v_f - v*|^2 elsewhere.
    assert float(qam.adjoint_matching_loss(targets - v_base, adjs, ts, 2)) < 1e-9
    v_fine = targets + jnp.array([[[1.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]]])
    expected = 4.0 / 6.0 * 1.0 + 4.0 / 2.0 * 4.0
    np.testing.assert_allclose(qam.adjoint_matching_loss(v_fine - v_base, adjs, ts, 2), expected, rtol=1e-5)


def test_agent_adjoint_with_zero_flows_is_t_times_critic_gradient():
    """With zero base and fine fields the lean adjoint is a_k = a_F prod_{j>=k} j / (j + 1) = t_k a_F,
    and a_F = -inv_temp grad_a mean_E Q_target(s, clip(x_F)) of the agent's target critics."""
    agent = agent_of("qam", inv_temp=2.5)
    state = agent.init(jax.random.PRNGKey(0))
    state["params"]["fine"] = zeroed(state["params"]["fine"])
    state["target_base"] = zeroed(state["target_base"])
    state["target_critic"] = scaled(state["target_critic"], 1.7)  # differs from the online critic
    obs = jax.random.normal(jax.random.PRNGKey(1), (B, OBS))

    xs, adjs, ts, x_final = jax.jit(agent.extras["adjoint"])(state["params"], state, obs, jax.random.PRNGKey(2))
    assert xs.shape == adjs.shape == (F, B, H * ACT) and ts.shape == (F, B, 1)

    q = lambda a: agent.extras["critic"](state["target_critic"], obs, jnp.clip(a, -1, 1)).mean(axis=0).sum()  # noqa: E731
    a_final = -2.5 * jax.grad(q)(x_final)
    assert float(jnp.abs(a_final).max()) > 1e-3
    expected = jnp.stack([k / F * a_final for k in range(F)])
    np.testing.assert_allclose(adjs, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(a_final).max()))

    # ... and the adjoint-matching loss at v_f = v_b = 0 is mean_B sum_k sigma_k^2 |a_k|^2.
    sigma2 = 2.0 * (1.0 - ts + 1.0 / F) / (ts + 1.0 / F)
    by_hand = jnp.mean(jnp.sum(sigma2[..., 0] * jnp.sum(jnp.square(adjs), axis=-1), axis=0))
    np.testing.assert_allclose(qam.adjoint_matching_loss(jnp.zeros_like(adjs), adjs, ts, F), by_hand, rtol=1e-5)


def test_fine_flow_learns_only_from_the_adjoint_and_base_only_from_bc():
    agent = agent_of("qam")
    state = agent.init(jax.random.PRNGKey(0))
    data = batch(jax.random.PRNGKey(3))
    key = jax.random.PRNGKey(4)

    @jax.jit
    def grads(params):
        terms = lambda p: agent.extras["loss_terms"](p, state, data, key)[0]  # noqa: E731
        return jax.grad(lambda p: terms(p)["adjoint"])(params), jax.grad(lambda p: terms(p)["bc"])(params)

    def norm(tree):
        return float(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))

    g_adj, g_bc = grads(state["params"])
    assert norm(g_adj["fine"]) > 0 and norm(g_adj["base"]) == 0 and norm(g_adj["critic"]) == 0
    assert norm(g_bc["base"]) > 0 and norm(g_bc["fine"]) == 0


@pytest.mark.parametrize("edit_scale", [0.1, 0.4])
def test_edit_is_bounded_by_edit_scale(edit_scale):
    agent = agent_of("qam-e", edit_scale=edit_scale)
    params = agent.init(jax.random.PRNGKey(0))["params"]
    params["edit"] = scaled(params["edit"], 30.0)  # saturate the tanh: edits reach the bound
    obs = jax.random.normal(jax.random.PRNGKey(1), (256, OBS))
    actions = jax.random.uniform(jax.random.PRNGKey(2), (256, H * ACT), minval=-0.5, maxval=0.5)
    edited = jax.jit(agent.extras["edit_actions"])(params, obs, actions, jax.random.PRNGKey(3))
    dist = jnp.abs(edited - actions)
    assert float(dist.max()) <= edit_scale + 1e-6
    assert float(dist.max()) > 0.95 * edit_scale

    terms, _ = jax.eval_shape(agent.extras["loss_terms"], params, agent.init(jax.random.PRNGKey(0)),
                              batch(jax.random.PRNGKey(5)), jax.random.PRNGKey(6))
    assert {"edit_q", "edit_entropy", "edit_alpha"} <= set(terms)


def test_edit_log_density_is_the_tanh_normal_density():
    mean = jnp.array([[0.3, -1.2, 2.0]])
    log_std = jnp.array([[-0.5, 0.2, 0.0]])
    e, log_p = qam.tanh_gaussian_sample(mean, log_std, jax.random.PRNGKey(0))
    u = np.arctanh(np.asarray(e, np.float64))
    std = np.exp(np.asarray(log_std, np.float64))
    normal = -0.5 * ((u - np.asarray(mean)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    expected = np.sum(normal - np.log(1 - np.asarray(e, np.float64) ** 2), axis=-1)
    np.testing.assert_allclose(log_p, expected, rtol=1e-4)


def test_plain_qam_has_neither_edit_nor_distillation():
    agent = agent_of("qam")
    state = agent.init(jax.random.PRNGKey(0))
    assert "edit" not in state["params"] and "onestep" not in state["params"]
    terms, _ = jax.eval_shape(agent.extras["loss_terms"], state["params"], state, batch(jax.random.PRNGKey(1)),
                              jax.random.PRNGKey(2))
    assert set(terms) == {"critic", "bc", "adjoint"}


def test_distillation_term_only_with_fql_alpha_and_weighted_by_it():
    data, key = batch(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    a30, a60 = agent_of("qam-f", fql_alpha=30.0), agent_of("qam-f", fql_alpha=60.0)
    state = a30.init(jax.random.PRNGKey(0))
    terms, _ = jax.jit(a30.extras["loss_terms"])(state["params"], state, data, key)
    assert {"distill", "q"} <= set(terms) and float(terms["distill"]) > 0
    # The total the update minimises weighs the distillation term (only) by fql_alpha.
    np.testing.assert_allclose(a30.extras["total"](terms), sum(terms.values()) + 29.0 * terms["distill"], rtol=1e-5)
    np.testing.assert_allclose(a60.extras["total"](terms) - a30.extras["total"](terms), 30.0 * terms["distill"],
                               rtol=1e-4)

    off = agent_of("qam-f", fql_alpha=0.0)
    off_state = off.init(jax.random.PRNGKey(0))
    assert "onestep" not in off_state["params"]
    assert "distill" not in jax.eval_shape(off.extras["loss_terms"], off_state["params"], off_state, data, key)[0]


def test_which_network_acts():
    """QAM acts with the fine flow, QAM-F with its one-step policy; the base flow acts only at inv_temp 0."""
    obs, key = jax.random.normal(jax.random.PRNGKey(1), (B, OBS)), jax.random.PRNGKey(2)

    def changes(agent, part):
        state = agent.init(jax.random.PRNGKey(0))
        act = jax.jit(agent.act)
        before = act(state, obs, key)
        state["params"][part] = scaled(state["params"][part], 1.5)
        return not np.allclose(before, act(state, obs, key))

    plain, cold, fql = agent_of("qam"), agent_of("qam", inv_temp=0.0), agent_of("qam-f")
    assert changes(plain, "fine") and not changes(plain, "base")
    assert changes(cold, "base") and not changes(cold, "fine")
    assert changes(fql, "onestep") and not changes(fql, "fine")


def test_variants_defaults_and_fields():
    cfgs = {n: REGISTRY[n].config_cls() for n in ("qam", "qam-e", "qam-f")}
    assert (cfgs["qam"].fql_alpha, cfgs["qam"].edit_scale, cfgs["qam"].inv_temp) == (0.0, 0.0, 0.3)
    assert cfgs["qam-e"].edit_scale > 0 and cfgs["qam-e"].fql_alpha == 0
    assert cfgs["qam-f"].fql_alpha > 0 and cfgs["qam-f"].edit_scale == 0
    for name, cfg in cfgs.items():
        keys = {k for row in METHOD_ENV[name].values() for k in row}
        assert keys <= {f.name for f in dataclasses.fields(cfg)}
    with pytest.raises(RQLError, match="not both"):
        agent_of("qam", fql_alpha=1.0, edit_scale=0.1)
