"""Pixels: peak memory and updates/s of training on synthetic visual data of OGBench's shape.

One measurement per process (peak RSS is per process): a synthetic dataset of N frames 64x64x3 uint8 in
episodes of 1000 steps, validated and placed as a run places it (``--placement auto``: on the device when it
fits in the free memory, else kept on the host with each block's windows gathered there; no float copy),
then an agent with an image encoder trained for ``--updates`` updates (after one block that compiles), frame
stacking and random shift as the FQL codebase's visual settings (--frame-stack 3, --p-aug 0.5).

    python benchmarks/pixels.py --frames 100000 --encoder impala_small --updates 20
    python benchmarks/pixels.py --frames 1000000 --encoder impala_small --updates 16   # kept on the host

Prints one JSON line (and appends it to benchmarks/results/pixels.jsonl with --save)."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import resource
import time


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--agent", default="rql")
    p.add_argument("--encoder", default="impala_small")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--updates", type=int, default=20)
    p.add_argument("--frame-stack", type=int, default=3)
    p.add_argument("--p-aug", type=float, default=0.5)
    p.add_argument("--placement", default="auto", choices=["auto", "device", "host"])
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--save", action="store_true")
    a = p.parse_args()

    import jax
    import numpy as np

    from rql.agents import build_config, make_agent
    from rql.data.dataset import validate
    from rql.data.device import to_device
    from rql.data.host_frames import HostFrames, block_cap, bytes_per_update, without_frames
    from rql.learner import image_block_cap, init_group_state, make_group_block, windows_of
    from rql.pixels import describe_pixels, free_device_bytes, pixels_for, place_frames

    t0 = time.perf_counter()
    n, h = a.frames, a.horizon
    obs = np.empty((n, 64, 64, 3), np.uint8)
    for s in range(0, n, 10_000):  # varied frames, written in place (no temporary copy of the set)
        obs[s:s + 10_000] = np.random.default_rng(s).integers(0, 256, (min(10_000, n - s), 64, 64, 3), dtype=np.uint8)
    terminals = np.zeros(n, bool)
    terminals[999::1000] = True
    terminals[-1] = True
    arrays = {"observations": obs, "actions": np.zeros((n, 5), np.float32), "rewards": np.zeros(n, np.float32),
              "terminals": terminals}
    rss_frames = rss_mib()
    ds = validate(arrays, "synthetic", horizon=h)
    px = pixels_for(ds.image_shape, a.frame_stack, a.p_aug, a.encoder)
    free = free_device_bytes()
    where = place_frames(ds, a.placement, free)
    cfg = build_config(a.agent, None, "small", {"encoder": a.encoder, "image_shape": px.image_shape,
                                                 "batch_size": a.batch_size, "horizon": h})
    agent = make_agent(a.agent, cfg, px.obs_dim, 5)
    cap = image_block_cap()  # as rql train: one update per dispatch, written out, on a CPU
    block = max(1, min(a.updates, cap or a.updates))
    if where == "device":
        line = describe_pixels(px, ds, where, free)
        data = to_device(ds)
        run = make_group_block(agent, h, a.batch_size, block, px, unroll=cap is not None)
    else:
        block = min(block, block_cap(ds, a.batch_size, h, a.frame_stack, 1))
        line = describe_pixels(px, ds, where, free, block, block * bytes_per_update(ds, a.batch_size, h, a.frame_stack, 1))
        data = without_frames(ds)
        run = HostFrames(ds, make_group_block(agent, h, a.batch_size, block, px, host=True, unroll=cap is not None),
                         a.batch_size, h, block,
                         windows_of(agent), a.frame_stack)
    print(line, flush=True)
    rss_device = rss_mib()
    state = init_group_state(agent, [0])
    t = time.perf_counter()
    state, m = run(state, data)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - t
    blocks = max(1, a.updates // block)
    t = time.perf_counter()
    for _ in range(blocks):
        state, m = run(state, data)
    jax.block_until_ready(state)
    dt = time.perf_counter() - t
    block = block * blocks
    params = sum(x.size for x in jax.tree_util.tree_leaves(state["agent"]["params"]))
    out = {"frames": n, "agent": a.agent, "encoder": a.encoder, "batch_size": a.batch_size, "frame_stack": a.frame_stack,
           "p_aug": a.p_aug, "frames_mib": round(obs.nbytes / 2**20), "rss_after_frames_mib": round(rss_frames),
           "rss_after_device_mib": round(rss_device), "peak_rss_mib": round(rss_mib()),
           "updates_per_s": round(block / dt, 3), "first_block_s": round(compile_s, 1), "params": int(params),
           "backend": jax.default_backend(), "total_s": round(time.perf_counter() - t0, 1), "placement": where,
           "horizon": h, "line": line, "load_avg": [round(x, 2) for x in os.getloadavg()],
           "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    print(json.dumps(out))
    if a.save:
        with open(pathlib.Path(__file__).parent / "results" / "pixels.jsonl", "a") as f:
            f.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
