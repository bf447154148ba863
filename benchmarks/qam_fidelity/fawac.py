"""Differential check of FAWAC against the QAM suite's ``agents/fawac.py``.

    python benchmarks/qam_fidelity/fawac.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2; the suite's parameters are copied
into ours (its target critic moved away from its critic first), both see the same batch and the same
draws; inv_temp 0.8 (the weights spread) and 1e3 (some reach the cap of 100). Compared: critic,
value and weighted flow-matching terms, the total, and the gradient of the total w.r.t. every
trained parameter.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import fawac  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
DISCOUNT = 0.99


def check(seed: int, inv_temp: float) -> dict:
    cfg = common.suite_config("fawac", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, inv_temp=inv_temp, discount=DISCOUNT)
    import agents.fawac as suite_fawac

    suite = suite_fawac.FAWACAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    ours = fawac.make(fawac.FAWACConfig(horizon=H, ensemble=E, flow_steps=F, inv_temp=inv_temp, discount=DISCOUNT,
                                        **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    sp = dict(suite.network.params)
    # The target critic moved away from the critic, so each use of the target is checked.
    sp["modules_target_critic"] = jax.tree_util.tree_map(lambda x: 1.1 * x + 0.01, sp["modules_target_critic"])
    suite = suite.replace(network=suite.network.replace(params=sp))
    params = {"flow": common.map_params(sp["modules_actor"], state["params"]["flow"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"]),
              "value": common.map_params(sp["modules_value"], state["params"]["value"])}
    state = {**state, "params": params, "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}

    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    tape = common.Tape()
    with jax.disable_jit():
        with tape.record():
            (s_total, info), s_grads = jax.value_and_grad(
                lambda p: suite.total_loss(suite_batch, p, rng=jax.random.PRNGKey(seed + 1)), has_aux=True)(sp)
        with tape.replay():
            (o_total, metrics), o_grads = jax.value_and_grad(
                lambda p: ours.extras["losses"](p, state, batch, jax.random.PRNGKey(0)), has_aux=True)(params)
    assert not tape.unused(), tape.unused()
    suite_terms = {
        "critic": info["critic/critic_loss"],
        "value": info["critic/value_loss"],
        "actor": info["actor/actor_loss"],
        "total": s_total,
    }
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = {"flow": common.map_params(s_grads["modules_actor"], params["flow"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"]),
                   "value": common.map_params(s_grads["modules_value"], params["value"])}
    row = common.compare(f"fawac (inv_temp={inv_temp:g})", ours_terms, suite_terms, o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))
    row["method"] += f", largest weight {float(metrics['actor/weight_max']):.3g}"
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = [check(args.seed, 0.8), check(args.seed, 1e3)]
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()}, f"largest |gradient| {r['grad_scale']:.2e}")


if __name__ == "__main__":
    main()
