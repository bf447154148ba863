"""How large a run's lab page is, and how fast it runs, for networks of the ``small`` preset and of
the reference size (4 x 512, an ensemble of ten values), with a flow-BC baseline beside RQL as
``rql demo`` draws it. The networks are randomly initialised (the page's size does not depend on
the weights' values); the observation and action sizes are a cube task's.

``python -m rql.lab.sizes OUT.json`` writes the measurements (and prints them).
"""

from __future__ import annotations

import json
import pathlib
import sys
import tempfile
import time

TASK = "cube-single-play-singletask-task4-v0"
OBS_DIM, ACTION_DIM = 28, 5


def measure(preset: str | None, states: int = 64, seed: int = 0) -> dict:
    import jax
    import numpy as np

    from rql.agents import build_config, make_agent
    from rql.lab import runlab
    from rql.lab.browser import Browser
    from rql.lab.page import render

    cfg, bcfg = build_config("rql", TASK, preset), build_config("flow-bc", TASK, preset)
    agent, base = make_agent("rql", cfg, OBS_DIM, ACTION_DIM), make_agent("flow-bc", bcfg, OBS_DIM, ACTION_DIM)
    state, b_state = agent.init(jax.random.PRNGKey(seed)), base.init(jax.random.PRNGKey(seed + 1))
    rng = np.random.default_rng(seed)
    D = cfg.horizon * ACTION_DIM
    obs = rng.standard_normal((states, OBS_DIM)).astype(np.float32)
    chunks = rng.uniform(-1, 1, (states, D)).astype(np.float32)
    data = runlab.run_live_data(agent, state, obs, chunks, ("flow-bc baseline", base, b_state), "rql")

    class Scene:  # what live_section reads
        pass

    scene = Scene()
    scene.live, scene.agent = data, agent
    with tempfile.TemporaryDirectory() as d:
        page = render(pathlib.Path(d), "page size", "", [runlab.live_section(scene)], {}, None, data,
                      runlab.LIVE_SCRIPT)
        size = page.stat().st_size
        t0 = time.time()
        with Browser() as b:
            b.open(page, wait=600)
            opened = time.time() - t0
            ms = b.readout("run_samples", "ms")
            live = b.eval("document.body.getAttribute('data-live-figures')")
            errors = b.console_errors()
    return {"preset": preset or "reference", "actor_hidden": list(cfg.actor_hidden_dims),
            "value_hidden": list(cfg.value_hidden_dims), "ensemble": cfg.ensemble, "chunk": D, "obs_dim": OBS_DIM,
            "floats": data["model"]["floats"], "nets": {k: v["params"] for k, v in data["model"]["nets"].items()},
            "page_bytes_without_pictures": size, "open_seconds": round(opened, 1), "ms_per_policy_sample": ms,
            "live_figures": live, "script_errors": errors}


if __name__ == "__main__":
    rows = []
    for preset in ("small", None):
        rows.append(measure(preset))
        print(json.dumps(rows[-1]), flush=True)
    if len(sys.argv) > 1:
        pathlib.Path(sys.argv[1]).write_text(json.dumps(rows, indent=1) + "\n")
