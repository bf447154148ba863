"""The online phase: after the offline updates, every seed acts in its own training environment
of the task and keeps learning from its replay buffer (:mod:`rql.online`: the buffer and the
compiled policy and step), one environment step of every seed per dispatch, until
``--steps + --online-steps``.

Acting: one batched policy call for the seeds that need a new chunk (the current actor, fresh
noise per chunk, see :mod:`rql.online`), the chunk executed open loop, a new chunk at every
episode start; episode ``e`` of seed ``k`` is reset with ``ENV_SEED_BASE + k * 100_003 + e``.

Image observations: each training environment stacks its frames as the data is stacked
(``make_env(task, frame_stack=K)``, :func:`rql.pixels.stack_env`) and the policy reads the stacked
frames (uint8, flat); the buffer gets the newest single frame of every step (:func:`stored_frame`).
"""

from __future__ import annotations

import time
from collections import deque

import jax
import jax.numpy as jnp
import numpy as np

from rql.data.dataset import ACTION_CLIP_EPS
from rql.online import (
    ENV_SEED_BASE, ONLINE_KEY, close_open_episode, init_meta, init_online_buffer, make_online_policy,
    make_online_step, process_reward,
)
from rql.learner import windows_of
from rql.runner.resume import Start
from rql.runner.services import Services, StepRate
from rql.runner.setup import Group
from rql.pixels import newest_frame

LAST_STEPS_LOGGED = 1000  # with --log-every 0, the final row is the mean of this many last steps


def stored_frame(obs: np.ndarray, px) -> np.ndarray:
    """What the buffer stores of stacked observations ``(..., H * W * K * C)``: the newest single frame, flat."""
    f = newest_frame(obs, px.frame_shape)
    return np.ascontiguousarray(f).reshape(*f.shape[:-3], -1)


class OnlinePhase:
    """The online loop of a group: one training environment per seed, one batched policy call
    for the seeds that need a chunk, one compiled call per environment step of all seeds. Its
    checkpoints hold the train state, the online part of the buffer and the host counters."""

    name = "online"

    def __init__(self, g: Group, start: Start, end: int):
        from rql.data.loading import make_env

        run, agent, seeds = g.run, g.agent, list(g.seeds)
        self.options, self.agent, self.cfg, self.seeds, self.end = run, agent, g.agent_cfg, seeds, end
        self.off, self.offline_size, self.capacity = g.data, int(g.dataset.size), int(g.online_capacity)
        self.px = px = g.pixels
        kw = {"max_episode_steps": run.online_episode_steps} if run.online_episode_steps else {}
        if px is not None:  # the policy reads stacked frames, as in training and evaluation
            kw["frame_stack"] = px.frame_stack
        self.envs = [make_env(run.task, **kw) for _ in seeds]
        self.policy = make_online_policy(agent)
        self.step_fn = make_online_step(agent, g.agent_cfg.horizon, g.agent_cfg.batch_size, run.utd, px)
        self.base_keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), ONLINE_KEY) for s in seeds])
        n = len(seeds)
        self.meta = init_meta(n)
        windows = windows_of(agent)
        self.buf = jax.vmap(lambda _: init_online_buffer(self.capacity, agent.obs_dim, agent.action_dim, windows,
                                                         px))(jnp.arange(n))
        self.obs = np.zeros((n, agent.obs_dim), np.float32 if px is None else np.uint8)
        self.queue: list[list[np.ndarray]] = [[] for _ in seeds]
        self.ep_return = np.zeros(n)
        self.ep_len = np.zeros(n, np.int64)
        self.finished: list[list[tuple[float, float, int]]] = [[] for _ in seeds]  # since the last row
        self.total_episodes = np.zeros(n, np.int64)
        if start.online_state is not None:
            self.restore(start.online_state)

    # checkpoint state ------------------------------------------------------------------
    def state_for_save(self, ts):
        """The group state to checkpoint: the train state plus the online part of the buffer and
        the host counters (episodes started, chunks drawn, environment steps)."""
        meta = {k: jnp.asarray(v) for k, v in self.meta.items()}
        return {**ts, "online": {**self.buf, **meta}}

    def restore(self, state) -> dict:
        """Take the online part out of a restored group state; returns the train state. The
        episode in progress at the checkpoint is closed where it stands (see :mod:`rql.online`)."""
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

    def _draw_chunks(self, ts) -> None:
        """A new action chunk for every seed whose queue is empty (one batched policy call)."""
        need = [not q for q in self.queue]
        if any(need):
            chunks = np.asarray(self.policy(ts["agent"], jnp.asarray(self.obs), self.base_keys,
                                            jnp.asarray(self.meta["chunk"])))
            for g, nd in enumerate(need):
                if nd:
                    self.queue[g] = list(np.clip(chunks[g], -1.0, 1.0))
                    self.meta["chunk"][g] += 1

    def step(self, ts):
        """One environment step of every seed, appended to its buffer, then ``utd`` updates each."""
        self._draw_chunks(ts)
        n, px = len(self.seeds), self.px
        stored = self.obs.copy() if px is None else stored_frame(self.obs, px)  # the buffer holds single frames
        tr = {"observations": stored, "actions": np.zeros((n, self.agent.action_dim), np.float32),
              "rewards": np.zeros(n, np.float32), "masks": np.zeros(n, np.float32), "done": np.zeros(n, np.float32),
              "next_observations": np.zeros_like(stored)}
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
            tr["next_observations"][g] = o if px is None else stored_frame(o, px)
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

    # the loop --------------------------------------------------------------------------
    def run(self, ts, step: int, svc: Services):
        """From total step ``step`` to ``end``, one environment step (and ``utd`` updates) at a time."""
        run, n = self.options, len(self.seeds)
        svc.describe("online" if n == 1 else f"online x{n} seeds")
        self.t0 = time.time()
        self.start()
        keep = None if run.log_every else LAST_STEPS_LOGGED  # metrics kept for the next row
        acc: deque[dict] = deque(maxlen=keep)
        rate = StepRate(step)
        while step < self.end:
            ts, metrics = self.step(ts)
            step += 1
            acc.append(metrics)
            rows: list[dict] = [{} for _ in self.seeds]
            if (run.log_every and step % run.log_every == 0) or step >= self.end:
                self._log_rows(rows, step, list(acc), svc, rate)
                acc.clear()
            evaluated = svc.eval_due(step, self.end)
            if evaluated:
                svc.evaluate(step, ts["agent"], rows)
            self._write_rows(rows, step, svc)
            saved = svc.save_due(step, self.end)
            if saved:
                svc.save(step, self.state_for_save(ts))
            svc.advance(1)
            if evaluated or saved:
                rate.restart(step)  # env steps/s counts acting and learning only
            svc.stop_if_asked(step)
        return ts, step

    def _log_rows(self, rows: list[dict], step: int, acc: list[dict], svc: Services, rate: StepRate) -> None:
        """The training and ``online/`` columns of every seed's row (means since the last row)."""
        mean = {k: np.mean(np.stack([np.asarray(m[k]) for m in acc]), axis=0) for k in acc[0]}
        env_rate = rate.read(step)
        per_seed = [{k: float(v[i]) for k, v in mean.items()} for i in range(len(self.seeds))]
        svc.check_finite(step, per_seed)
        for row, mi, st in zip(rows, per_seed, self.stats()):
            row.update(step=step, updates_per_s=env_rate * self.options.utd, **mi, **st)
            row["online/env_steps_per_s"] = env_rate
        svc.show(env_steps_s=f"{env_rate:.0f}", buffer=rows[0]["online/buffer_size"])

    def _write_rows(self, rows: list[dict], step: int, svc: Services) -> None:
        """Logged rows get ``time_s``, seconds since the online phase began (evaluation included)."""
        now = time.time()
        svc.write_rows([{**row, "time_s": now - self.t0} if "updates_per_s" in row else row for row in rows], step)
