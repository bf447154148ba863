"""Pixels: training speed and peak memory of ours against the FQL codebase's own agent, same visual settings.

    python benchmarks/pixels_fql.py /path/to/fql-checkout [--encoders impala_small,impala] [--updates 3]
        [--frames 10000] [--impls fql-ref,fql,rql,fql-small,rql-small] [--modes update,dispatch,scan]
        [--out benchmarks/results/pixels_fql.json]

``/path/to/fql-checkout`` is a checkout of the FQL codebase (github seohongpark/fql), used as it is:
its ``agents/fql.py`` agent and ``utils/datasets.py`` dataset are imported from there, nothing of it is
copied here. It needs ``ml_collections`` and ``distrax`` importable (both are in the development venv).

Settings: the FQL codebase's visual commands (``--agent.encoder=impala_small|impala --p_aug=0.5
--frame_stack=3``, its get_config: batch 256, 4x512 actor and critic, critic layer norm, 2 critics,
10 flow steps, no action chunks). Synthetic data: ``--frames`` frames 64x64x3 uint8 in episodes of 1000
steps, 5-dimensional actions (the cube tasks').

One configuration per process (peak RSS is per process), one after the other:

``fql-ref``
    the FQL codebase: its dataset laid out as its ``main.py`` does (the dataset with ``next_observations``
    as OGBench's loader makes it, copied into its replay buffer), ``dataset.sample(256)`` (host-side frame
    stacking and random crop) then ``agent.update(batch)``, as its training loop; timed as that loop
    (``updates_per_s``) and as ``agent.update`` alone on batches sampled beforehand (``update_only``).
    ``compile_s``: the first ``update`` call less one steady update.
``fql``, ``rql``
    ours: ``rql.agents`` ``make_agent`` at the same settings (horizon 1, batch 256, 4x512, 2 critics;
    ``fql`` with ``q_agg mean``), frames stacked and shifted on the device (``rql.pixels.Pixels``), timed
    in each of ``--modes``: ``update`` (the learner's sampling and shift jitted as one function,
    ``agent.update`` as another, one call each per update: no ``lax.scan``), ``dispatch``
    (``rql.learner.make_group_block``, the block ``rql train`` runs, with 1 update per block) and ``scan``
    (the same block with all ``--updates`` in it), ``unrolled`` (``make_group_block(..., unroll=True)`` with 1
    update per block, what ``rql train`` runs for image agents on a CPU since the learner's image cap). ``compile_s``: ahead-of-time lowering and compilation.
    On the CPU, with an image encoder, the block is many times slower than the update alone
    (``benchmarks/pixels_fql.md``), so ``dispatch`` and ``scan`` can take many minutes.
``fql-small``, ``rql-small``
    the same with ``--preset small`` (2x256, 2 critics).

Every figure carries ``os.getloadavg()`` at its start and end (the development machine is shared).
Writes ``--out`` (JSON, one entry per configuration, merged with what is there) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ACTION_DIM = 5
EPISODE = 1000
BATCH = 256
FRAME_STACK = 3
P_AUG = 0.5
IMPLS = ("fql-ref", "fql", "rql", "fql-small", "rql-small")
MODES = ("update", "dispatch", "unrolled", "scan")


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def frames(n: int):
    """``n`` varied 64x64x3 uint8 frames and episode ends every ``EPISODE`` steps (the last step ends one)."""
    import numpy as np

    obs = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    terminals = np.zeros(n, np.float32)
    terminals[EPISODE - 1::EPISODE] = 1.0
    terminals[-1] = 1.0
    return obs, terminals


def count(tree) -> int:
    import jax

    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


# --- the FQL codebase -------------------------------------------------------------------------


def run_reference(fql_path: str, encoder: str, n_frames: int, updates: int) -> dict:
    import jax
    import numpy as np

    sys.path.insert(0, str(pathlib.Path(fql_path).resolve()))
    from agents.fql import FQLAgent, get_config  # the FQL codebase's own modules
    from utils.datasets import Dataset, ReplayBuffer

    out = {"load_start": load()}
    obs, terminals = frames(n_frames)
    # OGBench's loader (compact_dataset=False): next_observations by shifting, each episode's last step
    # dropped from the transitions; masks and rewards as its single-task datasets carry them.
    keep = terminals == 0
    nxt = np.concatenate([[False], keep[:-1]])  # the step after a kept one
    fields = {
        "observations": obs[keep],
        "next_observations": obs[nxt],
        "actions": np.random.default_rng(1).uniform(-1, 1, (n_frames, ACTION_DIM)).astype(np.float32)[keep],
        "terminals": np.concatenate([terminals[1:], [1.0]]).astype(np.float32)[keep],
        "rewards": np.zeros(int(keep.sum()), np.float32),
    }
    fields["masks"] = 1.0 - fields["terminals"]
    del obs
    # main.py: Dataset.create, then the training set becomes the replay buffer (offline: no balanced sampling).
    train = Dataset.create(**fields)
    del fields
    train = ReplayBuffer.create_from_initial_dataset(dict(train), size=max(2_000_000, train.size + 1))
    train.p_aug, train.frame_stack = P_AUG, FRAME_STACK
    out["rss_after_data_mib"] = round(rss_mib())
    np.random.seed(0)

    config = get_config()
    config["encoder"] = encoder
    config["alpha"] = 300.0  # its visual-cube-single command (no effect on speed)
    example = train.sample(1)
    agent = FQLAgent.create(0, example["observations"], example["actions"], config)
    params = agent.network.params
    modules = {k: count(v) for k, v in params.items()}
    out["params"] = sum(v for k, v in modules.items() if "target" not in k)
    out["params_by_module"] = modules
    out["encoder_params"] = modules.get("modules_actor_bc_flow_encoder")
    out["batch_observation_shape"] = list(example["observations"].shape[1:])
    out["batch_observation_dtype"] = str(example["observations"].dtype)

    batch = train.sample(BATCH)
    train.augment(dict(batch), ["observations", "next_observations"])  # its crop compiled before timing
    t = time.perf_counter()
    agent, info = agent.update(batch)
    jax.block_until_ready(agent)
    first = time.perf_counter() - t
    agent, info = agent.update(train.sample(BATCH))  # one more warm step
    jax.block_until_ready(agent)
    out["rss_after_compile_mib"] = round(rss_mib())

    # Its training loop: sample on the host, update (dispatch is asynchronous, as in main.py).
    t = time.perf_counter()
    for _ in range(updates):
        agent, info = agent.update(train.sample(BATCH))
    jax.block_until_ready(agent)
    loop = time.perf_counter() - t

    # update alone, on batches sampled beforehand.
    batches = [train.sample(BATCH) for _ in range(updates)]
    t = time.perf_counter()
    for b in batches:
        agent, info = agent.update(b)
    jax.block_until_ready(agent)
    alone = time.perf_counter() - t

    t = time.perf_counter()
    for _ in range(updates):
        train.sample(BATCH)
    sample = time.perf_counter() - t
    out.update({
        "updates": updates, "updates_per_s": round(updates / loop, 4), "s_per_update": round(loop / updates, 3),
        "update_only_updates_per_s": round(updates / alone, 4), "update_only_s_per_update": round(alone / updates, 3),
        "sample_s_per_batch": round(sample / updates, 4),
        "first_call_s": round(first, 1), "compile_s": round(first - alone / updates, 1),
        "critic_loss": float(info["critic/critic_loss"]),
        "finite": bool(np.isfinite(float(info["critic/critic_loss"]))),
    })
    return out


# --- ours -----------------------------------------------------------------------------------------


def run_ours(agent_name: str, preset: str | None, encoder: str, n_frames: int, updates: int,
             modes: list[str]) -> dict:
    import jax
    import numpy as np

    from rql.agents import build_config, make_agent
    from rql.data.dataset import validate
    from rql.data.device import to_device
    from rql.learner import init_group_state, make_group_block
    from rql.pixels import pixels_for

    out = {"load_start": load()}
    obs, terminals = frames(n_frames)
    arrays = {"observations": obs, "terminals": terminals.astype(bool),
              "actions": np.random.default_rng(1).uniform(-1, 1, (n_frames, ACTION_DIM)).astype(np.float32),
              "rewards": np.zeros(n_frames, np.float32)}
    ds = validate(arrays, "synthetic", horizon=1)
    px = pixels_for(ds.image_shape, FRAME_STACK, P_AUG, encoder)
    data = to_device(ds)
    out["rss_after_data_mib"] = round(rss_mib())
    overrides = {"encoder": encoder, "image_shape": px.image_shape, "batch_size": BATCH, "horizon": 1}
    if preset is None:  # the FQL codebase's sizes: 4x512 actor and critic, 2 critics
        overrides.update(actor_hidden_dims=(512,) * 4, value_hidden_dims=(512,) * 4, ensemble=2)
    if agent_name == "fql":
        overrides.update(q_agg="mean", alpha=300.0)
    cfg = build_config(agent_name, None, preset, overrides)
    agent = make_agent(agent_name, cfg, px.obs_dim, ACTION_DIM)
    state = init_group_state(agent, [0])
    p = jax.tree_util.tree_map(lambda x: x[0], state["agent"]["params"])
    out["params"] = count(p)
    out["params_by_module"] = {k: count(v) for k, v in p.items()}
    encs = {k: count(v["encoder"]) for k, v in p.items() if isinstance(v, dict) and "encoder" in v}
    out["encoder_params"] = next(iter(encs.values())) if encs else None
    out["config"] = {"hidden_dims": list(cfg.actor_hidden_dims), "ensemble": cfg.ensemble, "horizon": cfg.horizon,
                     "flow_steps": cfg.flow_steps, "batch_size": cfg.batch_size}

    for mode in modes:  # "scan": all updates in one compiled block (rql train's); "dispatch": one per call
        if mode == "update":
            out[mode] = time_update_alone(agent, cfg, px, data, state, updates)
            print(f"{agent_name} {encoder} {mode}: {out[mode]}", file=sys.stderr, flush=True)
            continue
        block = updates if mode == "scan" else 1
        if mode == "unrolled":  # the block written out (no loop), as rql train runs image agents on a CPU
            run = make_group_block(agent, cfg.horizon, BATCH, block, px, unroll=True)
        else:
            run = make_group_block(agent, cfg.horizon, BATCH, block, px)
        t = time.perf_counter()
        compiled = run.lower(state, data).compile()
        compile_s = time.perf_counter() - t
        load0 = load()
        t = time.perf_counter()
        for _ in range(updates // block):
            state, m = compiled(state, data)
        jax.block_until_ready(state)
        dt = time.perf_counter() - t
        loss = float(np.asarray(m.get("loss/critic", m.get("loss/total", np.nan))).reshape(-1)[0])
        out[mode] = {"updates_per_dispatch": block, "updates": updates, "updates_per_s": round(updates / dt, 4),
                     "s_per_update": round(dt / updates, 3), "compile_s": round(compile_s, 1), "loss": loss,
                     "finite": bool(np.isfinite(loss)), "load_start": load0, "load_end": load()}
        print(f"{agent_name} {encoder} {mode}: {out[mode]}", file=sys.stderr, flush=True)
    out["rss_after_compile_mib"] = round(rss_mib())
    first = out[modes[0]]
    out.update({k: first[k] for k in ("updates", "updates_per_s", "s_per_update", "compile_s", "finite")})
    out["mode"] = modes[0]
    return out


def time_update_alone(agent, cfg, px, data, group_state, updates: int) -> dict:
    """The learner's sampling and shift (``rql.data.device.sample_windows``, ``rql.pixels.augment``) and
    ``agent.update`` each jitted on its own and called once per update: no ``lax.scan`` around the update."""
    import jax

    from rql.data.device import sample_windows
    from rql.learner import windows_of
    from rql.pixels import augment, augment_key

    def sample(key):
        batch = sample_windows(data, key, BATCH, cfg.horizon, windows_of(agent), px)
        return augment(batch, augment_key(key), px)

    sample = jax.jit(sample)
    st = jax.tree_util.tree_map(lambda x: x[0], group_state["agent"])
    batch = sample(jax.random.PRNGKey(0))
    t = time.perf_counter()
    update = jax.jit(agent.update).lower(st, batch, jax.random.PRNGKey(0)).compile()
    compile_s = time.perf_counter() - t
    load0 = load()
    t = time.perf_counter()
    for i in range(updates):
        st, m = update(st, sample(jax.random.PRNGKey(i + 1)), jax.random.PRNGKey(i))
    jax.block_until_ready(st)
    dt = time.perf_counter() - t
    loss = float(m.get("loss/critic", m.get("loss/total", float("nan"))))
    return {"updates": updates, "updates_per_s": round(updates / dt, 4), "s_per_update": round(dt / updates, 3),
            "compile_s": round(compile_s, 1), "loss": loss, "finite": loss == loss, "load_start": load0,
            "load_end": load()}


def one(args) -> None:
    impl, enc = args.one
    t0 = time.perf_counter()
    if impl == "fql-ref":
        out = run_reference(args.fql, enc, args.frames, args.updates)
    else:
        name, _, size = impl.partition("-")
        out = run_ours(name, size or None, enc, args.frames, args.updates, args.modes.split(","))
    import jax

    out.update({"impl": impl, "encoder": enc, "frames": args.frames, "batch_size": BATCH, "frame_stack": FRAME_STACK,
                "p_aug": P_AUG, "peak_rss_mib": round(rss_mib()), "load_end": load(),
                "backend": jax.default_backend(), "jax": jax.__version__,
                "total_s": round(time.perf_counter() - t0, 1)})
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fql", help="path of a checkout of the FQL codebase (github seohongpark/fql)")
    ap.add_argument("--encoders", default="impala_small,impala")
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--updates", type=int, default=3, help="timed updates per configuration (after compilation)")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--modes", default="update,dispatch",
                    help="ours: 'dispatch' (make_group_block, one update per call), 'scan' (all --updates in one "
                         "block), 'update' (sampling and agent.update jitted apart, no scan)")
    ap.add_argument("--out", default="benchmarks/results/pixels_fql.json")
    ap.add_argument("--one", nargs=2, metavar=("IMPL", "ENCODER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one(args)
    if not (pathlib.Path(args.fql) / "agents" / "fql.py").is_file():
        sys.exit(f"{args.fql}: not a checkout of the FQL codebase (no agents/fql.py)")
    path = pathlib.Path(args.out)
    results = json.loads(path.read_text()) if path.is_file() else {}
    for enc in args.encoders.split(","):
        for impl in args.impls.split(","):
            cmd = [sys.executable, __file__, args.fql, "--frames", str(args.frames), "--updates", str(args.updates),
                   "--modes", args.modes, "--one", impl, enc]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its stderr (progress) passes through
            if r.returncode != 0:
                print(f"{impl} {enc}: failed (exit {r.returncode})", file=sys.stderr)
                continue
            res = json.loads(r.stdout.strip().splitlines()[-1])
            results[f"{impl}/{enc}"] = merge(results.get(f"{impl}/{enc}"), res)
            print(f"{impl} {enc}: {res['s_per_update']} s/update, compile {res['compile_s']} s, "
                  f"peak {res['peak_rss_mib']} MiB, load {res['load_start']}", file=sys.stderr)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(results, indent=1))
    table(results)


def merge(old: dict | None, new: dict) -> dict:
    """A new figure of a configuration, keeping the earlier figures of ours' other modes (and their peaks)."""
    if not old or new["impl"] == "fql-ref":
        return new
    kept = {m: old[m] for m in MODES if m in old and m not in new}
    if kept:
        peaks = old.get("peak_rss_mib_by_mode", {m: old["peak_rss_mib"] for m in MODES if m in old})
        peaks.update({m: new["peak_rss_mib"] for m in MODES if m in new})
        new = {**new, **kept, "peak_rss_mib_by_mode": peaks}
    return new


def table(results: dict) -> None:
    print("| implementation | encoder | s/update | updates/s | s/update, other way | compile (s) | peak RSS (MiB) "
          "| params | encoder params | load avg (start / end) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results.values():
        if r["impl"] == "fql-ref":
            how, other = "its loop", f"{r['update_only_s_per_update']:.2f} (update alone)"
        else:
            how = f"{r['mode']}"
            rest = [m for m in MODES if m in r and m != r["mode"]]
            other = ", ".join(f"{r[m]['s_per_update']:.2f} ({m})" for m in rest) or "-"
        print(f"| {r['impl']} | {r['encoder']} | {r['s_per_update']:.2f} ({how}) | {r['updates_per_s']:.3f} | {other} "
              f"| {r['compile_s']} | {r['peak_rss_mib']} | {r['params']:,} | {r['encoder_params']:,} "
              f"| {r['load_start'][0]} / {r['load_end'][0]} |")

if __name__ == "__main__":
    main()
