"""Export every built-in agent's policy and check it: the loaded file's actions against the agent's own
compiled ``act`` on the same state, observations and key (batches of 1, 7 and 64), the file's size and the
time to export and to load it; then the file size of RQL at the ``small`` and ``reference`` sizes.

    python benchmarks/export_agents.py [--out benchmarks/results/export_agents.json]

States are freshly initialised (obs 28, action 5, chunk 5 as on cube tasks): what is checked is the
program and its parameters, which do not depend on how far training went.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import tempfile
import time

import jax
import numpy as np

from rql.agents import BUILTIN, build_config, get_spec
from rql.exported import load_exported
from rql.exporting import policy_file
from rql.learner import init_train_state

OBS, ACT, H = 28, 5, 5
TINY = dict(horizon=H, actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32), ensemble=2, flow_steps=4,
            num_samples=4)


def check(name: str, overrides: dict, folder: pathlib.Path) -> dict:
    fields = {f for f in get_spec(name).config_cls.__dataclass_fields__}
    cfg = build_config(name, None, None, {k: v for k, v in overrides.items() if k in fields})
    agent = get_spec(name).make(cfg, OBS, ACT)
    state = init_train_state(agent, 0)["agent"]
    t0 = time.perf_counter()
    data, _ = policy_file(agent, state)
    t_export = time.perf_counter() - t0
    path = folder / f"{name}.rqlx"
    path.write_bytes(data)
    t0 = time.perf_counter()
    policy = load_exported(path)
    t_load = time.perf_counter() - t0
    act = jax.jit(agent.act)
    worst = 0.0
    for batch in (1, 7, 64):
        obs = np.random.default_rng(batch).normal(size=(batch, OBS)).astype(np.float32)
        key = jax.random.PRNGKey(batch)
        a, b = np.asarray(policy(obs, key)), np.asarray(act(state, obs, key))
        assert a.shape == b.shape == (batch, H, ACT)
        worst = max(worst, float(np.abs(a - b).max()))
    n_state = sum(x.size for x in jax.tree_util.tree_leaves(state))
    n_file = sum(int(np.prod(t["shape"])) for t in policy.header["params"])
    return {"agent": name, "max_abs_diff": worst, "file_bytes": len(data), "state_floats": int(n_state),
            "exported_floats": n_file, "export_s": round(t_export, 2), "load_s": round(t_load, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="benchmarks/results/export_agents.json")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in sorted(BUILTIN):
            rows.append(check(name, TINY, pathlib.Path(d)))
            print(json.dumps(rows[-1]), flush=True)
        sizes = {}
        for preset in ("small", "reference"):
            cfg = build_config("rql", "cube-double-play-singletask-task2-v0", preset)
            agent = get_spec("rql").make(cfg, OBS, ACT)
            data, _ = policy_file(agent, init_train_state(agent, 0)["agent"])
            (pathlib.Path(d) / "size.rqlx").write_bytes(data)
            table = load_exported(pathlib.Path(d) / "size.rqlx").header["params"]
            sizes[f"rql-{preset}"] = {"file_bytes": len(data), "actor_hidden_dims": list(cfg.actor_hidden_dims),
                                      "exported_floats": sum(int(np.prod(t["shape"])) for t in table)}
            print(preset, sizes[f"rql-{preset}"], flush=True)
    doc = {"jax": jax.__version__, "device": str(jax.devices()[0]), "obs_dim": OBS, "action_dim": ACT, "horizon": H,
           "agents": rows, "rql_sizes": sizes,
           "bit_equal": sorted(r["agent"] for r in rows if r["max_abs_diff"] == 0.0),
           "max_abs_diff": max(r["max_abs_diff"] for r in rows)}
    pathlib.Path(args.out).write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out}; {len(doc['bit_equal'])} of {len(rows)} agents bit-equal, largest difference "
          f"{doc['max_abs_diff']:.2g}")
    return 0 if doc["max_abs_diff"] < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
