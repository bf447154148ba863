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
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents.base import Batch
from rql.data.dataset import ACTION_CLIP_EPS
from rql.data.device import DeviceDataset

ONLINE_KEY = 0x6F6E6C  # folded into a seed's key for its online policy noise
ENV_SEED_BASE = 1_000_000_007  # training-episode reset seeds: base + seed * 100_003 + episode (eval: seed * 100_003 + i)
ONLINE_COLUMNS = ("online/episode_return", "online/episode_success", "online/episode_length", "online/episodes",
                  "online/env_steps", "online/env_steps_per_s", "online/buffer_size")
BUFFER_FIELDS = ("observations", "actions", "rewards", "terminals", "masks")


# ----------------------------------------------------------------------------- the buffer


def init_online_buffer(capacity: int, obs_dim: int, action_dim: int) -> dict:
    """An empty online part of one seed's replay buffer."""
    c = int(capacity)
    return {
        "observations": jnp.zeros((c, obs_dim), jnp.float32),
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


def online_template(agent, seed: int, capacity: int):
    """Shapes of one seed's checkpoint in the online phase (for restoring)."""
    from rql.learner import init_train_state

    def make():
        ts = init_train_state(agent, seed)
        meta = {k: jnp.asarray(0, jnp.int32) for k in init_meta(1)}
        return {**ts, "online": {**init_online_buffer(capacity, agent.obs_dim, agent.action_dim), **meta}}

    return jax.eval_shape(make)


def append(buf: dict, tr: dict) -> dict:
    """Store one environment step (``tr``: observation, action, reward, mask, done) of one seed."""
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
    return out


def close_open_episode(buf: dict) -> dict:
    """End the episode in progress where it stands (resume: the environment cannot be restored
    mid-episode, so the steps stored so far become an episode truncated there)."""
    long_enough = (buf["size"] - buf["cur_start"]) >= 2
    return {**buf, "num_closed": buf["num_closed"] + long_enough.astype(jnp.int32), "cur_start": buf["size"]}


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


def gather(off: DeviceDataset, buf: dict, idx: jax.Array) -> Batch:
    off_cap, cap = off.observations.shape[0], buf["rewards"].shape[0]
    is_off = idx < off_cap
    i_off, i_on = jnp.minimum(idx, off_cap - 1), jnp.clip(idx - off_cap, 0, cap - 1)

    def pick(name):
        a, b = getattr(off, name)[i_off], buf[name][i_on]
        cond = is_off.reshape(is_off.shape + (1,) * (a.ndim - is_off.ndim))
        return jnp.where(cond, a, b)

    return Batch(**{k: pick(k) for k in BUFFER_FIELDS})


def sample_windows(off: DeviceDataset, buf: dict, key: jax.Array, batch_size: int, horizon: int) -> Batch:
    return gather(off, buf, window_indices(off, buf, key, batch_size, horizon))


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


def make_online_step(agent, horizon: int, batch_size: int, utd: int) -> Callable:
    """Compiled ``(group state, online buffers, offline data, transitions) -> (group state, online
    buffers, metrics)``: every seed appends its environment step, then runs ``utd`` updates on
    windows of its own buffer. State and buffers are donated (updated in place)."""

    def one(ts, buf, off: DeviceDataset, tr):
        buf = append(buf, tr)

        def upd(carry, _):
            agent_state, key = carry
            key, k_sample, k_update = jax.random.split(key, 3)
            batch = sample_windows(off, buf, k_sample, batch_size, horizon)
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


# ----------------------------------------------------------------------------- the host loop


class OnlinePhase:
    """The online loop of a group: one training environment per seed, one batched policy call
    for the seeds that need a chunk, one compiled call per environment step of all seeds."""

    def __init__(self, run, agent, agent_cfg, seeds: list[int], offline: DeviceDataset, offline_size: int,
                 capacity: int, make_env: Callable):
        self.run, self.agent, self.cfg, self.seeds = run, agent, agent_cfg, list(seeds)
        self.off, self.offline_size, self.capacity = offline, int(offline_size), int(capacity)
        kw = {"max_episode_steps": run.online_episode_steps} if run.online_episode_steps else {}
        self.envs = [make_env(run.task, **kw) for _ in seeds]
        self.policy = make_online_policy(agent)
        self.step_fn = make_online_step(agent, agent_cfg.horizon, agent_cfg.batch_size, run.utd)
        self.base_keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), ONLINE_KEY) for s in seeds])
        n = len(seeds)
        self.meta = init_meta(n)
        self.buf = jax.vmap(lambda _: init_online_buffer(capacity, agent.obs_dim, agent.action_dim))(jnp.arange(n))
        self.obs = np.zeros((n, agent.obs_dim), np.float32)
        self.queue: list[list[np.ndarray]] = [[] for _ in seeds]
        self.ep_return = np.zeros(n)
        self.ep_len = np.zeros(n, np.int64)
        self.finished: list[list[tuple[float, float, int]]] = [[] for _ in seeds]  # since the last row
        self.total_episodes = np.zeros(n, np.int64)

    # checkpoint state ------------------------------------------------------------------
    def state_for_save(self, ts):
        """The group state to checkpoint: the train state plus the online part of the buffer and
        the host counters (episodes started, chunks drawn, environment steps)."""
        meta = {k: jnp.asarray(v) for k, v in self.meta.items()}
        return {**ts, "online": {**self.buf, **meta}}

    def restore(self, state) -> dict:
        """Take the online part out of a restored group state; returns the train state. The
        episode in progress at the checkpoint is closed where it stands (see module docs)."""
        online = dict(state["online"])
        for k in self.meta:
            self.meta[k] = np.asarray(online.pop(k)).astype(np.int32)
        self.buf = jax.jit(jax.vmap(close_open_episode))(online)
        return {k: v for k, v in state.items() if k != "online"}

    def close(self) -> None:
        for e in self.envs:
            try:
                e.close()
            except Exception:
                pass

    # stepping --------------------------------------------------------------------------
    def _reset(self, g: int) -> None:
        seed = ENV_SEED_BASE + self.seeds[g] * 100_003 + int(self.meta["episode"][g])
        o, _ = self.envs[g].reset(seed=seed)
        self.meta["episode"][g] += 1
        self.obs[g] = o
        self.queue[g] = []
        self.ep_return[g] = 0.0
        self.ep_len[g] = 0

    def start(self) -> None:
        for g in range(len(self.seeds)):
            self._reset(g)

    def step(self, ts):
        """One environment step of every seed, appended to its buffer, then ``utd`` updates each."""
        need = [not q for q in self.queue]
        if any(need):
            chunks = np.asarray(self.policy(ts["agent"], jnp.asarray(self.obs), self.base_keys,
                                            jnp.asarray(self.meta["chunk"])))
            for g, nd in enumerate(need):
                if nd:
                    self.queue[g] = list(np.clip(chunks[g], -1.0, 1.0))
                    self.meta["chunk"][g] += 1
        n = len(self.seeds)
        tr = {"observations": self.obs.copy(), "actions": np.zeros((n, self.agent.action_dim), np.float32),
              "rewards": np.zeros(n, np.float32), "masks": np.zeros(n, np.float32), "done": np.zeros(n, np.float32)}
        for g, env in enumerate(self.envs):
            a = self.queue[g].pop(0)
            o, r, terminated, truncated, info = env.step(a)
            tr["actions"][g] = np.clip(a, -1 + ACTION_CLIP_EPS, 1 - ACTION_CLIP_EPS)
            tr["rewards"][g] = process_reward(r, self.cfg.sparse)
            tr["masks"][g] = 0.0 if terminated else 1.0
            tr["done"][g] = 1.0 if (terminated or truncated) else 0.0
            self.ep_return[g] += float(r)
            self.ep_len[g] += 1
            self.obs[g] = o
            if terminated or truncated:
                self.finished[g].append((float(info.get("success", 0.0)), float(self.ep_return[g]), int(self.ep_len[g])))
                self.total_episodes[g] += 1
        ts, self.buf, metrics = self.step_fn(ts, self.buf, self.off, {k: jnp.asarray(v) for k, v in tr.items()})
        self.meta["env_steps"] += 1
        for g in range(n):
            if tr["done"][g]:
                self._reset(g)
        return ts, metrics

    def stats(self) -> list[dict]:
        """``online/`` columns per seed; episode columns average the episodes finished since the
        last call (blank when none finished)."""
        sizes = np.asarray(self.buf["size"])
        out = []
        for g in range(len(self.seeds)):
            row = {"online/episodes": int(self.total_episodes[g]), "online/env_steps": int(self.meta["env_steps"][g]),
                   "online/buffer_size": int(self.offline_size + sizes[g])}
            if self.finished[g]:
                f = np.array(self.finished[g])
                row.update({"online/episode_success": float(np.mean(f[:, 0] > 0.5)),
                            "online/episode_return": float(np.mean(f[:, 1])),
                            "online/episode_length": float(np.mean(f[:, 2]))})
            self.finished[g] = []
            out.append(row)
        return out


def run_online(phase: OnlinePhase, ts, start: int, *, total: int, log_every: int,
               eval_every: int, save_every: int, do_eval: Callable | None, save: Callable, write_rows: Callable,
               signals, bar, check_finite: Callable, stopped: Callable):
    """The online loop from total step ``start`` to ``total`` (offline updates + env steps).

    Callbacks (from the runner): ``do_eval(step, agent_states) -> list of dict`` or None,
    ``save(step, group_state)``, ``write_rows(rows, step)``, ``check_finite(step, metrics per seed)``,
    ``stopped(step)`` raises after a signal. Returns the final train state and step.
    """
    from rql.train import EVAL_KEYS as eval_keys

    phase.start()
    step = start
    acc: list[dict] = []
    t_last, env_last = time.time(), step
    while step < total:
        ts, metrics = phase.step(ts)
        step += 1
        acc.append(metrics)
        rows: list[dict] = [{} for _ in phase.seeds]
        if step % log_every == 0 or step >= total:
            mean = {k: np.mean(np.stack([np.asarray(m[k]) for m in acc]), axis=0) for k in acc[0]}
            acc = []
            now = time.time()
            rate = (step - env_last) / max(now - t_last, 1e-9)
            t_last, env_last = now, step
            per_seed = [{k: float(v[i]) for k, v in mean.items()} for i in range(len(phase.seeds))]
            check_finite(step, per_seed)
            for i, st in enumerate(phase.stats()):
                rows[i].update(step=step, updates_per_s=rate * phase.run.utd, **per_seed[i], **st)
                rows[i]["online/env_steps_per_s"] = rate
            if bar is not None:
                bar.set_postfix(env_steps_s=f"{rate:.0f}", buffer=rows[0]["online/buffer_size"])
        evaluated = False
        if do_eval is not None and signals.requested is None and (
                (eval_every and step % eval_every == 0) or step >= total):
            res = do_eval(step, ts["agent"])
            evaluated = True
            for i, r in enumerate(res):
                rows[i].update(step=step, **{f"eval/{k}": r[k] for k in eval_keys})
        write_rows(rows, step)
        saved = False
        if step % save_every == 0 or step >= total or signals.requested is not None:
            save(step, phase.state_for_save(ts))
            saved = True
        if bar is not None:
            bar.update(1)
        if evaluated or saved:
            t_last = time.time()  # env steps/s counts acting and learning only
        if signals.requested is not None:
            stopped(step)
    return ts, step
