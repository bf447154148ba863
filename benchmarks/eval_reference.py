"""The reference implementation's own evaluation loop, timed on the real environment (issue 15), not a test.

Runs the reference's ``evaluate`` (its ``envs/evaluation.py``) with its RQL agent (initial parameters,
so every episode runs to the time limit, as in ``eval_memory.py speed``) on its evaluation
environment: OGBench's, in its episode monitor and action-chunking wrapper, as its ``main.py`` makes
it. The network sizes, chunk length and flow steps are those of our ``--preset`` for the task, so the
figure is comparable with ``eval_memory.py speed --preset ...``. Needs a Python with the reference's
dependencies (jax, flax, distrax, ml_collections, einops, ogbench, opencv, tqdm) and this package:

    REF_VENV/bin/python benchmarks/eval_reference.py --ref /path/to/rql-reference \\
        --task cube-single-play-singletask-task2-v0 --episodes 10 --preset small
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref", required=True, help="a checkout of the reference implementation")
    ap.add_argument("--task", default="cube-single-play-singletask-task2-v0")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--preset", default="small", help="our preset whose sizes the reference agent gets")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(pathlib.Path(args.ref).resolve()))
    import jax
    import numpy as np
    import ogbench
    from agents import agents
    from agents.rql import get_config
    from envs.env_utils import ActionChunkingWrapper, EpisodeMonitor
    from envs.evaluation import evaluate

    from rql.agents import build_config

    ours = build_config("rql", args.task, args.preset)
    config = get_config()
    config.update(dict(h=ours.horizon, flow_steps=ours.flow_steps, actor_hidden_dims=tuple(ours.actor_hidden_dims),
                       value_hidden_dims=tuple(ours.value_hidden_dims), ensemble_ct=ours.ensemble))
    env = ogbench.make_env_and_datasets(args.task, env_only=True)
    env = ActionChunkingWrapper(EpisodeMonitor(env, filter_regexes=[".*privileged.*", ".*proprio.*"]))
    env.reset()
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    agent = agents["rql"].create(0, np.zeros((1, obs_dim), np.float32), np.zeros((1, act_dim), np.float32), config)
    ob, _ = env.reset()  # compiled as its evaluate calls it (an observation as the environment gives it)
    jax.block_until_ready(agent.sample_actions(obs=ob, temperature=0, seed=jax.random.PRNGKey(0)))
    inner, spent = env.unwrapped, [0.0]  # OGBench's own step (physics and its Python), timed
    own_step = inner.step

    def timed_step(action):
        t = time.perf_counter()
        try:
            return own_step(action)
        finally:
            spent[0] += time.perf_counter() - t

    inner.step = timed_step
    w0, c0 = time.perf_counter(), _cpu()
    stats, trajs, _ = evaluate(agent=agent, env=env, env_name=args.task, config=config,
                               num_eval_episodes=args.episodes)
    wall, cpu = time.perf_counter() - w0, _cpu() - c0
    steps = sum(len(t["reward"]) for t in trajs)
    res = {"task": args.task, "preset": args.preset, "episodes": args.episodes, "env_steps": steps,
           "config": {k: config[k] for k in ("h", "flow_steps", "actor_hidden_dims", "ensemble_ct")},
           "wall_s": wall, "cpu_s": cpu, "env_step_s": spent[0], "env_step_ms_per_step": 1e3 * spent[0] / steps,
           "wall_ms_per_step": 1e3 * wall / steps, "cpu_ms_per_step": 1e3 * cpu / steps,
           "wall_s_per_50_episodes": wall / args.episodes * 50, "success": float(stats.get("success", 0.0)),
           "load_average": os.getloadavg(), "jax": jax.__version__}
    out = pathlib.Path(args.out or RESULTS / f"eval_reference_{args.task.split('-')[0]}_{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
