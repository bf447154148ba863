"""Evaluation memory and speed (issue 15), not a test.

speed: one process evaluates N seeds (``small`` preset, initial parameters: every episode runs to
the time limit, as an untrained policy's do) over one pool of environments, with the time split
into making environments, resets, stepping and policy calls; then the reference implementation's
evaluation loop re-enacted with the same policies and resets (``eval_reference.py`` runs its own code): one
environment, a fresh key split and one policy call per step (its action-chunking wrapper uses the
chunk only when its queue is empty), its episode monitor's info filtering and its per-step
trajectory record. The reference evaluates seeds one after the other, so its time for N seeds is
N times its time for one.

memory: ``rql train`` with tiny generated data and few updates for groups of 1, 4 and 8 seeds, in
a child process per run, its peak resident memory and its evaluation wall time, for the source tree
of this checkout ("after") and for another one ("before", e.g. a git worktree of an older commit:
``git worktree add /tmp/before COMMIT``, then ``--before /tmp/before/src``).

    .venv/bin/python benchmarks/eval_memory.py speed --task scene-play-singletask-task1-v0 --seeds 1 --episodes 50
    .venv/bin/python benchmarks/eval_memory.py memory --before /tmp/before/src --seeds 1,4,8 --episodes 10
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import time
from collections import defaultdict

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TASKS = {"scene": "scene-play-singletask-task1-v0", "cube-single": "cube-single-play-singletask-task2-v0"}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmRSS"))


def speed(task: str, seeds: int, episodes: int, envs: int, ref_episodes: int, workers: int = 0,
          preset: str = "small", lean: bool = True) -> dict:
    import warnings

    warnings.filterwarnings("ignore")
    import jax
    import numpy as np

    from rql.agents import build_config, make_agent
    from rql.data.loading import make_env
    from rql.evaluation import EnvPool, evaluate_group, make_group_policy
    from rql.learner import init_group_state

    probe = make_env(task)
    obs_dim, act_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    agent = make_agent("rql", build_config("rql", task, preset), obs_dim, act_dim)
    states = init_group_state(agent, list(range(seeds)))["agent"]
    policy = make_group_policy(agent)
    keys = [jax.random.fold_in(jax.random.PRNGKey(s + 1), 0) for s in range(seeds)]
    out: dict = {"task": task, "seeds": seeds, "episodes_per_seed": episodes, "pool": envs, "workers": workers,
                 "preset": preset, "lean": lean, "cores": len(os.sched_getaffinity(0))}

    pool = EnvPool(task, envs, workers=workers, lean=lean)
    w0, c0, r0 = time.perf_counter(), _cpu(), _rss_mb()
    pool.stepper(envs)  # made (workers started) once per run, not per evaluation
    out["pool_made"] = {"wall_s": time.perf_counter() - w0, "cpu_s": _cpu() - c0, "rss_added_mb": _rss_mb() - r0}
    n = min(envs, seeds * episodes)
    jax.block_until_ready(policy(states, np.zeros(n, np.int32), np.zeros((n, obs_dim), np.float32),
                                 jax.numpy.stack(keys), np.zeros(n, np.int32), np.zeros(n, np.int32)))  # compiled
    timings: dict = {}
    w0, c0 = time.perf_counter(), _cpu()
    res = evaluate_group(policy, states, pool, episodes, keys, [s * 100_003 for s in range(seeds)],
                         timings=timings)
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    worker_rss = [_proc_rss_mb(w.proc.pid) for w in pool.workers]
    pool.close()
    steps = sum(r["length"] * r["episodes"] for r in res)
    out["ours"] = {"wall_s": wall, "cpu_s": cpu, "env_steps": steps, "split_s": timings,
                   "wall_ms_per_step": 1e3 * wall / steps, "cpu_ms_per_step": 1e3 * cpu / steps,
                   "main_rss_mb": _rss_mb(), "worker_rss_mb": worker_rss}

    # --- the reference's loop, re-enacted with our policy (one environment, one call per step)
    if ref_episodes <= 0:
        out["load_average"] = os.getloadavg()
        return out
    # episode j: seed j % N's policy from the reset of its episode j // N in our evaluation above (the
    # cost of a step depends on the policy and the scene: the same ones for both loops)
    env = make_env(task)
    members = [jax.tree.map(lambda x, g=g: x[g], states) for g in range(seeds)]
    act = jax.jit(agent.act)
    rng = jax.random.PRNGKey(0)
    jax.block_until_ready(act(members[0], np.zeros((1, obs_dim), np.float32), rng))  # compiled
    filters = [".*privileged.*", ".*proprio.*"]
    split = defaultdict(float)
    ref_steps = 0
    w0, c0 = time.perf_counter(), _cpu()
    for i in range(ref_episodes):
        t = time.perf_counter()
        state = members[i % seeds]
        ob, info = env.reset(seed=(i % seeds) * 100_003 + i // seeds)
        split["reset"] += time.perf_counter() - t
        queue: list = []
        traj = defaultdict(list)
        done = False
        while not done:
            t = time.perf_counter()
            rng, key = jax.random.split(rng)
            chunk = np.array(act(state, np.asarray(ob, np.float32)[None], key)[0])
            chunk = np.clip(chunk, -1, 1)
            split["policy"] += time.perf_counter() - t
            if not queue:
                queue.extend(chunk)
            a = queue.pop(0)
            t = time.perf_counter()
            nob, r, term, trunc, info = env.step(a)
            split["step"] += time.perf_counter() - t
            for f in filters:
                for k in list(info.keys()):
                    if re.match(f, k) is not None:
                        del info[k]
            done = term or trunc
            for k, v in dict(observation=ob, next_observation=nob, action=a, reward=r, done=done, info=info).items():
                traj[k].append(v)
            ob = nob
            ref_steps += 1
    rwall, rcpu = time.perf_counter() - w0, _cpu() - c0
    env.close()
    per_ep_wall = rwall / ref_episodes
    out["reference_reenacted"] = {
        "episodes": ref_episodes, "wall_s": rwall, "cpu_s": rcpu, "env_steps": ref_steps, "split_s": dict(split),
        "wall_ms_per_step": 1e3 * rwall / ref_steps, "cpu_ms_per_step": 1e3 * rcpu / ref_steps,
        "wall_s_for_all_episodes_of_all_seeds": per_ep_wall * episodes * seeds,
        "cpu_s_for_all_episodes_of_all_seeds": rcpu / ref_episodes * episodes * seeds}
    out["speedup_wall"] = out["reference_reenacted"]["wall_s_for_all_episodes_of_all_seeds"] / wall
    out["speedup_cpu"] = out["reference_reenacted"]["cpu_s_for_all_episodes_of_all_seeds"] / cpu
    out["speedup_per_step_wall"] = out["reference_reenacted"]["wall_ms_per_step"] / out["ours"]["wall_ms_per_step"]
    out["speedup_per_step_cpu"] = out["reference_reenacted"]["cpu_ms_per_step"] / out["ours"]["cpu_ms_per_step"]
    out["load_average"] = os.getloadavg()
    return out


_CHILD = r"""
import json, resource, sys, time
import rql.evaluation as ev
spent = [0.0, 0]
WORKER_PEAKS = []  # each worker's peak resident memory (VmHWM), read just before it is closed
try:
    import rql.env_workers as ew
    _close = ew.Worker.close
    def close(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            WORKER_PEAKS.append(next(int(ln.split()[1]) / 1024 for ln in f if ln.startswith("VmHWM")))
        _close(self)
    ew.Worker.close = close
except ImportError:  # a tree without workers
    pass
if hasattr(ev.EnvPool, "stepper"):  # how many worker processes the run's pool started
    ev.LAST_WORKERS = [0]
    _stepper = ev.EnvPool.stepper
    def stepper(self, n):
        out = _stepper(self, n)
        ev.LAST_WORKERS[0] = max(ev.LAST_WORKERS[0], len(self.workers))
        return out
    ev.EnvPool.stepper = stepper
for name in ("evaluate_group", "evaluate"):
    f = getattr(ev, name)
    def timed(*a, _f=f, **k):
        t = time.perf_counter()
        try:
            return _f(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t
            spent[1] += 1
    setattr(ev, name, timed)
from rql.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
import rql
main_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
workers = ev.LAST_WORKERS[0] if hasattr(ev, "LAST_WORKERS") else 0
print("RESULT " + json.dumps({"rc": rc, "wall_s": time.perf_counter() - t, "eval_s": spent[0], "rql": rql.__file__,
      "peak_rss_mb": main_peak, "workers": workers, "worker_peak_rss_mb": WORKER_PEAKS,
      "total_peak_rss_mb": main_peak + sum(WORKER_PEAKS)}))
"""


def data_file(task: str, work: pathlib.Path) -> pathlib.Path:
    """Tiny generated data of ``task``'s dataset (3 episodes of 60 steps)."""
    name = task.split("-singletask")[0] + "-v0"
    path = work / "data" / f"{name}.npz"
    if not path.exists():
        subprocess.run([str(ROOT / ".venv" / "bin" / "rql"), "data", "generate", name, "--episodes", "3",
                        "--max-steps", "60", "--out", str(path.parent)], check=True)
    return path


def memory_run(src: str, task: str, seeds: int, episodes: int, steps: int, work: pathlib.Path,
               extra: list[str]) -> dict:
    run_dir = work / f"run-{abs(hash((src, task, seeds, time.time())))}"
    argv = ["train", "--task", task, "--dataset-path", str(data_file(task, work)), "--preset", "small",
            "--steps", str(steps), "--eval-every", str(steps), "--log-every", str(steps),
            "--eval-episodes", str(episodes), "--run-dir", str(run_dir), "--no-progress",
            "--seeds", str(seeds), *extra]  # N: seeds 0..N-1
    env = dict(os.environ, PYTHONPATH=src, JAX_PLATFORMS="cpu")
    p = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines or json.loads(lines[-1][len("RESULT "):])["rc"] != 0:
        raise SystemExit(f"rql train failed ({src}, {task}, {seeds} seeds): {p.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--task", default=TASKS["scene"])
    sp.add_argument("--seeds", type=int, default=1)
    sp.add_argument("--episodes", type=int, default=50)
    sp.add_argument("--envs", type=int, default=10)
    sp.add_argument("--ref-episodes", type=int, default=None, help="episodes of the re-enacted reference loop "
                    "(default: --episodes; its time is per episode, multiplied to all seeds' episodes)")
    sp.add_argument("--workers", type=int, default=0, help="worker processes of the pool (--eval-workers)")
    sp.add_argument("--preset", default="small", help="network sizes of the policy: small or reference")
    sp.add_argument("--no-lean", action="store_true", help="step with OGBench's own hooks (rql.lean_ogbench off)")
    sp.add_argument("--out", default=None)
    mp = sub.add_parser("memory")
    mp.add_argument("--before", default=None, help="the src folder of the 'before' tree")
    mp.add_argument("--tasks", default="scene,cube-single")
    mp.add_argument("--seeds", default="1,4,8")
    mp.add_argument("--episodes", type=int, default=10)
    mp.add_argument("--steps", type=int, default=20)
    mp.add_argument("--extra", default="", help="more rql train options, e.g. '--eval-envs 4'")
    mp.add_argument("--only", choices=["before", "after"], default=None, help="run one of the two trees")
    mp.add_argument("--work", default="/tmp/rql-eval-memory")
    mp.add_argument("--out", default=None)
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.cmd == "speed":
        res = speed(args.task, args.seeds, args.episodes, args.envs, args.ref_episodes or args.episodes, args.workers,
                    args.preset, not args.no_lean)
        out = pathlib.Path(args.out or RESULTS / f"eval_speed_{args.task.split('-')[0]}_{args.seeds}seeds"
                           f"_{args.workers}workers_{args.preset}.json")
    else:
        work = pathlib.Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        trees = {"after": str(ROOT / "src")}
        if args.before:
            trees = {"before": args.before, **trees}
        if args.only:
            trees = {args.only: trees[args.only]}
        res = {"steps": args.steps, "episodes_per_seed": args.episodes, "extra": args.extra, "runs": []}
        for short in args.tasks.split(","):
            for label, src in trees.items():
                for n in (int(s) for s in args.seeds.split(",")):
                    r = memory_run(src, TASKS.get(short, short), n, args.episodes, args.steps, work, args.extra.split())
                    r.update(task=short, tree=label, seeds=n)
                    print(json.dumps(r), flush=True)
                    res["runs"].append(r)
        res["load_average"] = os.getloadavg()
        out = pathlib.Path(args.out or RESULTS / "eval_memory.json")
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
