"""Differential check of FQL, IFQL and ReBRAC against the QAM suite's ``agents/fql.py``, ``ifql.py``
and ``rebrac.py``.

    python benchmarks/qam_fidelity/fql_ifql_rebrac.py --suite /path/to/qam

Each method at 2x32 networks, 3 critics, 4 flow steps, chunks of 2, with the suite's aggregation
(``mean - rho * std``, rho 0.5) and its loss conventions (our default settings); the suite's
parameters are copied into ours, both see the same batch (with episode ends inside) and the same
draws. Compared: every loss term the suite reports, the total, and the gradient of the total w.r.t.
every trained parameter. FQL is checked with best_of_n 1 and 3 (the critic's next chunk is the best
of 3 one-step samples under the current critic); ReBRAC with the actor's loss on the update, as the
suite's training loop adds it on every update.
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import fql, ifql, rebrac  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 3, 4
DISCOUNT, RHO = 0.99, 0.5


def run_both(seed, suite, suite_loss, ours, state, params, batch):
    """Loss values and gradients of both sides on the same draws (the suite records, ours replays)."""
    tape = common.Tape()
    with jax.disable_jit():
        with tape.record():
            (s_total, info), s_grads = jax.value_and_grad(suite_loss, has_aux=True)(suite.network.params)
        with tape.replay():
            (o_total, metrics), o_grads = jax.value_and_grad(
                lambda p: ours.extras["losses"](p, state, batch, jax.random.PRNGKey(0)), has_aux=True)(params)
    assert not tape.unused(), tape.unused()
    return s_total, info, s_grads, metrics, o_grads


def mapped(suite_tree, ours_tree, names):
    """Our ``{ours_name: sub-tree}`` with the suite's ``modules_<suite_name>`` leaves."""
    return {o: common.map_params(suite_tree[f"modules_{s}"], ours_tree[o]) for o, s in names.items()}


def finish(method, metrics, suite_terms, o_grads, suite_grads, scale=None):
    scale = scale or {}
    ours_terms = {k: metrics[f"loss/{k}"] * scale.get(k, 1.0) for k in suite_terms}
    row = common.compare(method, ours_terms, suite_terms, o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))
    return row


def check_fql(seed: int, best_of_n: int) -> dict:
    alpha = 3.0
    cfg = common.suite_config("fql", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E, rho=RHO,
                              flow_steps=F, alpha=alpha, discount=DISCOUNT, best_of_n=best_of_n)
    import agents.fql as suite_fql

    suite = suite_fql.FQLAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    ours = fql.make(fql.FQLConfig(horizon=H, ensemble=E, rho=RHO, flow_steps=F, alpha=alpha, discount=DISCOUNT,
                                  best_of_n=best_of_n, **common.SMALL), OBS, ACT)
    names = {"flow": "actor_bc_flow", "onestep": "actor_onestep_flow", "critic": "critic"}
    state = ours.init(jax.random.PRNGKey(seed))
    sp = suite.network.params
    params = mapped(sp, state["params"], names)
    state = {**state, "params": params,
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}
    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    s_total, info, s_grads, metrics, o_grads = run_both(
        seed, suite, lambda p: suite.total_loss(suite_batch, p, rng=jax.random.PRNGKey(seed + 1)),
        ours, state, params, batch)
    bc, distill = info["actor/bc_flow_loss"], info["actor/distill_loss"]
    suite_terms = {
        "critic": info["critic/critic_loss"],
        "bc": bc,
        "distill": distill,
        "q": info["actor/actor_loss"] - bc - alpha * distill,
        "total": s_total,
    }
    return finish(f"fql (best_of_n={best_of_n})", metrics, suite_terms, o_grads, mapped(s_grads, params, names))


def check_ifql(seed: int) -> dict:
    kappa = 0.7
    cfg = common.suite_config("ifql", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E, rho=RHO,
                              flow_steps=F, kappa=kappa, discount=DISCOUNT)
    import agents.ifql as suite_ifql

    suite = suite_ifql.IFQLAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    ours = ifql.make(ifql.IFQLConfig(horizon=H, ensemble=E, rho=RHO, flow_steps=F, kappa=kappa, discount=DISCOUNT,
                                     **common.SMALL), OBS, ACT)
    names = {"flow": "actor_flow", "value": "value", "critic": "critic"}
    state = ours.init(jax.random.PRNGKey(seed))
    sp = suite.network.params
    params = mapped(sp, state["params"], names)
    state = {**state, "params": params,
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}
    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    s_total, info, s_grads, metrics, o_grads = run_both(
        seed, suite, lambda p: suite.total_loss(suite_batch, p, rng=jax.random.PRNGKey(seed + 1)),
        ours, state, params, batch)
    suite_terms = {
        "value": info["value/value_loss"],
        "critic": info["critic/critic_loss"],
        "bc": info["actor/actor_loss"],
        "total": s_total,
    }
    return finish("ifql", metrics, suite_terms, o_grads, mapped(s_grads, params, names))


def actor_tree(suite_actor, ours_actor):
    """The suite's actor (hidden MLP ``actor_net`` + output layer ``mean_net``) in our layout (one MLP
    whose last Dense is the output layer)."""
    mlp = ours_actor["params"]["MLP_0"]
    last = f"Dense_{len(mlp) - 1}"
    hidden = common.map_params(suite_actor["actor_net"], {k: v for k, v in mlp.items() if k != last})
    out = {k: jnp.asarray(suite_actor["mean_net"][k], mlp[last][k].dtype) for k in mlp[last]}
    assert all(out[k].shape == mlp[last][k].shape for k in out)
    return {"params": {"MLP_0": {**hidden, last: out}}}


def check_rebrac(seed: int, actor_noise: float) -> dict:
    alpha_actor = 0.3
    cfg = common.suite_config("rebrac", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E, rho=RHO,
                              alpha_actor=alpha_actor, actor_noise=actor_noise, discount=DISCOUNT)
    import agents.rebrac as suite_rebrac

    suite = suite_rebrac.ReBRACAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    ours = rebrac.make(rebrac.ReBRACConfig(horizon=H, ensemble=E, rho=RHO, alpha_actor=alpha_actor,
                                           actor_noise=actor_noise, discount=DISCOUNT, **common.SMALL), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    sp = suite.network.params
    params = {"actor": actor_tree(sp["modules_actor"], state["params"]["actor"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"])}
    state = {**state, "params": params,
             "target_actor": actor_tree(sp["modules_target_actor"], state["target_actor"]),
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}
    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    s_total, info, s_grads, metrics, o_grads = run_both(
        seed, suite, lambda p: suite.total_loss(suite_batch, p, rng=jax.random.PRNGKey(seed + 1)),
        ours, state, params, batch)
    suite_terms = {
        "critic": info["critic/critic_loss"],
        "q": info["actor/actor_loss"],
        "bc": info["actor/bc_loss"],
        "total": s_total,
    }
    suite_grads = {"actor": actor_tree(s_grads["modules_actor"], params["actor"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"])}
    return finish(f"rebrac (actor_noise={actor_noise})", metrics, suite_terms, o_grads, suite_grads,
                  scale={"bc": alpha_actor})


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = [check_fql(args.seed, 1), check_fql(args.seed, 3), check_ifql(args.seed),
            check_rebrac(args.seed, 0.0), check_rebrac(args.seed, 0.2)]
    common.print_table(rows)
    for r in rows:
        per_term = {k: f"{v:.1e}" for k, v in r["per_term"].items()}
        print(r["method"], per_term, f"largest |gradient| {r['grad_scale']:.2e}")


if __name__ == "__main__":
    main()
