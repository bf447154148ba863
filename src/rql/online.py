"""Offline-to-online fine-tuning: after the offline updates, the agent acts in a training
environment of its task and keeps learning from a replay buffer on the device that starts as the
offline dataset.

Buffer layout
-------------
The offline dataset stays where the offline phase put it (one :class:`DeviceDataset`, shared by
every seed of a group). Each seed has its own *online part*, a dict of fixed-capacity arrays
(``capacity`` steps, ``--buffer-size`` minus the offline size) filled in place (``.at[].set``
inside the compiled step, the arrays donated so that no copy is made):

- ``observations, actions, rewards, terminals, masks``: the online steps, stored one after the
  other, episode after episode, in the layout of the offline data (step ``t`` holds ``s_t``,
  ``a_t``, the reward and mask of ``s_t`` as the environment reports them, ``terminals = 1`` on an
  episode's last stored step);
- ``ep_starts, ep_ends``: online episodes (indices into the online part); entries
  ``0 .. num_closed - 1`` are finished episodes of at least two steps, entry ``num_closed`` is the
  episode in progress, from ``cur_start`` to the newest step;
- ``size`` (steps stored), ``cur_start``, ``num_closed``.

Sampling draws an episode uniformly among the offline episodes, the finished online episodes and
the episode in progress once it has two steps or more, then a window inside that one episode
(the offline sampler's rule). Offline and online steps live in separate arrays, indexed in one
global space (online step ``j`` is index ``offline capacity + j``), so a window never mixes
offline data with online data nor two online episodes. The newest step of the episode in
progress carries ``terminals = 1`` until the next step is appended (then it is cleared): the
episode in progress is sampled exactly like an episode truncated at its newest step.

Image observations (a :class:`rql.pixels.Pixels`, ``px``): the online part stores every step's
*single* frame, uint8 and flat (``H * W * C``, as the offline device dataset stores its frames),
never the stacked observation the policy reads; ``end_steps`` (every online episode's last step, the
episode in progress at its newest step) is kept for both window semantics, and a window's stacked
observations are built from the frames by the offline sampler's own functions
(:func:`rql.pixels.stacked`, :func:`rql.pixels.stacked_successor`): frames ``t - K + 1 .. t``, never
before the episode's first step, the successor of an episode's last step from its frames and the stored
next frame. Random shift (``--p-aug``) applies to the online batches as to the offline ones, from the
same key (:func:`rql.pixels.augment_key` of the sampling key). State observations are stored and
sampled as before (no ``px``: the same arrays and the same numbers).

When the online part is full, new steps are no longer stored (the oldest are never dropped);
acting, learning and logging go on, and ``online/buffer_size`` stops growing.

Rewards follow the offline data: OGBench single-task environments report the reward and the
success of the state *before* the step (as the single-task relabelling of the offline data does),
``masks = 1 - terminated`` (termination is success), ``terminals = 1`` at the end of every episode
(termination or time limit), and ``--agent.sparse`` maps a non-zero reward to -1 as offline.

The policy
----------
The environment is stepped with the *current* actor: an agent whose ``act`` reads an EMA actor
(``state["target_actor"]``: rql, flow-bc) acts online with ``state["params"]["actor"]`` in its
place (:func:`current_actor_state`); the other agents' ``act`` already uses the current networks.
Every chunk gets fresh noise (the key of seed ``k``'s ``c``-th chunk is
``fold_in(fold_in(PRNGKey(k), ONLINE_KEY), c)``), a chunk's actions are executed open loop, and a
new chunk is drawn at every episode start. Evaluation keeps using ``agent.act``.

This module holds the buffer and the compiled pieces (pure functions of arrays, like
:mod:`rql.learner`); the host loop that steps the environments, logs, evaluates and checkpoints is
the online phase of the runner, :mod:`rql.runner.online_phase`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents.base import Batch
from rql.data.device import DeviceDataset, successor, successor_in, suite_window
from rql.pixels import Pixels, augment, augment_key, stacked, stacked_successor

ONLINE_KEY = 0x6F6E6C  # folded into a seed's key for its online policy noise
ENV_SEED_BASE = 1_000_000_007  # training-episode reset seeds: base + seed * 100_003 + episode (eval: seed * 100_003 + i)
ONLINE_COLUMNS = ("online/episode_return", "online/episode_success", "online/episode_length", "online/episodes",
                  "online/env_steps", "online/env_steps_per_s", "online/buffer_size")
BUFFER_FIELDS = ("observations", "actions", "rewards", "terminals", "masks")


# ----------------------------------------------------------------------------- the buffer


def init_online_buffer(capacity: int, obs_dim: int, action_dim: int, windows: str = "rql",
                       px: Pixels | None = None) -> dict:
    """An empty online part of one seed's replay buffer. For ``suite`` windows it also keeps the
    successor state of every online episode's last stored step (``end_steps``, ascending, padded with
    int32 max; ``end_next_observations``; ``num_ends`` closed entries, the next one the episode in
    progress, rewritten at every step).

    With ``px`` (image observations) ``obs_dim`` is ignored: observations are single frames, uint8,
    ``H * W * C`` each, and ``end_steps``/``num_ends`` are kept for either window semantics (stacking
    needs every episode's first step)."""
    c = int(capacity)
    obs_dim, obs_dtype = (int(np.prod(px.frame_shape)), jnp.uint8) if px is not None else (obs_dim, jnp.float32)
    suite = {}
    if windows == "suite" or px is not None:
        suite = {
            "end_steps": jnp.full((c,), np.iinfo(np.int32).max, jnp.int32),
            "num_ends": jnp.asarray(0, jnp.int32),
        }
    if windows == "suite":
        suite["end_next_observations"] = jnp.zeros((c, obs_dim), obs_dtype)
    return {
        **suite,
        "observations": jnp.zeros((c, obs_dim), obs_dtype),
        "actions": jnp.zeros((c, action_dim), jnp.float32),
        "rewards": jnp.zeros((c,), jnp.float32),
        "terminals": jnp.zeros((c,), jnp.float32),
        "masks": jnp.zeros((c,), jnp.float32),
        "ep_starts": jnp.zeros((c,), jnp.int32),
        "ep_ends": jnp.zeros((c,), jnp.int32),
        "size": jnp.asarray(0, jnp.int32),
        "cur_start": jnp.asarray(0, jnp.int32),
        "num_closed": jnp.asarray(0, jnp.int32),
    }


def init_meta(n: int) -> dict:
    """Host counters of the online phase that resume needs, one entry per seed: episodes started
    (the reset seed of the next one), chunks drawn (the policy noise of the next one), env steps."""
    z = np.zeros((n,), np.int32)
    return {"episode": z.copy(), "chunk": z.copy(), "env_steps": z.copy()}


def online_template(agent, seed: int, capacity: int, px: Pixels | None = None):
    """Shapes of one seed's checkpoint in the online phase (for restoring)."""
    from rql.learner import init_train_state, windows_of

    def make():
        ts = init_train_state(agent, seed)
        meta = {k: jnp.asarray(0, jnp.int32) for k in init_meta(1)}
        buf = init_online_buffer(capacity, agent.obs_dim, agent.action_dim, windows_of(agent), px)
        return {**ts, "online": {**buf, **meta}}

    return jax.eval_shape(make)


def append(buf: dict, tr: dict) -> dict:
    """Store one environment step (``tr``: observation, action, reward, mask, done and, for a buffer
    of ``suite`` windows, the next observation) of one seed."""
    c = buf["rewards"].shape[0]
    p = buf["size"]
    room = p < c
    pw = jnp.minimum(p, c - 1)
    out = dict(buf)
    for k, v in (("observations", tr["observations"]), ("actions", tr["actions"]), ("rewards", tr["rewards"]),
                 ("masks", tr["masks"]), ("terminals", jnp.asarray(1.0, jnp.float32))):
        out[k] = buf[k].at[pw].set(jnp.where(room, v, buf[k][pw]))
    # The previous step of the same episode is no longer its (provisional) end.
    pp = jnp.maximum(p - 1, 0)
    prev_same = room & (p > buf["cur_start"])
    out["terminals"] = out["terminals"].at[pp].set(jnp.where(prev_same, 0.0, out["terminals"][pp]))
    size = p + room.astype(jnp.int32)
    k = buf["num_closed"]
    out["ep_starts"] = buf["ep_starts"].at[k].set(buf["cur_start"], mode="drop")
    out["ep_ends"] = buf["ep_ends"].at[k].set(jnp.maximum(size - 1, 0), mode="drop")
    done = tr["done"] > 0
    long_enough = (size - buf["cur_start"]) >= 2
    out["num_closed"] = k + (done & long_enough).astype(jnp.int32)
    out["cur_start"] = jnp.where(done, size, buf["cur_start"])
    out["size"] = size
    if "end_steps" in buf:  # the newest stored step's end (and successor), the entry of the episode in progress
        j = buf["num_ends"]
        out["end_steps"] = buf["end_steps"].at[j].set(jnp.where(room, p, buf["end_steps"][j]), mode="drop")
        if "end_next_observations" in buf:
            nxt = jnp.where(room, tr["next_observations"], buf["end_next_observations"][jnp.minimum(j, c - 1)])
            out["end_next_observations"] = buf["end_next_observations"].at[j].set(nxt, mode="drop")
        out["num_ends"] = j + (done & room).astype(jnp.int32)
    return out


def close_open_episode(buf: dict) -> dict:
    """End the episode in progress where it stands (resume: the environment cannot be restored
    mid-episode, so the steps stored so far become an episode truncated there)."""
    long_enough = (buf["size"] - buf["cur_start"]) >= 2
    out = {**buf, "num_closed": buf["num_closed"] + long_enough.astype(jnp.int32), "cur_start": buf["size"]}
    if "num_ends" in buf:
        out["num_ends"] = buf["num_ends"] + (buf["size"] > buf["cur_start"]).astype(jnp.int32)
    return out


def sampleable_online_episodes(buf: dict) -> jax.Array:
    return buf["num_closed"] + ((buf["size"] - buf["cur_start"]) >= 2).astype(jnp.int32)


def window_indices(off: DeviceDataset, buf: dict, key: jax.Array, batch_size: int, horizon: int) -> jax.Array:
    """(B, h + 1) global indices of B windows: ``i < off_capacity`` an offline step, else online
    step ``i - off_capacity``. An episode is drawn uniformly among all sampleable ones."""
    off_cap = off.observations.shape[0]
    k_ep, k_start = jax.random.split(key)
    n_off = off.num_episodes
    ep = jax.random.randint(k_ep, (batch_size,), 0, n_off + sampleable_online_episodes(buf))
    online = ep >= n_off
    e_on = jnp.clip(ep - n_off, 0, buf["ep_starts"].shape[0] - 1)
    e_off = jnp.minimum(ep, off.ep_starts.shape[0] - 1)
    first = jnp.where(online, buf["ep_starts"][e_on] + off_cap, off.ep_starts[e_off])
    last = jnp.where(online, buf["ep_ends"][e_on] + off_cap, off.ep_ends[e_off])
    start = jax.random.randint(k_start, (batch_size,), first, last)  # last excluded
    idx = start[:, None] + jnp.arange(horizon + 1, dtype=start.dtype)[None, :]
    return jnp.minimum(idx, last[:, None])


def gather(off: DeviceDataset, buf: dict, idx: jax.Array, px: Pixels | None = None) -> Batch:
    """The stored steps at global indices ``idx``; with ``px`` the observations are stacked frames, each
    from its own part (offline or online), as the offline sampler stacks them."""
    off_cap, cap = off.observations.shape[0], buf["rewards"].shape[0]
    is_off = idx < off_cap
    i_off, i_on = jnp.minimum(idx, off_cap - 1), jnp.clip(idx - off_cap, 0, cap - 1)

    def where(a, b):
        cond = is_off.reshape(is_off.shape + (1,) * (a.ndim - is_off.ndim))
        return jnp.where(cond, a, b)

    def pick(name):
        if name == "observations" and px is not None:
            return where(stacked(off.observations, off.end_steps, i_off, px),
                         stacked(buf["observations"], buf["end_steps"], i_on, px))
        return where(getattr(off, name)[i_off], buf[name][i_on])

    return Batch(**{k: pick(k) for k in BUFFER_FIELDS})


def suite_indices(off: DeviceDataset, buf: dict, key: jax.Array, batch_size: int, horizon: int) -> jax.Array:
    """(B, h) global indices of B ``suite`` windows: offline steps then online steps in one order (as
    the suite's replay buffer holds the offline data followed by the online steps), starts uniform over
    the first ``offline size + online size - h + 1`` positions."""
    n_off, off_cap = off.size, off.observations.shape[0]
    start = jax.random.randint(key, (batch_size,), 0, n_off + buf["size"] - horizon + 1)
    pos = start[:, None] + jnp.arange(horizon, dtype=start.dtype)[None, :]
    return jnp.where(pos < n_off, pos, off_cap + pos - n_off)


def suite_successor(off: DeviceDataset, buf: dict, k: jax.Array, is_end: jax.Array,
                    px: Pixels | None = None) -> jax.Array:
    """The successor state of global steps ``k`` (offline or online); stacked frames with ``px``."""
    off_cap = off.observations.shape[0]
    k_on, k_off = jnp.maximum(k - off_cap, 0), jnp.minimum(k, off_cap - 1)
    if px is None:
        on = successor_in(buf["observations"], buf["end_steps"], buf["end_next_observations"], k_on, is_end)
        of = successor(off, k_off, is_end)
    else:
        on = stacked_successor(buf["observations"], buf["end_steps"], buf["end_next_observations"], k_on, is_end, px)
        of = stacked_successor(off.observations, off.end_steps, off.end_next_observations, k_off, is_end, px)
    return jnp.where((k >= off_cap)[:, None], on, of)


def sample_windows(off: DeviceDataset, buf: dict, key: jax.Array, batch_size: int, horizon: int,
                   windows: str = "rql", px: Pixels | None = None) -> Batch:
    """B windows of one seed's replay buffer (offline data and online part); image windows stacked as
    ``px`` says (not shifted: :func:`make_online_step` shifts them as the offline updates do)."""
    if windows == "suite":
        idx = suite_indices(off, buf, key, batch_size, horizon)
        return suite_window(gather(off, buf, idx, px), lambda k, end: suite_successor(off, buf, k, end, px), idx)
    return gather(off, buf, window_indices(off, buf, key, batch_size, horizon), px)


# ----------------------------------------------------------------------------- compiled pieces


def current_actor_state(state):
    """The agent state with its EMA actor (read by ``act`` of rql and flow-bc) replaced by the
    current actor, so that ``agent.act`` acts with the networks being trained."""
    if isinstance(state, dict) and "target_actor" in state and "actor" in state.get("params", {}):
        return {**state, "target_actor": state["params"]["actor"]}
    return state


def make_online_policy(agent) -> Callable:
    """Compiled ``(states (N, ...), obs (N, obs_dim), base keys (N, 2), chunk counters (N,)) ->
    (N, h, action_dim)``: one call for the training environments of every seed."""

    def one(state, obs, base, counter):
        key = jax.random.fold_in(base, counter)
        return agent.act(current_actor_state(state), obs[None], key)[0]

    return jax.jit(jax.vmap(one))


def make_online_step(agent, horizon: int, batch_size: int, utd: int, px: Pixels | None = None) -> Callable:
    """Compiled ``(group state, online buffers, offline data, transitions) -> (group state, online
    buffers, metrics)``: every seed appends its environment step, then runs ``utd`` updates on
    windows of its own buffer. State and buffers are donated (updated in place). With ``px`` the
    transitions carry single frames (uint8) and the windows are stacked and shifted as offline."""
    from rql.learner import windows_of

    windows = windows_of(agent)

    def one(ts, buf, off: DeviceDataset, tr):
        buf = append(buf, tr)

        def upd(carry, _):
            agent_state, key = carry
            key, k_sample, k_update = jax.random.split(key, 3)
            batch = sample_windows(off, buf, k_sample, batch_size, horizon, windows, px)
            if px is not None and px.p_aug > 0:
                batch = augment(batch, augment_key(k_sample), px)
            agent_state, metrics = agent.update(agent_state, batch, k_update)
            return (agent_state, key), metrics

        (agent_state, key), metrics = jax.lax.scan(upd, (ts["agent"], ts["key"]), None, length=utd)
        out = {"agent": agent_state, "key": key, "step": ts["step"] + utd}
        return out, buf, jax.tree_util.tree_map(jnp.mean, metrics)

    return jax.jit(jax.vmap(one, in_axes=(0, 0, None, 0)), donate_argnums=(0, 1))


def process_reward(reward: float, sparse: bool) -> float:
    """The environment's reward turned into a stored reward exactly as the offline rewards are."""
    r = np.float32(reward)
    if sparse:
        r = np.float32(-1.0 if r != 0.0 else 0.0)
    return float(r)
