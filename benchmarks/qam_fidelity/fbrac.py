"""Differential check of FBRAC against the QAM suite's ``agents/fbrac.py``.

    python benchmarks/qam_fidelity/fbrac.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2; the suite's parameters are copied
into ours (its target critic moved away from its critic first), both see the same batch and the same
draws (best_of_n 1, then 3 for the critic's next chunk). Compared: critic, BC flow and Q terms, the
total, and the gradient of the total w.r.t. every trained parameter.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import fbrac  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
ALPHA, DISCOUNT = 3.0, 0.99


def check(seed: int, best_of_n: int) -> dict:
    cfg = common.suite_config("fbrac", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, alpha=ALPHA, discount=DISCOUNT, best_of_n=best_of_n)
    import agents.fbrac as suite_fbrac

    suite = suite_fbrac.FBRACAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    ours = fbrac.make(fbrac.FBRACConfig(horizon=H, ensemble=E, flow_steps=F, alpha=ALPHA, discount=DISCOUNT,
                                        best_of_n=best_of_n, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    sp = dict(suite.network.params)
    # The target critic moved away from the critic, so each use of the target is checked.
    sp["modules_target_critic"] = jax.tree_util.tree_map(lambda x: 1.1 * x + 0.01, sp["modules_target_critic"])
    suite = suite.replace(network=suite.network.replace(params=sp))
    params = {"flow": common.map_params(sp["modules_actor_flow"], state["params"]["flow"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"])}
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
        "bc": info["actor/bc_flow_loss"],
        "q": (info["actor/actor_loss"] - info["actor/bc_flow_loss"]) * ALPHA,
        "total": s_total,
    }
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = {"flow": common.map_params(s_grads["modules_actor_flow"], params["flow"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"])}
    row = common.compare(f"fbrac (best_of_n={best_of_n})", ours_terms, suite_terms, o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))
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
