"""Differential check of FEdit against the QAM suite's ``agents/fedit.py``.

    python benchmarks/qam_fidelity/fedit.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2, edit_scale 0.3; the suite's
parameters are copied into ours (its target critic moved away from its critic first, so the two
are told apart), both see the same batch and the same draws (best_of_n 1, then 3). Compared: critic,
BC flow, edit Q, edit entropy and temperature terms, the total, and the gradient of the total w.r.t.
every trained parameter.

Two pieces this needs beyond ``common``: the suite's edit policy (tensorflow-probability) draws its
Gaussian noise event-major, ``(D, *batch)``, which ``common.event_last`` turns into our ``(*batch, D)``
before replay; and its output heads have their own names, mapped by ``common.map_tanh_gaussian``.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import fedit  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
D = H * ACT
EDIT_SCALE, DISCOUNT = 0.3, 0.99


def moved(tree, scale=1.1, shift=0.01):
    return jax.tree_util.tree_map(lambda x: x * scale + shift, tree)


def check(seed: int, best_of_n: int) -> dict:
    cfg = common.suite_config("fedit", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, edit_scale=EDIT_SCALE, discount=DISCOUNT, best_of_n=best_of_n)
    import agents.fedit as suite_fedit

    suite = suite_fedit.FEditAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    sp = dict(suite.network.params)
    sp["modules_target_critic"] = moved(sp["modules_target_critic"])
    sp["modules_alpha"] = {"log_value": jnp.asarray(-0.7)}  # alpha 0.5, so alpha's factor is checked
    suite = suite.replace(network=suite.network.replace(params=sp))

    ours = fedit.make(fedit.FEditConfig(horizon=H, ensemble=E, flow_steps=F, edit_scale=EDIT_SCALE, discount=DISCOUNT,
                                        best_of_n=best_of_n, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))

    def to_ours(tree):
        p = state["params"]
        return {"flow": common.map_params(tree["modules_actor_bc_flow"], p["flow"]),
                "edit": common.map_tanh_gaussian(tree["modules_edit_actor"], p["edit"]),
                "critic": common.map_params(tree["modules_critic"], p["critic"]),
                "log_alpha": jnp.asarray(tree["modules_alpha"]["log_value"])}

    params = to_ours(sp)
    state = {**state, "params": params, "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}

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
        "bc": info["actor/bc_flow_loss"],
        "edit_q": info["actor/edit_q_loss"],
        "edit_entropy": info["actor/edit_entropy_loss"],
        "alpha": info["actor/edit_alpha_loss"],
        "total": s_total,
    }
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    row = common.compare(f"fedit (best_of_n={best_of_n})", ours_terms, suite_terms, o_grads, to_ours(s_grads))
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
