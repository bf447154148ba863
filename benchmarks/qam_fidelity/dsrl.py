"""Differential check of DSRL against the QAM suite's ``agents/dsrl.py``.

    python benchmarks/qam_fidelity/dsrl.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2, noise_scale 0.8; the suite's
parameters are copied into ours (its target critic and target flow moved away from the trained
ones first, so each use of a target is checked), both see the same batch and the same draws
(best_of_n 1, then 3). Compared: critic, distillation, BC flow, actor and temperature terms, the
total, and the gradient of the total w.r.t. every trained parameter. The suite's noise actor draws
event-major and has named heads: handled as in ``fedit.py``.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from fedit import moved  # noqa: E402

from rql.agents import dsrl  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
D = H * ACT
NOISE_SCALE, DISCOUNT = 0.8, 0.99


def check(seed: int, best_of_n: int) -> dict:
    cfg = common.suite_config("dsrl", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, noise_scale=NOISE_SCALE, discount=DISCOUNT, best_of_n=best_of_n)
    import agents.dsrl as suite_dsrl

    suite = suite_dsrl.DSRLAgent.create(seed, jnp.zeros((1, OBS)), jnp.zeros((1, ACT)), cfg)
    sp = dict(suite.network.params)
    sp["modules_target_critic"] = moved(sp["modules_target_critic"])
    sp["modules_target_actor_bc_flow"] = moved(sp["modules_target_actor_bc_flow"])
    sp["modules_alpha"] = {"log_value": jnp.asarray(-0.7)}
    suite = suite.replace(network=suite.network.replace(params=sp))

    ours = dsrl.make(dsrl.DSRLConfig(horizon=H, ensemble=E, flow_steps=F, noise_scale=NOISE_SCALE, discount=DISCOUNT,
                                     best_of_n=best_of_n, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))

    def to_ours(tree):
        p = state["params"]
        return {"flow": common.map_params(tree["modules_actor_bc_flow"], p["flow"]),
                "actor": common.map_tanh_gaussian(tree["modules_actor"], p["actor"]),
                "critic": common.map_params(tree["modules_critic"], p["critic"]),
                "z_critic": common.map_params(tree["modules_z_critic"], p["z_critic"]),
                "log_alpha": jnp.asarray(tree["modules_alpha"]["log_value"])}

    params = to_ours(sp)
    state = {**state, "params": params,
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"]),
             "target_flow": common.map_params(sp["modules_target_actor_bc_flow"], state["target_flow"])}

    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    tape = common.Tape()
    with jax.disable_jit():
        with tape.record():
            (s_total, info), s_grads = jax.value_and_grad(
                lambda p: suite.total_loss(suite_batch, p, rng=jax.random.PRNGKey(seed + 1)), has_aux=True)(sp)
        common.event_last(tape, D)
        with tape.replay():
            (o_total, metrics), o_grads = jax.value_and_grad(
                lambda p: ours.extras["losses"](p, state, batch, jax.random.PRNGKey(0)), has_aux=True)(params)
    assert not tape.unused(), tape.unused()
    suite_terms = {
        "critic": info["critic/critic_loss"],
        "distill": info["critic/distill_loss"],
        "bc": info["actor/flow_loss"],
        "actor": info["actor/actor_loss"],
        "alpha": info["actor/alpha_loss"],
        "total": s_total,
    }
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    row = common.compare(f"dsrl (best_of_n={best_of_n})", ours_terms, suite_terms, o_grads, to_ours(s_grads))
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(o_grads))
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = [check(args.seed, 1), check(args.seed, 3)]
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()}, f"largest |gradient| {r['grad_scale']:.2e}")


if __name__ == "__main__":
    main()
