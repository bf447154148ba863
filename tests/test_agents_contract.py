"""One contract every registered agent passes: it trains (a stable loss falls on a fixed tiny
dataset), acts inside [-1, 1] with the right shape, survives a save/restore round trip with
identical actions, and resumes bit for bit. It is trained as a group of two seeds, through the
compiled learner every run uses (``rql train`` is a group of one), so every agent supports ``--seeds``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import REGISTRY, build_config
from rql.bench import synthetic_dataset
from rql.checkpoint import Checkpoints
from rql.data.device import to_device
from rql.learner import init_group_state, init_train_state, make_group_block, member_state

OBS, ACT, H, B = 6, 2, 2, 32
BLOCK, BLOCKS = 50, 4

# Tiny networks; only the fields an agent has are set.
TINY = dict(
    horizon=H,
    batch_size=B,
    actor_hidden_dims=(32, 32),
    value_hidden_dims=(32, 32),
    ensemble=2,
    flow_steps=4,
    num_samples=4,
    lr=1e-3,
)

# The first of these an agent reports is the loss that must fall: from a fresh initialisation the
# critic's regression error falls steeply over the first hundreds of updates; agents without a
# critic fall back on their behaviour-cloning loss. (A total with a -Q term can rise as values grow.)
STABLE_KEYS = ("loss/critic", "loss/bc", "loss/total")


def tiny_config(name: str):
    fields = {f.name for f in dataclasses.fields(REGISTRY[name].config_cls)}
    return build_config(name, None, None, {k: v for k, v in TINY.items() if k in fields})


def host_copy(tree):
    """A copy through host memory (also drops the restored arrays' device placement, which would
    otherwise make the compiled block compile a second time)."""
    return jax.tree_util.tree_map(lambda x: jnp.asarray(np.array(x)), tree)


def assert_trees_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def data():
    return to_device(synthetic_dataset(OBS, ACT, 2000, seed=0, episode_len=100))


# The agents this file checks; tests/test_agents_contract_suite.py checks every other registered name
# (two files so that the two test processes share the work).
CORE = ("flow-bc", "fql", "ifql", "rebrac", "rql")


@pytest.mark.parametrize("name", CORE)
def test_agent_contract(name, data, tmp_path):
    check_contract(name, data, tmp_path)


def check_contract(name, data, tmp_path):
    spec = REGISTRY[name]
    cfg = tiny_config(name)
    agent = spec.make(cfg, OBS, ACT)
    assert agent.config.horizon == H
    # Each method trains on its own reference's windows: RQL's for rql and flow BC, the suite's for the rest.
    assert cfg.windows == ("rql" if name in ("rql", "flow-bc") else "suite")  # the example plugin's too
    run_block = make_group_block(agent, H, B, BLOCK)

    group = init_group_state(agent, [0, 7])
    assert_trees_equal(member_state(group, 1), init_train_state(agent, seed=7))
    history = []
    for _ in range(BLOCKS):
        group, metrics = run_block(group, data)
        history.append({k: np.asarray(v) for k, v in metrics.items()})
    assert all(v.shape == (2,) and np.all(np.isfinite(v)) for m in history for v in m.values()), history[-1]

    key = next(k for k in STABLE_KEYS if k in history[0])
    first, last = history[0][key], history[-1][key]
    assert np.all(last < first), f"{name}: {key} did not fall ({first} -> {last})"
    ts = member_state(group, 0)

    # Acting: shape, range, determinism given the key.
    act = jax.jit(agent.act)
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, OBS))
    a = np.asarray(act(ts["agent"], obs, jax.random.PRNGKey(2)))
    assert a.shape == (5, H, ACT)
    assert np.all(np.isfinite(a)) and np.all(a >= -1.0) and np.all(a <= 1.0)
    np.testing.assert_array_equal(a, np.asarray(act(ts["agent"], obs, jax.random.PRNGKey(2))))

    # Save, restore into a fresh template, same actions for the same key.
    step = int(ts["step"])
    ckpts = Checkpoints(tmp_path / "ckpt")
    ckpts.save(step, ts)
    restored = ckpts.restore(step, init_train_state(agent, seed=123))
    ckpts.close()
    assert_trees_equal(restored, ts)
    np.testing.assert_array_equal(a, np.asarray(act(restored["agent"], obs, jax.random.PRNGKey(2))))

    # Resuming from the restored state equals continuing without saving.
    continued, _ = run_block(host_copy(group), data)
    restored_group = jax.tree_util.tree_map(lambda r, g: jnp.stack([r, g[1]]), restored, group)
    resumed, _ = run_block(host_copy(restored_group), data)
    assert int(resumed["step"][0]) == step + BLOCK
    assert_trees_equal(resumed["agent"]["params"], continued["agent"]["params"])
    assert_trees_equal(resumed, continued)


def test_example_plugin_agent_contract(data, tmp_path):
    """The method of examples/ (registered only through the plugin path) passes the same contract."""
    import pathlib

    from rql.agents import BUILTIN, resolve_agent

    name = resolve_agent(str(pathlib.Path(__file__).parents[1] / "examples" / "awfm.py"))
    assert name == "awfm" and name not in BUILTIN
    check_contract(name, data, tmp_path)
