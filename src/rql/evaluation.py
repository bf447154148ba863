"""Batched evaluation: several environments at once, one compiled policy call for all of them,
action chunks executed open loop, success rate reported with a 95% Wilson interval."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    import jax


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well behaved at 0 and 1, unlike the normal one)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class EnvPool:
    """The evaluation environments of one task in a process, shared by every seed of a group.

    Environments are made when an evaluation first needs them (never more than ``size``, never
    more than the episodes asked for). With ``share_model`` the environments of OGBench's
    manipulation tasks after the first reuse its compiled MuJoCo model and inverse-kinematics
    controller, each with its own ``MjData`` (see :class:`SharedModelEnv`); others are made
    separately. With ``lean`` (the default) OGBench's manipulation environments step through
    :mod:`rql.lean_ogbench`: the same episodes, about 13-15% less time per step, and an ``info``
    that holds only ``success``.

    ``workers``: processes (:mod:`rql.env_workers`) that hold and step some of the environments
    while this process steps the others, started when an evaluation first needs them. Slot ``s`` of
    an evaluation is stepped by process ``s % (workers + 1)`` (0: this one), so the environments
    are spread evenly. Only with the default ``make`` (a worker makes its environments from the
    task name and ``env_kwargs``, the options of ``gymnasium.make``).
    """

    def __init__(self, task: str, size: int, share_model: bool = True, make: Callable | None = None,
                 workers: int = 0, env_kwargs: dict | None = None, lean: bool = True):
        if size < 1:
            raise ValueError("an environment pool holds at least one environment")
        self.env_kwargs = dict(env_kwargs or {})
        if make is None:
            from rql.data.loading import make_env

            def make(task):  # without gymnasium's checker, which compiles a model at once to check spaces
                return make_env(task, disable_env_checker=True, **self.env_kwargs)
        else:
            workers = 0  # a worker cannot run a function of this process
        self.task, self.size, self.share_model, self._make = task, size, share_model, make
        self.lean = lean
        self.processes = 1 + max(0, min(workers, size - 1))
        self.envs: list = []
        self.workers: list = []  # rql.env_workers.Worker, started when first needed

    def first(self):
        """The first environment (made now if needed), e.g. to check data against the task."""
        return self.take(1)[0]

    def take(self, n: int) -> list:
        """The first ``min(n, size)`` environments of this process, making the missing ones."""
        n = max(1, min(n, self.size))
        while len(self.envs) < n:
            template = self.envs[0] if self.envs else None
            if self.share_model and isinstance(template, SharedModelEnv):
                self.envs.append(self._leaned(template.twin()))
                continue
            env = self._make(self.task)
            if self.share_model and SharedModelEnv.supports(env):
                env = SharedModelEnv(env)
                env.model()
                # OGBench computes observations (observation_space too) from state a reset sets up:
                # one reset, then its model values are forgotten (the next reset starts from fresh ones)
                env.reset(seed=0)
                env._own = None
            self.envs.append(self._leaned(env))
        return self.envs[:n]

    def _leaned(self, env):
        if self.lean:
            from rql.lean_ogbench import install

            install(env)
        return env

    def prepare(self, n: int) -> None:
        """Start the workers that an evaluation of ``n`` slots needs and have them make their
        environments, without waiting: they start (3-4 s) while this process goes on."""
        n = max(1, min(n, self.size))
        P = self.processes
        if n > 1 and P > 1:
            from rql.env_workers import Worker

            while len(self.workers) < min(n, P) - 1:  # only those with slots in this evaluation
                p = len(self.workers) + 1
                self.workers.append(Worker(self.task, len(range(p, self.size, P)), self.share_model,
                                           self.env_kwargs, self.lean))
            for w, c in zip(self.workers, [len(range(p, n, P)) for p in range(1, P)]):
                if c > max(w.made, w.asked):
                    w.ask("make", {"count": c})
                    w.asked = c

    def stepper(self, n: int) -> "_Stepper":
        """The ``min(n, size)`` slots of one evaluation, over this process and the workers."""
        n = max(1, min(n, self.size))
        P = self.processes
        self.prepare(n)
        local = self.take(len(range(0, n, P)))
        for w in self.workers:
            if w.asked > w.made:
                try:
                    w.made = w.answer()[0]["made"]
                finally:
                    w.asked = w.made  # answered (or failed): nothing pending
        return _Stepper(local, self.workers, n, P)

    def close(self) -> None:
        for w in self.workers:
            w.close()
        self.workers = []
        for env in self.envs:
            env.close()
        self.envs = []


class _Stepper:
    """Resets and plays action chunks in the slots of one evaluation: slot ``s`` is environment
    ``s // P`` of process ``s % P`` (0: ``local``, ``p``: ``workers[p - 1]``). The workers' share
    is sent first, this process plays its own, then the workers' answers are read."""

    def __init__(self, local: list, workers: list, n: int, P: int):
        self.local, self.workers, self.n, self.P = local, workers, n, P

    @property
    def obs_dim(self) -> int:
        return self.local[0].observation_space.shape[0]

    def _split(self, slots):
        by = [[] for _ in range(self.P)]
        for j, s in enumerate(slots):
            by[s % self.P].append(j)
        return by

    def reset(self, slots: list[int], seeds: list[int]) -> list:
        by, out = self._split(slots), [None] * len(slots)
        for p in range(1, self.P):
            if by[p]:
                self.workers[p - 1].ask("reset", {"slots": [slots[j] // self.P for j in by[p]],
                                                  "seeds": [int(seeds[j]) for j in by[p]]})
        for j in by[0]:
            out[j] = self.local[slots[j] // self.P].reset(seed=int(seeds[j]))[0]
        for p in range(1, self.P):
            if by[p]:
                obs = self.workers[p - 1].answer()[1]["obs"]
                for j, o in zip(by[p], obs):
                    out[j] = o
        return out

    def play(self, slots: list[int], chunks: np.ndarray) -> list:
        from rql.env_workers import _unpack_play, play_chunk

        by, out = self._split(slots), [None] * len(slots)
        for p in range(1, self.P):
            if by[p]:
                self.workers[p - 1].ask("play", {"slots": [slots[j] // self.P for j in by[p]]},
                                        {"chunks": chunks[by[p]]})
        for j in by[0]:
            out[j] = play_chunk(self.local[slots[j] // self.P], chunks[j])
        for p in range(1, self.P):
            if by[p]:
                for j, r in zip(by[p], _unpack_play(self.workers[p - 1].answer()[1])):
                    out[j] = r
        return out


MODEL_FIELDS_CHANGED_BY_OGBENCH = ("geom_rgba", "mat_rgba", "site_pos", "dof_damping")
"""``MjModel`` fields that OGBench's manipulation environments write while they run (button and
cube colours, target sites, the damping that locks the drawer and window in ``scene``). Each
environment sharing a model keeps its own values of them (a test checks that no other field changes)."""


class SharedModelEnv:
    """An OGBench manipulation environment that shares the compiled ``MjModel`` (and the stateless
    inverse-kinematics controller) of ``template``, with its own ``MjData``; ``template=None``
    makes the environment that others share.

    OGBench writes a few model fields during episodes (:data:`MODEL_FIELDS_CHANGED_BY_OGBENCH`).
    Each environment keeps its own values of them, loaded into the shared model before each of its
    resets and steps and saved after, starting from the values of a freshly compiled model: it sees
    exactly the model a separately built environment would.
    """

    def __init__(self, env, template: "SharedModelEnv | None" = None):
        import mujoco

        self.env, self.template = env, template
        self._own: list[np.ndarray] | None = None  # this environment's values, once it has a model
        self._views: list[np.ndarray] = []
        u = env.unwrapped
        if template is None:
            compile_own = u.compile_model_and_data
            if u._model is not None:  # compiled when made (gymnasium's environment checker resets it)
                self.fresh = [getattr(u._model, f).copy() for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]

            def compile_model_and_data():
                compile_own()
                self.fresh = [getattr(u._model, f).copy() for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]

        else:
            u._ik = template.env.unwrapped._ik  # solve() first sets its data's whole qpos: no state between calls

            def compile_model_and_data():  # OGBench's, minus the compilation
                u._model = template.model()
                u._data = mujoco.MjData(u._model)
                u._model.opt.timestep = u._physics_timestep
                mujoco.mj_resetData(u._model, u._data)
                mujoco.mj_forward(u._model, u._data)
                u.post_compilation()
                u._dirty = False

        u.compile_model_and_data = compile_model_and_data

    @staticmethod
    def supports(env) -> bool:
        from ogbench.manipspace.envs.env import CustomMuJoCoEnv

        return isinstance(env.unwrapped, CustomMuJoCoEnv)

    def model(self):
        """The shared model, compiled now if it is not yet, as OGBench's first reset compiles it
        but without starting an episode (whose random draws would change the model's fields)."""
        u = self.env.unwrapped
        if u._model is None:
            if u._mjcf_model is None:
                u._mjcf_model = u.build_mjcf_model()
            u._mjcf_model = u.modify_mjcf_model(u._mjcf_model)
            u.compile_model_and_data()
            u._never_compiled = False
        return u._model

    def _take_values(self) -> None:
        """Start this environment's own values: those of the freshly compiled model (whatever was
        done to the model outside :meth:`reset` and :meth:`step`, e.g. relabelling data with it)."""
        if self._own is None:
            model = self.env.unwrapped._model if self.template is None else self.template.model()
            self._views = [getattr(model, f) for f in MODEL_FIELDS_CHANGED_BY_OGBENCH]
            self._own = [v.copy() for v in (self.template or self).fresh]

    def _load(self) -> None:
        if self._own is None and self.template is None and self.env.unwrapped._model is None:
            return  # the template's first reset compiles the model; _save takes its values after
        self._take_values()
        for v, own in zip(self._views, self._own):
            v[...] = own

    def _save(self) -> None:
        self._take_values()
        for v, own in zip(self._views, self._own):
            own[...] = v

    def __getattr__(self, name):  # observation_space, action_space, spec, unwrapped, ...
        if "env" not in self.__dict__:  # being copied
            raise AttributeError(name)
        return getattr(self.env, name)

    def reset(self, **kwargs):
        self._load()
        out = self.env.reset(**kwargs)
        self._save()
        return out

    def step(self, action):
        self._load()
        out = self.env.step(action)
        self._save()
        return out

    def twin(self) -> "SharedModelEnv":
        """A new environment sharing this one's model: a copy of this one (its wrappers and Python
        state, which every reset re-initialises) with a new ``MjData``, sharing the model, the
        inverse-kinematics controller and the MJCF description, which OGBench only reads once
        compiled. Much cheaper than making one: no model is compiled, no MJCF tree built."""
        import copy

        import mujoco

        root = self.template or self
        u = self.env.unwrapped
        model = root.model()
        memo: dict = {}
        _keep_shared(u.__dict__, memo)
        memo[id(u._data)] = mujoco.MjData(model)  # the twin's own
        env = copy.deepcopy(self.env, memo)
        del env.unwrapped.compile_model_and_data  # this one's; the twin gets its own
        return SharedModelEnv(env, root)

    def close(self) -> None:
        self.env.close()


def _keep_shared(obj, memo: dict, depth: int = 0) -> None:
    """Put the MJCF elements (and their trees) and MuJoCo objects that ``obj`` holds, directly or
    in lists, tuples and dicts, into a ``deepcopy`` memo so that a copy refers to the same ones."""
    from dm_control.mjcf import element

    if depth > 4:
        return
    if isinstance(obj, dict):
        for v in obj.values():
            _keep_shared(v, memo, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _keep_shared(v, memo, depth + 1)
    elif isinstance(obj, element._ElementImpl) or type(obj).__module__.startswith("mujoco"):
        memo[id(obj)] = obj


def make_policy(agent, num_envs: int | None = None) -> Callable:
    """The compiled policy of :func:`evaluate` (``num_envs`` is not needed; kept for callers)."""
    return make_group_policy(agent)


def make_group_policy(agent) -> Callable:
    """A compiled ``(states (N, ...), seed_index (B,), obs (B, obs_dim), keys (N, 2), episode (B,),
    chunk (B,)) -> (B, h, action_dim)``: one policy call for the rows of every seed of a group.

    Row ``b`` acts with seed ``seed_index[b]``'s parameters and the noise of key
    ``fold_in(fold_in(keys[seed], episode), chunk)``: an episode's noise depends on its seed, its
    index and how many chunks it has drawn, not on which other episodes share the call.
    """

    import jax

    def row(state, obs, key, episode, chunk):
        key = jax.random.fold_in(jax.random.fold_in(key, episode), chunk)
        return agent.act(state, obs[None], key)[0]

    def call(states, seed_index, obs, keys, episode, chunk):
        rows = jax.tree.map(lambda x: x[seed_index], states)
        return jax.vmap(row)(rows, obs, keys[seed_index], episode, chunk)

    return jax.jit(call)


def evaluate(
    policy: Callable,
    state,
    envs,
    episodes: int,
    key: jax.Array,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    first_episode: int = 0,
) -> dict:
    """Run ``episodes`` episodes of one policy over ``envs`` (a list or an :class:`EnvPool`),
    episode ``i`` reset with seed ``seed + i``; see :func:`evaluate_group`."""
    import jax

    states = jax.tree.map(lambda x: jax.numpy.asarray(x)[None], state)
    return evaluate_group(policy, states, envs, episodes, [key], [seed], progress, first_episode=first_episode)[0]


def evaluate_group(
    policy: Callable,
    states,
    envs,
    episodes: int,
    keys: list,
    seeds: list[int],
    progress: Callable[[int], None] | None = None,
    timings: dict | None = None,
    first_episode: int = 0,
) -> list[dict]:
    """Evaluate ``N`` policies (``states`` stacked on a leading axis) with ``episodes`` episodes
    each, all scheduled over one set of environments ``envs``: an :class:`EnvPool`, a list of
    environments, or a list of lists (flattened into one).

    Episode ``i`` of policy ``g`` is reset with seed ``seeds[g] + i`` and draws its noise from
    ``keys[g]``, the episode index and its chunk count (:func:`make_group_policy`), so a policy's
    results do not depend on the other policies evaluated with it nor on the number of
    environments. Each step, every environment whose chunk is used up gets a new one from one
    policy call for all of them; a chunk's ``h`` actions are executed open loop.

    ``first_episode``: the episodes are ``first_episode, first_episode + 1, ...`` (their reset
    seeds and noise): an evaluation split into consecutive ranges runs the episodes of one.
    """
    return [_summarise(r) for r in run_episodes(policy, states, envs, episodes, keys, seeds, progress, timings,
                                                first_episode)]


def run_episodes(policy, states, envs, episodes: int, keys: list, seeds: list[int],
                 progress: Callable[[int], None] | None = None,
                 timings: dict | None = None, first_episode: int = 0) -> list[list[tuple[float, float, int]]]:
    """The episodes of :func:`evaluate_group`: for each policy, ``(success, return, length)`` of
    its episodes in episode order. ``timings``: a dict that receives the seconds spent making
    environments, resetting, stepping and in policy calls (keys ``make``, ``reset``, ``step``,
    ``policy``; added to what it holds)."""
    import jax

    G = len(seeds)
    total = G * episodes
    if total <= 0:
        return [[] for _ in range(G)]
    clock = {k: 0.0 for k in ("make", "reset", "step", "policy")}
    t0 = time.perf_counter()
    if isinstance(envs, EnvPool):
        stepper = envs.stepper(total)
    else:
        if envs and isinstance(envs[0], (list, tuple)):
            envs = [e for group in envs for e in group]
        envs = list(envs)[:total]
        stepper = _Stepper(envs, [], len(envs), 1)
    n = stepper.n
    obs_dim = stepper.obs_dim
    clock["make"] = time.perf_counter() - t0
    # episodes in the order they start: episode 0 of every policy, then episode 1, ...
    todo = [(g, i) for i in range(first_episode, first_episode + episodes) for g in range(G)][::-1]
    key_data = jax.numpy.stack([jax.numpy.asarray(k) for k in keys])
    obs = np.zeros((n, obs_dim), np.float32)
    slot_seed = np.zeros(n, np.int32)
    slot_episode = np.zeros(n, np.int32)
    slot_chunk = np.zeros(n, np.int32)
    active = np.zeros(n, bool)
    ep_return = np.zeros(n)
    ep_len = np.zeros(n, dtype=np.int64)
    results: list[dict[int, tuple[float, float, int]]] = [{} for _ in range(G)]

    def start(slots):
        """The next episodes in these slots (reset together), or the slots stay idle."""
        go, reset_seeds = [], []
        for s in slots:
            active[s] = bool(todo)
            if todo:
                g, i = todo.pop()
                slot_seed[s], slot_episode[s], slot_chunk[s] = g, i, 0
                ep_return[s], ep_len[s] = 0.0, 0
                go.append(s)
                reset_seeds.append(seeds[g] + i)
        if go:
            t = time.perf_counter()
            for s, o in zip(go, stepper.reset(go, reset_seeds)):
                obs[s] = o
            clock["reset"] += time.perf_counter() - t

    start(range(n))
    while active.any():
        # every running episode has used up its chunk: one policy call draws the next for all
        t = time.perf_counter()
        chunks = np.clip(np.asarray(policy(states, slot_seed, obs, key_data, slot_episode, slot_chunk)), -1.0, 1.0)
        clock["policy"] += time.perf_counter() - t
        running = [s for s in range(n) if active[s]]
        slot_chunk[running] += 1
        t = time.perf_counter()
        played = stepper.play(running, chunks[running])
        clock["step"] += time.perf_counter() - t
        ended = []
        for s, (o, rewards, done, success) in zip(running, played):
            obs[s] = o
            for r in rewards:
                ep_return[s] += r
            ep_len[s] += len(rewards)
            if done:
                g, i = int(slot_seed[s]), int(slot_episode[s])
                results[g][i] = (success, float(ep_return[s]), int(ep_len[s]))
                if progress is not None:
                    progress(1)
                ended.append(s)
        start(ended)
    if timings is not None:
        for k, v in clock.items():
            timings[k] = timings.get(k, 0.0) + v
    return [[r[i] for i in sorted(r)] for r in results]


def _summarise(results: list[tuple[float, float, int]]) -> dict:
    succ = np.array([r[0] for r in results])
    k = int(np.sum(succ > 0.5))
    lo, hi = wilson_interval(k, len(results))
    return {
        "success": float(k / max(len(results), 1)),
        "success_ci_low": lo,
        "success_ci_high": hi,
        "return": float(np.mean([r[1] for r in results])) if results else 0.0,
        "length": float(np.mean([r[2] for r in results])) if results else 0.0,
        "episodes": len(results),
    }


def pool_results(parts: list[dict]) -> dict:
    """One result from evaluations of disjoint episodes (e.g. ``rql eval --first-episode`` ranges)."""
    n = sum(p["episodes"] for p in parts)
    k = sum(round(p["success"] * p["episodes"]) for p in parts)
    lo, hi = wilson_interval(k, n)

    def mean(key):
        return float(sum(p[key] * p["episodes"] for p in parts) / max(n, 1))

    return {**parts[0], "success": k / max(n, 1), "success_ci_low": lo, "success_ci_high": hi,
            "return": mean("return"), "length": mean("length"), "episodes": n}


def evaluate_in_processes(run_dir, episodes: int, workers: int, seed: int = 0, checkpoint: int | None = None,
                          envs: int = 10, first_episode: int = 0) -> dict:
    """``rql eval`` of ``episodes`` episodes split into ``workers`` processes with consecutive
    episode ranges (``--first-episode``), run side by side and pooled (``rql eval --workers``).
    Stepping MuJoCo is single-threaded, so N processes share N cores in about the time of one.
    All processes end before a failure is raised, as one line naming the run."""
    import json
    import os
    import subprocess
    import sys

    from rql.errors import RQLError

    workers = max(1, min(workers, episodes))
    sizes = [episodes // workers + (i < episodes % workers) for i in range(workers)]
    starts = [first_episode + sum(sizes[:i]) for i in range(workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = []
    for n, start in zip(sizes, starts):
        cmd = [sys.executable, "-m", "rql.cli", "eval", str(run_dir), "--episodes", str(n), "--seed", str(seed),
               "--envs", str(max(1, min(envs, n))), "--env-workers", "0", "--first-episode", str(start), "--json"]
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    done = [proc.communicate() for proc in procs]
    parts = []
    for proc, (out, err) in zip(procs, done):
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
            raise RQLError(f"evaluation of {run_dir} failed: {last}")
        parts.append(json.loads(out.strip().splitlines()[-1]))
    if len({p["checkpoint"] for p in parts}) > 1:
        raise RQLError(f"{run_dir}: a new checkpoint appeared during the evaluation; give --checkpoint STEP")
    return pool_results(parts)
