"""Differential check of CGQL, CGQL-M and CGQL-L against the QAM suite's ``agents/cgql.py``.

    python benchmarks/qam_fidelity/cgql.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2, ``inv_temp`` 10 and
``guidance_coef`` 0.1 (the suite's values on most environments), ``noisy_coef`` 0.1. The suite's
parameters are copied into ours; its target networks are first moved away from the online ones (at
creation they are equal, which would hide a target/online mix-up in the guided sampler or the
targets). Both see the same batch and the same draws (recorded from the suite, replayed to ours),
with best_of_n 1 and, for 'simple', also 3. Compared: critic, noisy critic ('mse', 'linex') and
flow terms, the total, and the gradient of the total w.r.t. the actor and critic parameters. A
last row per mode runs ours with the suite's key and no replay: our key splits are the suite's, so
equal keys give equal draws.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import cgql  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
INV_TEMP, GUIDANCE, NOISY, DISCOUNT = 10.0, 0.1, 0.1, 0.99


def perturbed(tree, key, scale=0.05):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def check(seed: int, mode: str, best_of_n: int, replay: bool = True) -> dict:
    cfg = common.suite_config("cgql", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, mode=mode, inv_temp=INV_TEMP, guidance_coef=GUIDANCE,
                              noisy_coef=NOISY, discount=DISCOUNT, best_of_n=best_of_n)
    import agents.cgql as suite_cgql

    suite = suite_cgql.CGQLAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    sp = dict(suite.network.params)
    k_a, k_c = jax.random.split(jax.random.PRNGKey(seed + 100))
    sp["modules_target_actor"] = perturbed(sp["modules_target_actor"], k_a)
    sp["modules_target_critic"] = perturbed(sp["modules_target_critic"], k_c)
    suite = suite.replace(network=suite.network.replace(params=sp))

    ours = cgql.make(cgql.CGQLConfig(horizon=H, ensemble=E, flow_steps=F, mode=mode, inv_temp=INV_TEMP,
                                     guidance_coef=GUIDANCE, noisy_coef=NOISY, discount=DISCOUNT,
                                     best_of_n=best_of_n, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    params = {"actor": common.map_params(sp["modules_actor"], state["params"]["actor"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"])}
    state = {**state, "params": params,
             "target_actor": common.map_params(sp["modules_target_actor"], state["target_actor"]),
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
            assert not tape.unused(), tape.unused()
        else:
            (o_total, metrics), o_grads = jax.value_and_grad(ours_loss, has_aux=True)(params)
    suite_terms = {"critic": info["critic/critic_loss"], "bc": info["actor/flow_loss"], "total": s_total}
    if mode != "simple":
        suite_terms["noisy_critic"] = info["critic/noisy_critic_loss"]
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = {"actor": common.map_params(s_grads["modules_actor"], params["actor"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"])}
    name = {"simple": "cgql", "mse": "cgql-m", "linex": "cgql-l"}[mode]
    how = "replayed draws" if replay else "same key"
    row = common.compare(f"{name} (best_of_n={best_of_n}, {how})", ours_terms, suite_terms, o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))
    if mode == "linex":
        # The share of noisy-critic entries on the linear tail (both branches should be exercised),
        # from the suite's recorded draws: the first uniform (B, 1) and normal (B, h A) of the update.
        t = next(v for n, s, v in tape.draws if n == "uniform" and s == (B, 1))
        z = next(v for n, s, v in tape.draws if n == "normal" and s == (B, H * ACT))
        a = batch.actions[:, :H].reshape(B, -1)
        s0, t1 = batch.observations[:, 0], jnp.ones((B, 1))
        y = ours.extras["critic"](state["target_critic"], s0, a, t1)
        q_t = ours.extras["critic"](params["critic"], s0, (1 - t) * z + t * a, t)
        tail = float(jnp.mean((y - q_t) * INV_TEMP > cfg["isd_clip"]))
        row["note"] = (f"linear tail on {tail:.0%} of entries; exp_bias ours "
                       f"{float(metrics['value/exp_bias']):.4g} suite {float(info['critic/exp_bias']):.4g}")
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = []
    for mode in cgql.MODES:
        rows.append(check(args.seed, mode, 1))
        if mode == "simple":
            rows.append(check(args.seed, mode, 3))
        rows.append(check(args.seed, mode, 1, replay=False))
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()},
              f"largest |gradient| {r['grad_scale']:.2e}", r.get("note", ""))


if __name__ == "__main__":
    main()
