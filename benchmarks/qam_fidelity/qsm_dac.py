"""Differential check of QSM and DAC against the QAM suite's ``agents/dcgql.py``.

    python benchmarks/qam_fidelity/qsm_dac.py --suite /path/to/qam

Both sides at 2x32 networks, 2 critics, 4 denoising steps (vp schedule), chunks of 2, with each
method's published sampler clipping: QSM ``inv_temp`` 10, ``alpha`` 30; DAC ``alpha`` 1. The
suite's parameters are copied into ours (its time features, condition MLP and noise MLP by hand, the
critic by layer); its target critic is first moved away from the online one (at creation they are
equal, which would hide a target/online mix-up in the action gradient or the TD target). Both see
the same batch and the same draws (recorded from the suite, replayed to ours); a last row per method
runs ours with the suite's key and no replay (our key splits are the suite's).

Compared: critic, the QSM/DAC term, the DDPM BC term (the suite does not report it: derived as
``(total - critic - actor) / alpha``), the total, and the gradient of the total w.r.t. the actor and
critic parameters. One difference is deliberate: the suite raises each window's actor losses to the
power ``valid`` (1 for an invalid window instead of 0); ours weights by ``valid``. The gradients are
the same; the suite's BC and QSM/DAC terms are higher by (invalid windows) / B, which is subtracted
from the suite's values before comparing (the amount is printed).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from rql.agents import qsm_dac  # noqa: E402

OBS, ACT, H, B, E, T = 5, 2, 2, 16, 2, 4
DISCOUNT = 0.99
SETTINGS = {
    "qsm": dict(actor_loss_type="qsm", inv_temp=10.0, alpha=30.0, clip_sampler_before=False, clip_sampler_after=True),
    "dac": dict(actor_loss_type="dac", alpha=1.0, clip_sampler_before=True, clip_sampler_after=False),
}


def perturbed(tree, key, scale=0.05):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return treedef.unflatten([x + scale * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def map_actor(suite_actor, ours_actor):
    """The suite's DDPM module (``FourierFeatures_0``, condition ``MLP_0``, noise ``MLP_1``) into our
    ``NoisePredictor`` (``time``, ``cond``, ``net``)."""
    mine = ours_actor["params"]
    kernel = suite_actor["FourierFeatures_0"]["kernel"]
    assert kernel.shape == mine["time"]["kernel"].shape
    return {"params": {
        "time": {"kernel": jnp.asarray(kernel)},
        "cond": common.map_params(suite_actor["MLP_0"], mine["cond"]),
        "net": common.map_params(suite_actor["MLP_1"], mine["net"]),
    }}


def check(seed: int, method: str, replay: bool = True) -> dict:
    s = SETTINGS[method]
    cfg = common.suite_config("dcgql", **common.SMALL, horizon_length=H, action_chunking=True, num_qs=E,
                              diffusion_steps=T, discount=DISCOUNT, **s)
    import agents.dcgql as suite_dcgql

    suite = suite_dcgql.DCGQLAgent.create(seed, jnp.zeros(OBS), jnp.zeros(ACT), cfg)
    sp = dict(suite.network.params)
    sp["modules_target_critic"] = perturbed(sp["modules_target_critic"], jax.random.PRNGKey(seed + 100))
    suite = suite.replace(network=suite.network.replace(params=sp))

    config_cls = {"qsm": qsm_dac.QSMConfig, "dac": qsm_dac.DACConfig}[method]
    ours = qsm_dac.make(config_cls(horizon=H, ensemble=E, flow_steps=T, discount=DISCOUNT, **common.SMALL, **s), OBS, ACT)
    state = ours.init(jax.random.PRNGKey(seed))
    params = {"actor": map_actor(sp["modules_actor"], state["params"]["actor"]),
              "critic": common.map_params(sp["modules_critic"], state["params"]["critic"])}
    state = {**state, "params": params,
             "target_critic": common.map_params(sp["modules_target_critic"], state["target_critic"])}
    # The schedule: the suite's betas/alphas/alpha_hats against ours.
    sched = ours.extras["schedule"]
    sched_diff = max(float(jnp.max(jnp.abs(sched[a] - getattr(suite, b))))
                     for a, b in (("betas", "betas"), ("alphas", "alphas"), ("abar", "alpha_hats")))

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

    invalid = float(jnp.sum(1.0 - suite_batch["valid"][:, -1])) / B
    critic, actor = float(info["critic/critic_loss"]), float(info["actor/actor_loss"])
    bc = (float(s_total) - critic - actor) / s["alpha"]
    suite_terms = {"critic": critic, "actor": actor - invalid, "bc": bc - invalid,
                   "total": float(s_total) - invalid * (1.0 + s["alpha"])}
    ours_terms = {k: metrics[f"loss/{k}"] for k in suite_terms}
    suite_grads = {"actor": map_actor(s_grads["modules_actor"], params["actor"]),
                   "critic": common.map_params(s_grads["modules_critic"], params["critic"])}
    how = "replayed draws" if replay else "same key"
    row = common.compare(f"{method} ({how})", ours_terms, suite_terms, o_grads, suite_grads)
    row["grad_scale"] = max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(suite_grads))
    row["note"] = f"invalid windows {invalid:.4f} of the batch (subtracted per actor term); schedule max diff {sched_diff:.1e}"

    # Acting: the sampler from the same key, in both (the suite's sample_actions has no final clip;
    # with either published setting its output is already inside [-1, 1]).
    obs = batch.observations[:, 0]
    a_suite = np.asarray(suite.sample_actions(obs, key))
    a_ours = np.asarray(ours.act(state, obs, key)).reshape(B, -1)
    row["note"] += f"; sampled actions max diff {np.max(np.abs(a_suite - a_ours)):.1e}"
    return row


def main():
    args = common.parse_args(__doc__.splitlines()[0])
    common.load_suite(args.suite)
    rows = []
    for method in ("qsm", "dac"):
        rows.append(check(args.seed, method))
        rows.append(check(args.seed, method, replay=False))
    common.print_table(rows)
    for r in rows:
        print(r["method"], {k: f"{v:.1e}" for k, v in r["per_term"].items()},
              f"largest |gradient| {r['grad_scale']:.2e};", r["note"])


if __name__ == "__main__":
    main()
