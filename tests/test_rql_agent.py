import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import build_config, make_agent
from rql.agents.base import Batch, expectile_loss, n_step_return

TINY = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=3, horizon=2, batch_size=4,
            rho=0.5, expectile=0.7, discount=0.9, flow_steps=4)
G = 0.9


def make(**over):
    cfg = build_config("rql", None, None, {**TINY, **over})
    agent = make_agent("rql", cfg, obs_dim=3, action_dim=1)
    state = agent.init(jax.random.PRNGKey(0))
    # Distinct targets from the online networks, as after some training.
    state["target_value"] = jax.tree_util.tree_map(lambda p: p * 1.3 + 0.01, state["target_value"])
    return agent, state


def hand_batch():
    obs = np.arange(4 * 3 * 3, dtype=np.float32).reshape(4, 3, 3) / 20.0
    actions = np.array([[0.1, -0.2, 0.3], [0.5, 0.5, 0.5], [-0.4, 0.2, 0.2], [0.0, 0.6, -0.1]], np.float32)[..., None]
    rewards = np.array([[-1, -1, -1], [-1, -1, -1], [0, -1, -1], [-1, 0, -1]], np.float32)
    terminals = np.array([[0, 0, 0], [1, 1, 1], [0, 1, 1], [0, 0, 0]], np.float32)
    masks = np.array([[1, 1, 1], [1, 1, 1], [1, 1, 1], [1, 0, 1]], np.float32)
    return Batch(*(jnp.asarray(a) for a in (obs, actions, rewards, terminals, masks)))


def test_n_step_pieces_by_hand():
    b = hand_batch()
    reward_sum, boot, valid = n_step_return(b, 2, G)
    np.testing.assert_allclose(np.asarray(reward_sum), [-1 - G, -1, 0 - G, -1 + 0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(boot), [G**2, G**2, G**2, 0.0], rtol=1e-6)
    # Window 1 ends at its first step and runs two steps past it: masked out.
    np.testing.assert_allclose(np.asarray(valid), [1, 0, 1, 1])


def test_expectile_loss_by_hand():
    d = jnp.array([2.0, -2.0, 0.0])
    np.testing.assert_allclose(np.asarray(expectile_loss(d, 0.9)), [0.9 * 4, 0.1 * 4, 0.0], rtol=1e-6)


def test_losses_equal_independent_computation():
    agent, state = make()
    b = hand_batch()
    key = jax.random.PRNGKey(7)
    terms, _ = agent.extras["loss_terms"](state["params"], state, b, key)
    k_next, k_dist, k_noise, k_time = jax.random.split(key, 4)
    value, velocity = agent.extras["value"], agent.extras["velocity"]

    # Critic target, computed here from the networks' raw outputs.
    noise_next = jax.random.normal(k_next, (4, 2))
    qn = np.asarray(value(state["target_value"], b.observations[:, 2], noise_next, jnp.zeros((4, 1))))
    q_next = qn.mean(0) - 0.5 * qn.std(0)
    expected_target = np.array([-1 - G + G**2 * q_next[0], -1 + G**2 * q_next[1],
                                -G + G**2 * q_next[2], -1.0])
    target, x_t, t, valid = agent.extras["critic_target"](state["params"], state, b, k_next, k_dist)
    np.testing.assert_allclose(np.asarray(target), expected_target, rtol=1e-5, atol=1e-6)
    qs = np.asarray(value(state["params"]["value"], b.observations[:, 0], x_t, t))
    diff = expected_target[None] - qs
    w = np.where(diff >= 0, 0.7, 0.3)
    expected_critic = np.mean(w * diff**2 * np.array([1, 0, 1, 1])[None])
    np.testing.assert_allclose(float(terms["critic"]), expected_critic, rtol=1e-5)

    # Flow-matching BC on the interpolant, action dims after an episode end masked.
    x0 = np.asarray(jax.random.normal(k_noise, (4, 2)))
    tt = np.asarray(jax.random.uniform(k_time, (4, 1)))
    a = np.asarray(b.actions[:, :2, 0])
    xt = (1 - tt) * x0 + tt * a
    pred = np.asarray(velocity(state["params"]["actor"])(b.observations[:, 0], jnp.asarray(xt), jnp.asarray(tt)))
    mask = np.array([[1, 1], [1, 0], [1, 1], [1, 1]])
    np.testing.assert_allclose(float(terms["bc"]), np.mean((pred - (a - x0)) ** 2 * mask), rtol=1e-5)

    # One-step value ascent.
    step = np.minimum(1 / 4, 1 - tt)
    xn = xt + pred * step
    tn = np.minimum(tt + 0.25, 1.0)
    qa = np.asarray(value(state["params"]["value"], b.observations[:, 0], jnp.asarray(xn), jnp.asarray(tn))).mean(0)
    np.testing.assert_allclose(float(terms["actor"]), -np.mean(qa * np.array([1, 0, 1, 1])), rtol=1e-5)


def test_critic_target_does_not_depend_on_partial_action_time():
    agent, state = make()
    b = hand_batch()
    k_next = jax.random.PRNGKey(3)
    y1, _, t1, _ = agent.extras["critic_target"](state["params"], state, b, k_next, jax.random.PRNGKey(10))
    y2, _, t2, _ = agent.extras["critic_target"](state["params"], state, b, k_next, jax.random.PRNGKey(11))
    assert float(jnp.abs(t1 - t2).max()) > 1e-3  # different partial-action times were drawn
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y2), rtol=0, atol=0)
    # Negative control: bootstrapping through flow steps makes the target depend on t.
    agent_b, state_b = make(value_target="bootstrap")
    z1, *_ = agent_b.extras["critic_target"](state_b["params"], state_b, b, k_next, jax.random.PRNGKey(10))
    z2, *_ = agent_b.extras["critic_target"](state_b["params"], state_b, b, k_next, jax.random.PRNGKey(11))
    assert float(jnp.abs(z1 - z2).max()) > 1e-4


def _nonzero(tree):
    return any(float(jnp.abs(x).max()) > 0 for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("value_target", ["reversal", "bootstrap"])
def test_gradient_isolation(value_target):
    agent, state = make(value_target=value_target)
    b = hand_batch()
    key = jax.random.PRNGKey(5)

    def term(name):
        return jax.grad(lambda p: agent.extras["loss_terms"](p, state, b, key)[0][name])(state["params"])

    g_actor, g_critic, g_bc = term("actor"), term("critic"), term("bc")
    assert not _nonzero(g_actor["value"]), "value ascent moved the value"
    assert _nonzero(g_actor["actor"])
    assert not _nonzero(g_critic["actor"]), "critic loss moved the actor"
    assert _nonzero(g_critic["value"])
    assert not _nonzero(g_bc["value"])


def test_update_moves_targets_by_polyak_and_ema():
    agent, state = make(tau=0.1, ema=0.8)
    new, metrics = agent.update(state, hand_batch(), jax.random.PRNGKey(1))
    for old_p, old_t, new_t, rate in [
        (state["params"]["value"], state["target_value"], new["target_value"], 0.1),
        (state["params"]["actor"], state["target_actor"], new["target_actor"], 0.2),
    ]:
        expected = jax.tree_util.tree_map(lambda p, t: rate * p + (1 - rate) * t, old_p, old_t)
        for e, n in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(new_t)):
            np.testing.assert_allclose(np.asarray(n), np.asarray(e), rtol=1e-6, atol=1e-7)
    assert np.isfinite(float(metrics["loss/total"]))


def test_act_shape_range_and_uses_ema_actor():
    agent, state = make()
    obs = jax.random.normal(jax.random.PRNGKey(0), (7, 3)) * 10
    a = agent.act(state, obs, jax.random.PRNGKey(1))
    assert a.shape == (7, 2, 1)
    assert float(jnp.abs(a).max()) <= 1.0
    changed = dict(state, params=dict(state["params"], actor=jax.tree_util.tree_map(jnp.zeros_like, state["params"]["actor"])))
    np.testing.assert_array_equal(np.asarray(agent.act(changed, obs, jax.random.PRNGKey(1))), np.asarray(a))


def test_no_pessimism_ablation_ignores_rho():
    b = hand_batch()
    k = jax.random.PRNGKey(3)
    agent, state = make(pessimism=False)
    agent2, _ = make(pessimism=False, rho=0.0)
    y1, *_ = agent.extras["critic_target"](state["params"], state, b, k, k)
    y2, *_ = agent2.extras["critic_target"](state["params"], state, b, k, k)
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y2))
    agent3, _ = make()
    y3, *_ = agent3.extras["critic_target"](state["params"], state, b, k, k)
    assert float(jnp.abs(y3 - y1).max()) > 1e-5
    assert dataclasses.asdict(agent.config)["pessimism"] is False
