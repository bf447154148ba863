"""Differential check of QAM, QAM-E and QAM-F against the QAM suite's ``agents/qam.py``.

    python benchmarks/qam_fidelity/qam.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 flow steps, chunks of 2, ``inv_temp`` 3. The suite's
parameters are copied into ours (``actor_slow`` -> base flow, ``actor_fast`` -> fine flow, critic,
``one_step_actor``, ``edit_actor`` and ``edit_alpha``; the suite's ``target_actor_fast`` is never
used and has no counterpart). Its target critic and target base flow are first moved away from the
online ones (equal at creation, which would hide a target/online mix-up in the adjoint or the TD
target). Both see the same batch and the same draws (recorded from the suite, replayed to ours).
Rows: plain QAM, best_of_n 3, residual, no target networks in the adjoint (``target_actor`` and
``use_target_grad`` off, ``clip_adj`` off), QAM-E (``edit_scale`` 0.5), QAM-F (``fql_alpha`` 30), and
QAM and QAM-F with the suite's key and no replay (our key splits are the suite's). Not in
``common.py``: the suite's edit policy (TFP) draws its normals in another layout, moved to ours
before the replay (``common.event_last``), and the edit policy is mapped by ``common.map_tanh_gaussian``.

Compared: every loss term the suite reports, the total, and the gradient of the total w.r.t. every
trained network; then the actions both sample from the same key.
"""

from __future__ import annotations

import contextlib
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import qam  # noqa: E402

OBS, ACT, H, B, E, F = 5, 2, 2, 16, 2, 4
INV_TEMP, DISCOUNT = 3.0, 0.99

# our loss term -> the suite's info key
TERMS = {
    "critic": "critic/critic_loss",
    "bc": "actor/flow_loss",
    "adjoint": "actor/adj_loss",
    "distill": "actor/fql_distill_loss",
    "q": "actor/fql_q_loss",
    "edit_q": "actor/edit_q_loss",
    "edit_entropy": "actor/edit_entropy_loss",
    "edit_alpha": "actor/edit_alpha_loss",
}
# our parameter -> the suite's module
MODULES = {"critic": "critic", "base": "actor_slow", "fine": "actor_fast", "onestep": "one_step_actor"}


def perturbed(tree, key, scale=0.05):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def to_ours(sp, state):
    """Our state with the suite's parameters ``sp`` (its ``network.params``)."""
    params = {k: common.map_params(sp[f"modules_{m}"], state["params"][k])
              for k, m in MODULES.items() if k in state["params"]}
    if "edit" in state["params"]:
        params["edit"] = common.map_tanh_gaussian(sp["modules_edit_actor"], state["params"]["edit"])
        params["log_alpha"] = jnp.asarray(sp["modules_edit_alpha"]["log_value"], jnp.float32)
    return {**state, "params": params,
            "target_base": common.map_params(sp["modules_target_actor_slow"], state["target_base"]),
            "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}


def check(seed: int, label: str, replay: bool = True, **fields) -> dict:
    fields = {"inv_temp": INV_TEMP, **fields}
    cfg = common.suite_config("qam", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              flow_steps=F, discount=DISCOUNT, **fields)
    import agents.qam as suite_qam

    suite = suite_qam.QAMAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    sp = dict(suite.network.params)
    k_s, k_c = jax.random.split(jax.random.PRNGKey(seed + 100))
    sp["modules_target_actor_slow"] = perturbed(sp["modules_target_actor_slow"], k_s)
    sp["modules_target_critic"] = perturbed(sp["modules_target_critic"], k_c)
    suite = suite.replace(network=suite.network.replace(params=sp))

    ours = qam.make(qam.QAMConfig(horizon=H, ensemble=E, flow_steps=F, discount=DISCOUNT, **common.SMALL, **fields),
                    OBS, ACT)
    state = to_ours(sp, ours.init(jax.random.PRNGKey(seed)))
    params = state["params"]

    batch, suite_batch = common.batches(seed, B, H, OBS, ACT, DISCOUNT)
    key = jax.random.PRNGKey(seed + 1)
    tape = common.Tape()
    with jax.disable_jit():
        with tape.record():
            (s_total, info), s_grads = jax.value_and_grad(
                lambda p: suite.total_loss(suite_batch, p, rng=key), has_aux=True)(sp)
        common.event_last(tape, H * ACT)
        ours_loss = lambda p: ours.extras["losses"](p, state, batch, key)  # noqa: E731
        if replay:
            with tape.replay():
                (o_total, metrics), o_grads = jax.value_and_grad(ours_loss, has_aux=True)(params)
            assert not tape.unused(), tape.unused()
        else:
            (o_total, metrics), o_grads = jax.value_and_grad(ours_loss, has_aux=True)(params)

    suite_terms = {k: info[v] for k, v in TERMS.items() if v in info}
    suite_terms["total"] = s_total
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = to_ours(s_grads, {**state, "target_base": params["base"], "target_critic": params["critic"]})
    row = common.compare(f"{label} ({'replayed draws' if replay else 'same key'})", ours_terms, suite_terms,
                         o_grads, suite_grads["params"])
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads["params"]))

    # Acting from the same key, with the suite's draws replayed to ours (without replay the edit's
    # noise differs: TFP salts the key and draws in its own layout).
    obs = batch.observations[:, 0]
    act_tape = common.Tape()
    with jax.disable_jit():
        with act_tape.record():
            a_suite = np.asarray(suite.sample_actions(obs, key))
        common.event_last(act_tape, H * ACT)
        with act_tape.replay() if replay else contextlib.nullcontext():
            a_ours = np.asarray(ours.act(state, obs, key)).reshape(B, -1)
    row["note"] = f"sampled actions max diff {np.max(np.abs(a_suite - a_ours)):.1e}"
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    s = args.seed
    rows = [
        check(s, "qam"),
        check(s, "qam best_of_n=3", best_of_n=3),
        check(s, "qam residual", residual=True),
        check(s, "qam online nets, no clip", target_actor=False, use_target_grad=False, clip_adj=False),
        check(s, "qam-e edit_scale=0.5", edit_scale=0.5),
        check(s, "qam-f fql_alpha=30", fql_alpha=30.0),
        check(s, "qam", replay=False),
        check(s, "qam-f fql_alpha=30", replay=False, fql_alpha=30.0),
    ]
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()},
              f"largest |gradient| {r['grad_scale']:.2e};", r["note"])


if __name__ == "__main__":
    main()
