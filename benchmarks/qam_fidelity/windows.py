"""Batch-level differential check: our ``suite`` windows against the QAM suite's own
``Dataset.sample_sequence``, both built from the same raw episodes.

Raw episodes in OGBench's file layout (lengths 3-13, successes that start inside chunks, time-outs,
episode ends inside windows) are loaded by each side's own code (the suite's
``envs/ogbench_utils.load_dataset``, our ``rql.data.loading.ogbench_regular``), then:

1. **Same starts, every field.** For the same start indices (the first three forced to a success
   inside a chunk, a chunk ending on a time-out and a chunk crossing an episode end), every field the
   suite returns equals ours: ``observations`` (our window index 0), ``actions`` (indices ``0..h-1``),
   ``masks``, ``terminals``, ``valid`` (``1 - shifted terminals``), ``rewards`` (the discounted return
   of the valid steps up to each step) and ``next_observations`` at every chunk step (our successor of
   the step, or of the last valid step once invalid; index ``h`` of our window is the last one). The
   same comparison with our ``rql`` windows (clamped indices, the last step's mask, the clamped next
   state) is printed beside it: it differs where the issue said.
2. **Same distribution of starts.** Many draws of the suite's starts and of ours: a chi-square test of
   each histogram against the uniform one over the ``size - h + 1`` possible starts, and a two-sample
   chi-square test between them.

    python benchmarks/qam_fidelity/windows.py --suite PATH [--horizon 5] [--draws 200000]
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

import common  # noqa: E402  (benchmarks/qam_fidelity/common.py)


def our_suite_fields(ours, batch, starts: np.ndarray, h: int, discount: float) -> dict:
    """The suite's fields from our ``suite`` batch (its per-step next observations from our successor)."""
    from rql.agents.base import chunk_action_mask
    from rql.data.device import successor

    term = np.asarray(batch.terminals[:, :h])
    valid = np.asarray(chunk_action_mask(batch, h, 1))
    r = np.asarray(batch.rewards[:, :h]) * discount ** np.arange(h) * valid
    nxt = []
    idx = starts[:, None] + np.arange(h)
    for i in range(h):
        last = np.minimum(i, valid.sum(axis=1).astype(int) - 1)  # the last valid step up to i
        k = idx[np.arange(len(starts)), last]
        is_end = np.asarray(ours.terminals)[k] > 0
        nxt.append(np.asarray(successor(ours, jnp.asarray(k), jnp.asarray(is_end))))
    return {
        "observations": np.asarray(batch.observations[:, 0]),
        "actions": np.asarray(batch.actions[:, :h]),
        "masks": np.asarray(batch.masks[:, :h]),
        "terminals": term,
        "valid": valid,
        "rewards": np.cumsum(r, axis=1),
        "next_observations": np.stack(nxt, axis=1),
    }


def our_rql_fields(batch, h: int, discount: float) -> dict:
    """What the suite methods read from our ``rql`` windows before: the same fields under RQL's windows
    (the last step's mask at every step is not what they read; only index -1 of each field is)."""
    from rql.agents.base import chunk_action_mask, n_step_return

    reward_sum, bootstrap, valid = n_step_return(batch, h, discount)
    valid_steps = np.asarray(chunk_action_mask(batch, h, 1))
    r = np.asarray(batch.rewards[:, :h]) * discount ** np.arange(h) * valid_steps
    return {
        "observations": np.asarray(batch.observations[:, 0]),
        "actions": np.asarray(batch.actions[:, :h]),
        "masks": np.asarray(batch.masks[:, :h]),
        "terminals": np.maximum.accumulate(np.asarray(batch.terminals[:, :h]), axis=1),
        "valid": valid_steps,
        "rewards": np.cumsum(r, axis=1),
        "next_observations": np.asarray(batch.observations[:, 1:h + 1]),
    }


def field_table(suite: dict, ours: dict, valid_last: np.ndarray, label: str) -> bool:
    """Print each field's largest difference over all windows and over valid windows; True if all equal."""
    print(f"\n{label}")
    print(f"| field | shape | largest difference (all windows) | windows that differ | at index -1, valid windows |")
    print("|---|---|---|---|---|")
    ok = True
    for k in ("observations", "actions", "masks", "terminals", "valid", "rewards", "next_observations"):
        a, b = np.asarray(suite[k], np.float32), np.asarray(ours[k], np.float32)
        d = np.abs(a - b)
        per_window = d.reshape(len(d), -1).max(axis=1)
        if a.ndim >= 2 and k != "observations":
            last = np.abs(a[:, -1] - b[:, -1]).reshape(len(d), -1).max(axis=1)
            at_last = f"{float((last * valid_last).max()):.3g}"
        else:
            at_last = f"{float((per_window * valid_last).max()):.3g}"
        ok &= bool(d.max() <= 1e-6)
        print(f"| {k} | {tuple(a.shape)} | {float(d.max()):.3g} | {int((per_window > 1e-6).sum())} / {len(d)} | {at_last} |")
    return ok


def chi_square_uniform(counts: np.ndarray) -> tuple[float, int]:
    exp = counts.sum() / len(counts)
    return float(((counts - exp) ** 2 / exp).sum()), len(counts) - 1


def p_value(stat: float, dof: int) -> float:
    from math import erf, sqrt

    # Wilson-Hilferty: (X/k)^(1/3) is close to normal with mean 1 - 2/(9k), variance 2/(9k).
    z = ((stat / dof) ** (1 / 3) - (1 - 2 / (9 * dof))) / sqrt(2 / (9 * dof))
    return 0.5 * (1 - erf(z / sqrt(2)))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--suite", required=True, help="path of a checkout of the QAM suite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--horizon", type=int, default=5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--draws", type=int, default=200_000)
    p.add_argument("--discount", type=float, default=0.99)
    args = p.parse_args()
    common.load_suite(args.suite)
    h, disc = args.horizon, args.discount
    from rql.data.device import rql_batch_at, suite_batch_at, suite_starts

    raw = common.raw_episodes(args.seed, obs_dim=5, action_dim=3)
    suite_ds, ours = common.suite_dataset(raw), common.our_dataset(raw)
    print(f"raw episodes: {int(raw['terminals'].sum())}, {len(raw['terminals'])} raw rows, "
          f"{suite_ds.size} steps in the suite's layout, {int(ours.size)} in ours; h = {h}")
    starts = common.forced_starts(suite_ds, args.batch, h, args.seed)
    suite = {k: np.asarray(v) for k, v in common.suite_sample(suite_ds, starts, h, disc).items()}
    valid_last = suite["valid"][:, -1]
    ours_suite = our_suite_fields(ours, suite_batch_at(ours, jnp.asarray(starts, jnp.int32), h), starts, h, disc)
    ours_rql = our_rql_fields(rql_batch_at(ours, jnp.asarray(starts, jnp.int32), h), h, disc)
    forced = {k: suite[k][:3] for k in ("masks", "valid")}
    print(f"forced windows (success inside, time-out at the end, crossing an end): masks {forced['masks'].tolist()}, "
          f"valid {forced['valid'].tolist()}")
    ok = field_table(suite, ours_suite, valid_last, f"ours, suite windows, against the suite ({len(starts)} windows)")
    field_table(suite, ours_rql, valid_last, "ours, rql windows (before), against the suite, same starts")

    # The distribution of starts.
    n_starts = suite_ds.size - h + 1
    np.random.seed(args.seed)
    theirs = np.bincount(np.random.randint(n_starts, size=args.draws), minlength=n_starts)
    draw = jax.jit(suite_starts, static_argnums=(2, 3))
    mine = np.bincount(np.asarray(draw(ours, jax.random.PRNGKey(args.seed), args.draws, h)), minlength=n_starts)
    print(f"\nstarts over {args.draws} draws, {n_starts} possible starts (0 .. size - h):")
    for name, c in (("suite", theirs), ("ours", mine)):
        stat, dof = chi_square_uniform(c)
        print(f"  {name}: min {c.min()} max {c.max()} outside range {int(c[n_starts:].sum())}; "
              f"chi-square against uniform {stat:.1f} on {dof} dof, p = {p_value(stat, dof):.3f}")
    pooled = (theirs + mine) / 2
    two = float((((theirs - pooled) ** 2 + (mine - pooled) ** 2) / pooled).sum())
    print(f"  two-sample chi-square {two:.1f} on {n_starts - 1} dof, p = {p_value(two, n_starts - 1):.3f}")
    print("\nsuite windows equal the suite's batch in every field:", "yes" if ok else "NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
