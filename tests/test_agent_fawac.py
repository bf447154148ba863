"""FAWAC's defining mechanism: flow matching weighted per window by ``min(exp(inv_temp * A), 100)``
with ``A = mean_E Q(s, a) - V(s)`` (no gradient through the weights), and a value that regresses
on every target critic member."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rql import flow
from rql.agents import fawac
from rql.agents.base import Batch

OBS, ACT, H, B = 3, 2, 2, 32


def tiny(**kw):
    cfg = fawac.FAWACConfig(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2,
                            flow_steps=3, **kw)
    return fawac.make(cfg, OBS, ACT)


def batch(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    # Windows 0..3 start at an episode's last step and run past it: invalid.
    terminals = jnp.zeros((B, H + 1)).at[:4].set(1.0)
    return Batch(
        observations=jax.random.normal(ks[0], (B, H + 1, OBS)),
        actions=jax.random.uniform(ks[1], (B, H + 1, ACT), minval=-1.0, maxval=1.0),
        rewards=jax.random.normal(ks[2], (B, H + 1)),
        terminals=terminals,
        masks=1.0 - terminals,
    )


def by_hand(agent, params, b, key, inv_temp):
    """The weighted flow-matching loss written out from the critic, the value and the draws."""
    s0, a = b.observations[:, 0], b.actions[:, :H].reshape(B, -1)
    valid = jnp.ones(B).at[:4].set(0.0)
    adv = agent.extras["critic"](params["critic"], s0, a).mean(0) - agent.extras["value"](params["value"], s0)
    w = jnp.minimum(jnp.exp(inv_temp * adv), 100.0)
    k_x0, k_t = jax.random.split(jax.random.split(key)[1])
    x0 = jax.random.normal(k_x0, a.shape)
    t = jax.random.uniform(k_t, (B, 1))
    x_t, vel = flow.interpolate(x0, a, t)
    from rql.nets import VelocityField

    pred = VelocityField((16, 16), H * ACT).apply(params["flow"], s0, x_t, t)
    sq = jnp.mean(jnp.square(pred - vel), axis=-1)
    return jnp.mean(w * sq * valid), jnp.mean(sq * valid), w


def test_actor_loss_is_flow_matching_weighted_by_exp_advantage():
    inv_temp = 5.0
    agent = tiny(inv_temp=inv_temp)
    state = agent.init(jax.random.PRNGKey(0))
    b, key = batch(), jax.random.PRNGKey(3)
    terms, stats = agent.extras["loss_terms"](state["params"], state, b, key)
    weighted, plain, w = by_hand(agent, state["params"], b, key, inv_temp)
    np.testing.assert_allclose(terms["actor"], weighted, rtol=1e-5)
    np.testing.assert_allclose(stats["actor/bc"], plain, rtol=1e-5)
    # The weights matter here (they spread), so an unweighted loss would not pass.
    assert float(w.max() / w.min()) > 1.5
    assert abs(float(weighted - plain)) > 1e-3 * float(plain)

    # No gradient through the weights: the actor term reaches the flow only.
    g = jax.grad(lambda p: agent.extras["loss_terms"](p, state, b, key)[0]["actor"])(state["params"])
    for name in ("critic", "value"):
        assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(g[name]))
    assert any(np.any(np.asarray(x) != 0) for x in jax.tree_util.tree_leaves(g["flow"]))

    # inv_temp = 0 is plain flow matching.
    agent0 = tiny(inv_temp=0.0)
    np.testing.assert_allclose(agent0.extras["loss_terms"](state["params"], state, b, key)[0]["actor"], plain, rtol=1e-5)


def test_weights_are_capped_at_100():
    agent = tiny(inv_temp=1e4)
    state = agent.init(jax.random.PRNGKey(1))
    b = batch(1)
    s0, a = b.observations[:, 0], b.actions[:, :H].reshape(B, -1)
    w, adv = agent.extras["weights"](state["params"], s0, a)
    assert float(w.max()) == 100.0
    np.testing.assert_allclose(w[adv < 0], np.exp(1e4 * np.asarray(adv[adv < 0])), rtol=1e-5)


def test_value_regresses_on_every_target_member():
    agent = tiny()
    state = agent.init(jax.random.PRNGKey(2))
    # A target critic different from the critic, so the test tells them apart.
    state = {**state, "target_critic": jax.tree_util.tree_map(lambda x: 1.5 * x, state["target_critic"])}
    b, key = batch(2), jax.random.PRNGKey(4)
    terms, _ = agent.extras["loss_terms"](state["params"], state, b, key)
    s0, a = b.observations[:, 0], b.actions[:, :H].reshape(B, -1)
    q_t = agent.extras["critic"](state["target_critic"], s0, a)  # (E, B)
    v = agent.extras["value"](state["params"]["value"], s0)
    valid = jnp.ones(B).at[:4].set(0.0)
    np.testing.assert_allclose(terms["value"], jnp.mean(jnp.square(q_t - v) * valid), rtol=1e-5)
    # Not the regression on the members' mean (which would drop the spread between members).
    assert abs(float(terms["value"] - jnp.mean(jnp.square(q_t.mean(0) - v) * valid))) > 1e-4
