"""FEdit's defining mechanism: the executed chunk is the BC flow's chunk moved by at most
``edit_scale`` per dimension by a squashed Gaussian edit, and SAC trains only the edit policy
(the flow learns by flow matching alone)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents import fedit
from rql.agents.base import Batch

OBS, ACT, H, B = 3, 2, 2, 64
D = H * ACT


def tiny(**kw):
    cfg = fedit.FEditConfig(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2,
                            flow_steps=3, **kw)
    return fedit.make(cfg, OBS, ACT)


def batch(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return Batch(
        observations=jax.random.normal(ks[0], (B, H + 1, OBS)),
        actions=jax.random.uniform(ks[1], (B, H + 1, ACT), minval=-1.0, maxval=1.0),
        rewards=jax.random.normal(ks[2], (B, H + 1)),
        terminals=jnp.zeros((B, H + 1)),
        masks=jnp.ones((B, H + 1)),
    )


def saturated(edit_params):
    """The edit policy with its mean head's bias at +-6 (tanh of the mean at +-1) and a tiny std."""
    sign = jnp.where(jnp.arange(D) % 2 == 0, 1.0, -1.0)

    def f(path, x):
        names = [getattr(p, "key", "") for p in path]
        if "Dense_2" in names and names[-1] == "bias":
            return 6.0 * sign
        if "Dense_3" in names and names[-1] == "bias":
            return jnp.full_like(x, -8.0)
        return x

    return jax.tree_util.tree_map_with_path(f, edit_params)


def test_edit_stays_within_edit_scale():
    obs = jax.random.normal(jax.random.PRNGKey(1), (B, OBS))
    base = jax.random.uniform(jax.random.PRNGKey(2), (B, D), minval=-0.7, maxval=0.7)
    key = jax.random.PRNGKey(3)
    moves = {}
    for scale in (0.1, 0.25):
        agent = tiny(edit_scale=scale)
        params = agent.init(jax.random.PRNGKey(0))["params"]
        edited, _ = agent.extras["edit"](params["edit"], obs, base, key)
        moves[scale] = np.asarray(edited - base)
        assert np.all(np.abs(moves[scale]) <= scale + 1e-6)
        # A saturated edit policy moves every dimension by (almost exactly) edit_scale, no further.
        far, _ = agent.extras["edit"](saturated(params["edit"]), obs, base, key)
        np.testing.assert_allclose(np.abs(far - base), scale, rtol=1e-2)
        # Near the bounds the edited chunk is clipped to [-1, 1].
        edge, _ = agent.extras["edit"](saturated(params["edit"]), obs, jnp.full((B, D), 0.95), key)
        assert np.all(np.abs(edge) <= 1.0) and np.any(edge == 1.0)
    # The move is edit_scale times the same squashed sample.
    np.testing.assert_allclose(moves[0.1] / 0.1, moves[0.25] / 0.25, rtol=1e-4, atol=1e-5)
    assert np.abs(moves[0.25]).max() > 0.05


def test_act_is_the_flow_chunk_plus_the_edit():
    agent = tiny(edit_scale=0.3)
    state = agent.init(jax.random.PRNGKey(4))
    obs, key = jax.random.normal(jax.random.PRNGKey(5), (B, OBS)), jax.random.PRNGKey(6)
    a = agent.act(state, obs, key).reshape(B, D)
    k_noise, k_edit = jax.random.split(key)
    p = state["params"]
    base = agent.extras["flow_actions"](p["flow"], obs[:, None], jax.random.normal(k_noise, (B, 1, D)))
    edited, _ = agent.extras["edit"](p["edit"], obs[:, None], base, k_edit)
    np.testing.assert_allclose(a, edited[:, 0], rtol=1e-6)
    assert np.all(np.abs(a - base[:, 0]) <= 0.3 + 1e-6)
    assert not np.allclose(a, base[:, 0])


def test_sac_trains_the_edit_policy_only():
    agent = tiny(edit_scale=0.5)
    state = agent.init(jax.random.PRNGKey(7))
    b, key = batch(), jax.random.PRNGKey(8)
    terms, stats = agent.extras["loss_terms"](state["params"], state, b, key)

    def grads(term):
        return jax.grad(lambda p: agent.extras["loss_terms"](p, state, b, key)[0][term])(state["params"])

    def zero(tree):
        return all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(tree))

    for term in ("edit_q", "edit_entropy"):
        g = grads(term)
        assert not zero(g["edit"]), term
        assert zero(g["flow"]) and zero(g["critic"]) and zero(g["log_alpha"]), term
    g = grads("bc")
    assert not zero(g["flow"]) and zero(g["edit"]) and zero(g["critic"])
    # Temperature: d L_alpha / d log_alpha = alpha (H - H_target), H = -mean log pi (no gradient).
    g = grads("alpha")
    assert zero(g["edit"]) and zero(g["flow"])
    expected = stats["actor/alpha"] * (stats["actor/edit_entropy"] - agent.extras["target_entropy"])
    np.testing.assert_allclose(g["log_alpha"], expected, rtol=1e-5)
    assert agent.extras["target_entropy"] == -0.5 * D
