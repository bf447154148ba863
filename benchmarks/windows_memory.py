"""What the suite's windows cost: device memory of the successor rows and window sampling time.

    python benchmarks/windows_memory.py [--steps 1000000] [--episode-len 1000] [--obs-dim 28] [--batch 256]

A dataset of the size of OGBench's ``cube-single-play-v0`` (1M steps, episodes of 1,000 steps,
28-dimensional observations, 5-dimensional actions; synthetic values) is put on the device once. The
successor states the suite's windows need beyond ``observations[i + 1]`` are one row per episode
(``end_next_observations``) plus each episode's last index (``end_steps``); the figure beside them is
what a second copy of the observations (a full ``next_observations``) would take. Sampling time: one
compiled batch of windows of each semantics, chunks of 5, the median of 200 calls.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from rql.data.dataset import validate
from rql.data.device import sample_windows, to_device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=1_000_000)
    p.add_argument("--episode-len", type=int, default=1000)
    p.add_argument("--obs-dim", type=int, default=28)
    p.add_argument("--action-dim", type=int, default=5)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--out", default=None, help="write the figures as JSON here")
    a = p.parse_args()
    rng = np.random.default_rng(0)
    n = a.steps
    term = np.zeros(n, np.float32)
    term[a.episode_len - 1 :: a.episode_len] = 1.0
    obs = rng.standard_normal((n, a.obs_dim), dtype=np.float32)
    arrays = dict(observations=obs, actions=rng.uniform(-1, 1, (n, a.action_dim)).astype(np.float32),
                  rewards=np.zeros(n, np.float32), terminals=term, masks=np.ones(n, np.float32),
                  end_next_observations=rng.standard_normal((int(term.sum()), a.obs_dim), dtype=np.float32))
    data = to_device(validate(arrays, "synthetic"))
    sizes = {k: int(v.nbytes) for k, v in data._asdict().items()}
    succ = sizes["end_next_observations"] + sizes["end_steps"]
    out = {"steps": n, "episodes": int(term.sum()), "obs_dim": a.obs_dim, "field_bytes": sizes,
           "successor_bytes": succ, "second_copy_bytes": sizes["observations"],
           "total_bytes": sum(sizes.values())}
    for windows in ("rql", "suite"):
        f = jax.jit(sample_windows, static_argnums=(2, 3, 4))
        key = jax.random.PRNGKey(0)
        jax.block_until_ready(f(data, key, a.batch, a.horizon, windows))
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            jax.block_until_ready(f(data, jax.random.fold_in(key, i), a.batch, a.horizon, windows))
            times.append(time.perf_counter() - t0)
        out[f"sample_us_{windows}"] = float(np.median(times) * 1e6)
    print(f"{n} steps, {out['episodes']} episodes, obs {a.obs_dim}: successor rows {succ / 1e6:.3f} MB "
          f"(end_next_observations {sizes['end_next_observations'] / 1e6:.3f} MB + end_steps "
          f"{sizes['end_steps'] / 1e6:.3f} MB) against {sizes['observations'] / 1e6:.1f} MB for a second copy of "
          f"the observations; the device dataset in all {out['total_bytes'] / 1e6:.1f} MB")
    print(f"one batch of {a.batch} windows (h={a.horizon}): rql {out['sample_us_rql']:.0f} us, "
          f"suite {out['sample_us_suite']:.0f} us (median of 200)")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
