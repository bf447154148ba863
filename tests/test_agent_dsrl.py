"""DSRL's defining mechanism: the actor chooses a noise, bounded by ``noise_scale``, that the
(target) behaviour flow maps to the executed chunk; a latent critic learns Q of the chunk each noise
maps to, and SAC trains the actor against it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rql.agents import dsrl
from rql.agents.base import Batch

OBS, ACT, H, B = 3, 2, 2, 64
D = H * ACT


def tiny(**kw):
    cfg = dsrl.DSRLConfig(horizon=H, actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2,
                          flow_steps=3, **kw)
    return dsrl.make(cfg, OBS, ACT)


def batch(seed=0):
    ks = jax.random.split(jax.random.PRNGKey(seed), 3)
    return Batch(
        observations=jax.random.normal(ks[0], (B, H + 1, OBS)),
        actions=jax.random.uniform(ks[1], (B, H + 1, ACT), minval=-1.0, maxval=1.0),
        rewards=jax.random.normal(ks[2], (B, H + 1)),
        terminals=jnp.zeros((B, H + 1)),
        masks=jnp.ones((B, H + 1)),
    )


def moved_target(state):
    """The state with a target flow unlike the trained flow, so the tests tell the two apart."""
    return {**state, "target_flow": jax.tree_util.tree_map(lambda x: 1.3 * x + 0.05, state["target_flow"])}


def saturated(actor_params):
    """The noise actor with its mean head's bias at +-6 (tanh of the mean at +-1) and a tiny std."""
    sign = jnp.where(jnp.arange(D) % 2 == 0, 1.0, -1.0)

    def f(path, x):
        names = [getattr(p, "key", "") for p in path]
        if "Dense_2" in names and names[-1] == "bias":
            return 6.0 * sign
        if "Dense_3" in names and names[-1] == "bias":
            return jnp.full_like(x, -8.0)
        return x

    return jax.tree_util.tree_map_with_path(f, actor_params)


def test_actor_chooses_the_noise_the_flow_maps_to_the_action():
    obs, key = jax.random.normal(jax.random.PRNGKey(1), (B, OBS)), jax.random.PRNGKey(2)
    for use_target in (True, False):
        agent = tiny(noise_scale=0.6, use_target_latent=use_target)
        state = moved_target(agent.init(jax.random.PRNGKey(0)))
        p = state["params"]
        a = agent.act(state, obs, key).reshape(B, D)
        w, _ = agent.extras["latent"](p["actor"], obs[:, None], key)
        assert np.all(np.abs(w) <= 0.6)
        mapping = state["target_flow"] if use_target else p["flow"]
        other = p["flow"] if use_target else state["target_flow"]
        np.testing.assert_allclose(a, agent.extras["flow_actions"](mapping, obs[:, None], w)[:, 0], rtol=1e-5, atol=1e-6)
        assert not np.allclose(a, agent.extras["flow_actions"](other, obs[:, None], w)[:, 0], atol=1e-3)
        # The chosen noise is not the flow's own N(0, I) draw: the action depends on the actor.
        b_ = agent.act({**state, "params": {**p, "actor": saturated(p["actor"])}}, obs, key).reshape(B, D)
        assert not np.allclose(a, b_, atol=1e-3)


def test_noise_is_bounded_by_noise_scale():
    obs, key = jax.random.normal(jax.random.PRNGKey(3), (B, OBS)), jax.random.PRNGKey(4)
    ws = {}
    for scale in (0.4, 1.2):
        agent = tiny(noise_scale=scale)
        p = agent.init(jax.random.PRNGKey(0))["params"]
        ws[scale], _ = agent.extras["latent"](p["actor"], obs, key)
        assert np.all(np.abs(ws[scale]) <= scale)
        far, _ = agent.extras["latent"](saturated(p["actor"]), obs, key)
        np.testing.assert_allclose(np.abs(far), scale, rtol=1e-2)
    np.testing.assert_allclose(ws[0.4] / 0.4, ws[1.2] / 1.2, rtol=1e-5, atol=1e-6)
    assert np.abs(ws[1.2]).max() > 0.1


def test_latent_critic_learns_q_of_the_mapped_chunk_and_the_actor_climbs_it():
    agent = tiny(noise_scale=0.8)
    state = moved_target(agent.init(jax.random.PRNGKey(5)))
    b, key = batch(), jax.random.PRNGKey(6)
    terms, _ = agent.extras["loss_terms"](state["params"], state, b, key)
    p, s0 = state["params"], b.observations[:, 0]
    w = jax.random.normal(jax.random.split(key, 4)[1], (B, D))  # the documented distillation key
    q_of_w = agent.extras["critic"](p["critic"], s0, agent.extras["flow_actions"](state["target_flow"], s0, w))
    np.testing.assert_allclose(terms["distill"], jnp.mean(jnp.square(agent.extras["critic"](p["z_critic"], s0, w) - q_of_w)),
                               rtol=1e-5)

    def grads(term):
        return jax.grad(lambda q: agent.extras["loss_terms"](q, state, b, key)[0][term])(p)

    def zero(tree):
        return all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(tree))

    g = grads("distill")
    assert not zero(g["z_critic"]) and zero(g["critic"]) and zero(g["flow"]) and zero(g["actor"])
    g = grads("actor")
    assert not zero(g["actor"]) and zero(g["z_critic"]) and zero(g["critic"]) and zero(g["flow"]) and zero(g["log_alpha"])

    # A few Adam steps on the actor term alone (alpha ~ 0) raise the latent critic's value of the noise.
    tx = optax.adam(3e-2)
    p = {**p, "log_alpha": jnp.asarray(-10.0)}
    actor, opt = p["actor"], tx.init(p["actor"])
    actor_grad = jax.jit(jax.grad(lambda a: agent.extras["loss_terms"]({**p, "actor": a}, state, b, key)[0]["actor"]))

    def q_of_actor(a):
        w_pi, _ = agent.extras["latent"](a, s0, jax.random.PRNGKey(9))
        return agent.extras["critic"](p["z_critic"], s0, w_pi).mean()

    before = float(q_of_actor(actor))
    for _ in range(30):
        upd, opt = tx.update(actor_grad(actor), opt)
        actor = optax.apply_updates(actor, upd)
    assert float(q_of_actor(actor)) > before + 1e-3
