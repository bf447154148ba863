"""Updates per second of the QAM suite's own code, at the settings of ``benchmarks/agents_speed.py``.

    python benchmarks/qam_fidelity/suite_speed.py --suite PATH [--methods fql,rebrac,qam] [--size small]
                                                  [--steps N] [--out benchmarks/results/suite_speed.json]

Run it with a Python that imports the suite (its dependencies installed). Synthetic data like ours
(obs 28, action 5, episodes of 500 steps), chunks of 5, batch 256; small = 2x256 networks and 2
critics, reference = 4x512 and 10 critics. Two figures per method: its training loop as its
``main.py`` runs it (host-side ``sample_sequence`` then the jitted ``update``, one per Python
iteration) and ``update`` alone on one pre-sampled batch. Peak RSS is the process's (run one method
per process for a clean memory figure: ``--methods fql``).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import sys
import time

import numpy as np

# Our method name -> (the suite's agent key in agents.agents, config fields that select the variant).
METHODS = {
    "fql": ("fql", {}),
    "ifql": ("ifql", {}),
    "rebrac": ("rebrac", {}),
    "fbrac": ("fbrac", {}),
    "fawac": ("fawac", {}),
    "fedit": ("fedit", {}),
    "dsrl": ("dsrl", {}),
    "bam": ("bam", {}),
    "cgql": ("cgql", {"mode": "simple"}),
    "qsm": ("dcgql", {"actor_loss_type": "qsm"}),
    "dac": ("dcgql", {"actor_loss_type": "dac"}),
    "qam": ("qam", {}),
}
SIZES = {"small": ((256, 256), 2), "reference": ((512, 512, 512, 512), 10)}


def synthetic(size: int, obs_dim: int = 28, action_dim: int = 5, episode_len: int = 500, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    terminals = np.zeros(size, np.float32)
    terminals[episode_len - 1 :: episode_len] = 1.0
    obs = rng.standard_normal((size + 1, obs_dim), dtype=np.float32)
    return dict(
        observations=obs[:-1], next_observations=obs[1:],
        actions=rng.uniform(-1, 1, (size, action_dim)).astype(np.float32),
        rewards=-(rng.random(size) < 0.9).astype(np.float32), terminals=terminals, masks=1.0 - terminals,
    )


def time_method(name: str, size: str, steps: int, horizon: int = 5, batch: int = 256) -> dict:
    import jax
    import jax.numpy as jnp
    from agents import agents as suite_agents
    from utils.datasets import Dataset

    key, variant = METHODS[name]
    cls = suite_agents[key]
    cfg = __import__(f"agents.{key}", fromlist=["get_config"]).get_config()
    dims, ensemble = SIZES[size]
    with cfg.unlocked():
        cfg.update(dict(actor_hidden_dims=dims, value_hidden_dims=dims, num_qs=ensemble, batch_size=batch,
                        horizon_length=horizon, action_chunking=True, **variant))
    ds = Dataset.create(**synthetic(100_000))
    agent = cls.create(0, jnp.zeros((28,)), jnp.zeros((5,)), cfg)  # one example, as its main.py passes

    def one(agent, b, i):
        if cfg.get("agent_name") == "rebrac":
            return agent.update(b, full_update=(i % cfg["actor_freq"] == 0))
        return agent.update(b)

    b = ds.sample_sequence(batch, sequence_length=horizon, discount=cfg["discount"])
    t0 = time.perf_counter()
    for i in range(2):  # both of ReBRAC's compiled variants (actor update or not)
        agent, info = one(agent, b, i)
    jax.block_until_ready(info)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        agent, info = one(agent, ds.sample_sequence(batch, sequence_length=horizon, discount=cfg["discount"]), i + 1)
    jax.block_until_ready((agent, info))
    loop = steps / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(steps):
        agent, info = one(agent, b, i + 1)
    jax.block_until_ready((agent, info))
    alone = steps / (time.perf_counter() - t0)
    return {"method": name, "size": size, "loop_updates_per_second": loop, "update_alone_per_second": alone,
            "compile_seconds": compile_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "steps": steps, "jax": jax.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", required=True)
    ap.add_argument("--methods", default="fql,rebrac,qam")
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default="benchmarks/results/suite_speed.json")
    args = ap.parse_args()
    sys.path.insert(0, args.suite)
    path = pathlib.Path(args.out)
    results = json.loads(path.read_text()) if path.is_file() else {}
    for m in args.methods.split(","):
        r = time_method(m, args.size, args.steps)
        results[f"{m}/{args.size}"] = r
        print(f"| {m} | {args.size} | {r['loop_updates_per_second']:.1f} | {r['update_alone_per_second']:.1f} | "
              f"{r['peak_rss_mb']:.0f} |")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
