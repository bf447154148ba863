"""FBRAC's defining mechanism: the actor's Q term reaches the velocity field through every Euler
step of the flow (backpropagation through time), with the critic frozen, weighted 1 / alpha."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents import fbrac
from rql.agents.base import Batch
from rql.nets import VelocityField

OBS, ACT, H, B, F = 3, 2, 2, 16, 4


def tiny(**kw):
    cfg = fbrac.FBRACConfig(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2,
                            flow_steps=F, **kw)
    return fbrac.make(cfg, OBS, ACT)


def batch(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return Batch(
        observations=jax.random.normal(ks[0], (B, H + 1, OBS)),
        actions=jax.random.uniform(ks[1], (B, H + 1, ACT), minval=-1.0, maxval=1.0),
        rewards=jax.random.normal(ks[2], (B, H + 1)),
        terminals=jnp.zeros((B, H + 1)),
        masks=jnp.ones((B, H + 1)),
    )


def unrolled_q_loss(agent, flow_params, critic_params, obs, z, truncate=False):
    """``-mean mean_E Q(s, pi(s, z))`` with the Euler steps written out by hand; ``truncate`` cuts
    the gradient between steps (only the last velocity evaluation is differentiated)."""
    vf = VelocityField((16, 16), H * ACT)
    x = z
    for k in range(F):
        x_in = jax.lax.stop_gradient(x) if truncate else x
        x = x_in + vf.apply(flow_params, obs, x_in, jnp.full((B, 1), k / F)) / F
    return -agent.extras["critic"](critic_params, obs, jnp.clip(x, -1.0, 1.0)).mean()


def test_q_term_backpropagates_through_every_flow_step():
    agent = tiny()
    state = agent.init(jax.random.PRNGKey(0))
    b, key = batch(), jax.random.PRNGKey(5)
    grads = jax.grad(lambda p: agent.extras["loss_terms"](p, state, b, key)[0]["q"])(state["params"])

    # The policy noise is the third key of the documented split.
    z = jax.random.normal(jax.random.split(key, 3)[2], (B, H * ACT))
    s0, critic_params = b.observations[:, 0], state["params"]["critic"]
    full = jax.grad(unrolled_q_loss, argnums=1)(agent, state["params"]["flow"], critic_params, s0, z)
    last = jax.grad(unrolled_q_loss, argnums=1)(agent, state["params"]["flow"], critic_params, s0, z, True)

    flat = lambda t: np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(t)])  # noqa: E731
    g, g_full, g_last = flat(grads["flow"]), flat(full), flat(last)
    np.testing.assert_allclose(g, g_full, rtol=1e-4, atol=1e-6)
    # The check can tell: a gradient through the last step only is far from the agent's.
    assert np.linalg.norm(g - g_last) > 0.05 * np.linalg.norm(g)
    # The critic is frozen in the Q term.
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(grads["critic"]))


def test_q_term_is_divided_by_alpha():
    b, key = batch(1), jax.random.PRNGKey(3)
    grads = {}
    for alpha in (1.0, 10.0):
        agent = tiny(alpha=alpha)
        state = agent.init(jax.random.PRNGKey(0))
        total, metrics = agent.extras["losses"](state["params"], state, b, key)
        np.testing.assert_allclose(total, metrics["loss/critic"] + metrics["loss/bc"] + metrics["loss/q"] / alpha, rtol=1e-6)
        grads[alpha] = jax.grad(lambda p: agent.extras["losses"](p, state, b, key)[0])(state["params"])["flow"]
    g_q = jax.grad(lambda p: agent.extras["loss_terms"](p, state, b, key)[0]["q"])(state["params"])["flow"]
    # d total / d theta = d bc + d q / alpha: the difference between alpha = 1 and 10 is 0.9 d q.
    for g1, g10, gq in zip(*(jax.tree_util.tree_leaves(t) for t in (grads[1.0], grads[10.0], g_q))):
        np.testing.assert_allclose(g1 - g10, 0.9 * gq, rtol=1e-3, atol=1e-6)


def test_best_of_n_takes_the_highest_mean_q():
    agent = tiny(best_of_n=4)
    state = agent.init(jax.random.PRNGKey(0))
    obs, key = jax.random.normal(jax.random.PRNGKey(1), (B, OBS)), jax.random.PRNGKey(2)
    chosen = agent.extras["sample_actions"](state["params"], obs, key)
    noise = jax.random.normal(key, (B, 4, H * ACT))
    candidates = agent.extras["flow_actions"](state["params"]["flow"], jnp.repeat(obs[:, None], 4, axis=1), noise)
    q = agent.extras["critic"](state["params"]["critic"], jnp.repeat(obs[:, None], 4, axis=1), candidates).mean(0)
    best = np.asarray(candidates)[np.arange(B), np.argmax(np.asarray(q), axis=1)]
    np.testing.assert_allclose(chosen, best, rtol=1e-6)
    assert not np.allclose(chosen, candidates[:, 0])
