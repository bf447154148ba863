"""Window semantics (the agent's ``windows`` field): the QAM suite's windows (step-uniform starts,
running-minimum masks over the valid steps, ``valid`` weights, the true successor state of the last
valid step) on hand-built episodes whose answers are written here, RQL's windows as before, the
successor rows each loader keeps, the online buffer's suite windows, and the field on the command line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rql.agents import build_config, make_agent
from rql.agents.base import chunk_action_mask, n_step_return
from rql.data.dataset import validate
from rql.data.device import rql_batch_at, sample_windows, suite_batch_at, suite_starts, to_device
from rql.data.loading import ogbench_regular
from rql.learner import init_train_state, make_block
from rql.online import append, init_online_buffer, suite_indices
from rql.online import sample_windows as online_windows

H, GAMMA = 5, 0.9


def hand_built():
    """Episode A: steps 0-7, a success (reward 0, mask 0) at step 3 only, successor of its last step 100.
    Episode B: steps 8-13, no success, successor 200. Observation = step index."""
    n = 14
    obs = np.arange(n, dtype=np.float32)[:, None]
    nxt = obs + 1
    nxt[7], nxt[13] = 100.0, 200.0
    term = np.zeros(n)
    term[[7, 13]] = 1
    masks = np.ones(n)
    masks[3] = 0
    rewards = np.where(masks == 0, 0.0, -1.0)
    arrays = dict(observations=obs, actions=np.linspace(-0.9, 0.9, n)[:, None], rewards=rewards, terminals=term,
                  masks=masks, next_observations=nxt)
    return to_device(validate(arrays, "hand-built", horizon=H))


# start 1: a success at step 2 of the chunk (steps 1-5); start 9: the chunk ends on episode B's time-out;
# start 5: the chunk runs past episode A's end at its step 2.
STARTS = jnp.array([1, 9, 5], jnp.int32)


def test_suite_windows_on_hand_built_episodes():
    b = suite_batch_at(hand_built(), STARTS, H)
    reward_sum, bootstrap, valid = (np.asarray(x) for x in n_step_return(b, H, GAMMA))
    g = GAMMA ** np.arange(H)
    np.testing.assert_allclose(reward_sum, [-(g[0] + g[1] + g[3] + g[4]), -g.sum(), -g[:3].sum()], rtol=1e-6)
    # The running minimum: the success inside the chunk stops bootstrapping; the time-out bootstraps.
    np.testing.assert_allclose(bootstrap, [0.0, GAMMA**H, GAMMA**H], rtol=1e-6)
    np.testing.assert_array_equal(valid, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(b.masks[:, :H]), [[1, 1, 0, 0, 0], [1] * 5, [1] * 5])
    np.testing.assert_array_equal(np.asarray(chunk_action_mask(b, H, 1)), [[1] * 5, [1] * 5, [1, 1, 1, 0, 0]])
    # Bootstrap states: step 6; B's stored successor; the successor of A's last step (its last valid step).
    np.testing.assert_array_equal(np.asarray(b.observations[:, H, 0]), [6.0, 200.0, 100.0])
    # Steps past an episode end are the stored steps (not clamped), as the suite reads them.
    np.testing.assert_array_equal(np.asarray(b.observations[2, :H, 0]), [5, 6, 7, 8, 9])


def test_rql_windows_unchanged_on_the_same_starts():
    d = hand_built()
    b = rql_batch_at(d, STARTS, H)
    reward_sum, bootstrap, valid = (np.asarray(x) for x in n_step_return(b, H, GAMMA))
    np.testing.assert_allclose(bootstrap, [GAMMA**H, GAMMA**H, GAMMA**H], rtol=1e-6)  # the last step's mask
    np.testing.assert_array_equal(valid, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(np.asarray(b.observations[:, H, 0]), [6.0, 13.0, 7.0])  # clamped
    np.testing.assert_array_equal(np.asarray(b.observations[2, :, 0]), [5, 6, 7, 7, 7, 7])
    # The rql sampler gathers exactly these windows for the starts it draws.
    drawn = sample_windows(d, jax.random.PRNGKey(3), 64, H, "rql")
    again = rql_batch_at(d, drawn.observations[:, 0, 0].astype(jnp.int32), H)
    np.testing.assert_array_equal(np.asarray(drawn.observations), np.asarray(again.observations))


def test_suite_starts_are_uniform_over_steps():
    """Episodes of very different lengths: the suite's starts are flat over steps (RQL's are not)."""
    lengths = [3, 400, 5, 60, 2, 130]
    n = sum(lengths)
    term = np.zeros(n)
    term[np.cumsum(lengths) - 1] = 1
    arrays = dict(observations=np.arange(n, dtype=np.float32)[:, None], actions=np.zeros((n, 1)),
                  rewards=np.zeros(n), terminals=term)
    d = to_device(validate(arrays, "lengths", horizon=H))
    draws = 300_000
    starts = np.asarray(jax.jit(suite_starts, static_argnums=(2, 3))(d, jax.random.PRNGKey(0), draws, H))
    counts = np.bincount(starts, minlength=n)
    assert counts[n - H + 1:].sum() == 0  # never past size - h
    k = n - H + 1
    chi2 = float(((counts[:k] - draws / k) ** 2 / (draws / k)).sum())
    assert chi2 < (k - 1) + 6 * np.sqrt(2 * (k - 1)), chi2
    rql = np.asarray(sample_windows(d, jax.random.PRNGKey(0), draws, H, "rql").observations[:, 0, 0]).astype(int)
    rc = np.bincount(rql, minlength=n)[:k]
    assert float(((rc - draws / k) ** 2 / (draws / k)).sum()) > 50 * k  # episode-uniform: far from flat


def test_loaders_keep_one_successor_row_per_episode():
    # OGBench's file layout: each episode's final observation is stored as one more row.
    raw = {"observations": np.arange(9, dtype=np.float32)[:, None] * 10, "actions": np.zeros((9, 1), np.float32),
           "terminals": np.array([0, 0, 0, 1, 0, 0, 0, 0, 1], np.float32)}
    reg = ogbench_regular(raw)
    np.testing.assert_array_equal(reg["observations"][:, 0], [0, 10, 20, 40, 50, 60, 70])
    np.testing.assert_array_equal(reg["end_next_observations"][:, 0], [30, 80])
    ds = validate({**reg, "rewards": np.zeros(7)}, "raw")
    np.testing.assert_array_equal(ds.end_next_observations[:, 0], [30, 80])
    # A plain file without next observations: none stored; the last step stands in (and says so, below).
    plain = validate({k: v for k, v in reg.items() if k != "end_next_observations"} | {"rewards": np.zeros(7)}, "p")
    assert plain.end_next_observations is None
    np.testing.assert_array_equal(plain.successors_or_own()[:, 0], [20, 70])


def test_suite_windows_from_the_online_buffer():
    """Offline steps, then online steps in one order: windows may run from one episode into the next,
    the successor of an online episode's last step is the observation the environment returned, and
    the episode in progress ends (provisionally) at its newest step."""
    n_off = 7
    obs = np.arange(n_off, dtype=np.float32)[:, None]
    term = np.zeros(n_off)
    term[[3, 6]] = 1
    nxt = obs + 1
    nxt[[3, 6]] = [[-3.0], [-6.0]]
    off = to_device(validate(dict(observations=obs, actions=np.zeros((n_off, 1)), rewards=np.zeros(n_off),
                                  terminals=term, next_observations=nxt), "off"), capacity=n_off + 3)
    buf = init_online_buffer(12, 1, 1, "suite")
    app = jax.jit(append)
    online = [(100, 4), (200, 3), (300, 2)]  # (first observation, length); the last one in progress
    for i, (o0, length) in enumerate(online):
        for t in range(length):
            done = t == length - 1 and i < len(online) - 1
            buf = app(buf, {"observations": jnp.array([o0 + t], jnp.float32), "actions": jnp.zeros(1),
                            "rewards": jnp.float32(-1), "masks": jnp.float32(1), "done": jnp.float32(done),
                            "next_observations": jnp.array([o0 + t + 0.5 if done else o0 + t + 1], jnp.float32)})
    assert int(buf["num_ends"]) == 2 and int(buf["size"]) == 9
    h, B = 3, 4000
    key = jax.random.PRNGKey(1)
    idx = np.asarray(suite_indices(off, buf, key, B, h))
    b = online_windows(off, buf, key, B, h, "suite")
    # The reference: the stream as one array, next observations written out.
    stream = [float(x) for x in obs[:, 0]] + [o0 + t for o0, n in online for t in range(n)]
    ends = {3: -3.0, 6: -6.0, 10: 103.5, 13: 202.5, 15: 302.0}  # stream position -> successor of its last step
    pos = np.where(idx < off.observations.shape[0], idx, idx - off.observations.shape[0] + n_off)
    assert set(np.unique(pos[:, 0])) == set(range(len(stream) - h + 1))
    for row in range(64):
        p = pos[row]
        steps = [int(q) for q in p]
        last = next((j for j, q in enumerate(steps) if q in ends), h - 1)
        np.testing.assert_array_equal(np.asarray(b.observations[row, :h, 0]), [stream[q] for q in steps])
        want = ends.get(steps[last], stream[steps[last] + 1] if steps[last] + 1 < len(stream) else None)
        assert float(b.observations[row, h, 0]) == want, (steps, float(b.observations[row, h, 0]), want)


def test_block_trains_on_the_agents_windows():
    """A compiled block samples the windows its agent's config declares: it trains exactly as a hand
    loop over those windows, and differently on the other semantics (flow BC: the cheapest to compile;
    every agent reads its windows through the same ``windows_of``)."""
    n = 300
    rng = np.random.default_rng(0)
    term = np.zeros(n)
    term[np.arange(24, n, 25)] = 1
    arrays = dict(observations=rng.normal(size=(n, 3)), actions=rng.uniform(-1, 1, (n, 2)),
                  rewards=-1.0 * (rng.uniform(size=n) < 0.5), terminals=term, masks=(rng.uniform(size=n) < 0.9) * 1.0,
                  next_observations=rng.normal(size=(n, 3)))
    d = to_device(validate(arrays, "r", horizon=2))
    tiny = dict(horizon=2, batch_size=8, actor_hidden_dims=(8,))
    out = {}
    for windows in ("suite", "rql"):
        agent = make_agent("flow-bc", build_config("flow-bc", None, None, {**tiny, "windows": windows}), 3, 2)
        ts = init_train_state(agent, 0)
        by_block, _ = make_block(agent, 2, 8, 2)(jax.tree_util.tree_map(jnp.copy, ts), d)
        out[windows] = jax.tree_util.tree_leaves(by_block["agent"]["params"])
        if windows != "suite":
            continue

        @jax.jit
        def hand(state, key):
            for _ in range(2):
                key, k_sample, k_update = jax.random.split(key, 3)
                state = agent.update(state, sample_windows(d, k_sample, 8, 2, "suite"), k_update)[0]
            return state

        state = hand(ts["agent"], ts["key"])
        for a, b in zip(jax.tree_util.tree_leaves(by_block["agent"]), jax.tree_util.tree_leaves(state)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(out["rql"], out["suite"]))
    assert build_config("fql", None, None, {"windows": "rql"}).windows == "rql"


@pytest.mark.parametrize("agent,flags,expected", [
    ("fql", [], "suite"), ("rebrac", [], "suite"), ("qam", [], "suite"), ("rql", [], "rql"),
    ("flow-bc", [], "rql"), ("fql", ["--agent.windows", "rql"], "rql"),
])
def test_print_config_names_the_windows(agent, flags, expected, capsys):
    from rql.cli import main

    task = ["--task", "cube-single-play-singletask-task2-v0"] if not flags else []
    assert main(["train", "--agent", agent, *task, *flags, "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out)["windows"] == expected
