"""Differential check of BAM against the QAM suite's ``agents/bam.py``.

    python benchmarks/qam_fidelity/bam.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2, ``inv_temp`` 10 (the suite's
value on most environments). The suite's parameters are copied into ours (policy ``actor_fast``,
behaviour flow ``actor_slow``, critic, by layer; the suite's ``target_actor_fast`` is never used and
has no counterpart); its target critic and target behaviour flow are first moved away from the
online ones (at creation they are equal, which would hide a target/online mix-up in the SDE's
reference drift or the TD target). Both see the same batch and the same draws (recorded from the
suite, replayed to ours), with best_of_n 1 and 3, and ``residual`` off and on; a last row runs ours
with the suite's key and no replay (our key splits are the suite's).

Compared: critic, flow matching, the adjoint objective (the suite's ``bam_loss``), its path KL (the
suite's ``bc_loss``), the total, and the gradient of the total w.r.t. every trained network.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import bam  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
INV_TEMP, DISCOUNT = 10.0, 0.99


def perturbed(tree, key, scale=0.05):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def check(seed: int, best_of_n: int = 1, residual: bool = False, replay: bool = True) -> dict:
    cfg = common.suite_config("bam", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, inv_temp=INV_TEMP, discount=DISCOUNT, best_of_n=best_of_n,
                              residual=residual)
    import agents.bam as suite_bam

    suite = suite_bam.BAMAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    sp = dict(suite.network.params)
    k_s, k_c = jax.random.split(jax.random.PRNGKey(seed + 100))
    sp["modules_target_actor_slow"] = perturbed(sp["modules_target_actor_slow"], k_s)
    sp["modules_target_critic"] = perturbed(sp["modules_target_critic"], k_c)
    suite = suite.replace(network=suite.network.replace(params=sp))

    ours = bam.make(bam.BAMConfig(horizon=H, ensemble=E, flow_steps=F, inv_temp=INV_TEMP, discount=DISCOUNT,
                                  best_of_n=best_of_n, residual=residual, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    params = {"fast": common.map_params(sp["modules_actor_fast"], state["params"]["fast"]),
              "slow": common.map_params(sp["modules_actor_slow"], state["params"]["slow"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"])}
    state = {**state, "params": params,
             "target_slow": common.map_params(sp["modules_target_actor_slow"], state["target_slow"]),
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}

    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    key = jax.random.PRNGKey(seed + 1)
    tape = common.Tape()
    with jax.disable_jit():
        with tape.record():
            (s_total, info), s_grads = jax.value_and_grad(
                lambda p: suite.total_loss(suite_batch, p, rng=key), has_aux=True)(sp)
        ours_loss = lambda p: ours.extras["losses"](p, state, batch, key)  # noqa: E731
        if replay:
            with tape.replay():
                (o_total, metrics), o_grads = jax.value_and_grad(ours_loss, has_aux=True)(params)
            # The suite draws a noise for the SDE's last step too, which that (deterministic) step
            # does not use; ours does not draw it.
            assert tape.unused() == [("normal", (B, H * ACT))], tape.unused()
        else:
            (o_total, metrics), o_grads = jax.value_and_grad(ours_loss, has_aux=True)(params)

    suite_terms = {"critic": info["critic/critic_loss"], "flow": info["actor/flow_loss"],
                   "adjoint": info["actor/bam_loss"], "kl": info["actor/bc_loss"], "total": s_total}
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = {"fast": common.map_params(s_grads["modules_actor_fast"], params["fast"]),
                   "slow": common.map_params(s_grads["modules_actor_slow"], params["slow"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"])}
    how = "replayed draws" if replay else "same key"
    row = common.compare(f"bam (best_of_n={best_of_n}, residual={residual}, {how})", ours_terms, suite_terms,
                         o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))

    # Acting from the same key.
    obs = batch.observations[:, 0]
    a_suite = np.asarray(suite.sample_actions(obs, key))
    a_ours = np.asarray(ours.act(state, obs, key)).reshape(B, -1)
    row["note"] = f"sampled actions max diff {np.max(np.abs(a_suite - a_ours)):.1e}"
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = [check(args.seed), check(args.seed, best_of_n=3), check(args.seed, residual=True),
            check(args.seed, replay=False)]
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()},
              f"largest |gradient| {r['grad_scale']:.2e};", r["note"])


if __name__ == "__main__":
    main()
