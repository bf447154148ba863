"""Where an image update's time goes on a CPU, and three things that do not make it faster.

1. The IMPALA encoders alone (forward, and the gradient of their parameters) at a batch of stacked 64x64x3
   frames: the part of an image update that dominates on a CPU.
2. Flow reversal with an image network (``rql.flow.reverse`` over ``rql.agents.kit.network``): F = 1
   against F = 10 Euler steps. XLA moves the encoder, whose input does not change inside the loop, out of
   it, so a network evaluated at F flow times still encodes its observations once.
3. A 3x3 convolution as XLA's own against two rewrites (patches then a matrix product; nine shifted slices
   then a matrix product), and XLA's optional CPU convolution libraries (``--cpu-flags``: each variant runs
   in a fresh process, since XLA reads its flags once).

    python benchmarks/pixels_cpu.py --batch-size 64 --save

Prints JSON lines (appended to benchmarks/results/pixels_cpu.jsonl with --save)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

FLAG_VARIANTS = [
    "",
    "--xla_cpu_experimental_xnn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_experimental_onednn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
    "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION",
]


def timed(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))  # compile
    t0 = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t0) / repeats


def encoders(batch: int, repeats: int) -> list[dict]:
    import jax
    import numpy as np

    from rql.nets import ENCODERS, ImpalaEncoder

    obs = jax.numpy.asarray(np.random.RandomState(0).randint(0, 256, (batch, 64 * 64 * 9)).astype(np.uint8))
    rows = []
    for name in ("impala_debug", "impala_small", "impala"):
        enc = ImpalaEncoder((64, 64, 9), **ENCODERS[name])
        params = enc.init(jax.random.PRNGKey(0), obs)
        fwd = jax.jit(enc.apply)
        grad = jax.jit(jax.grad(lambda p, o: enc.apply(p, o).sum()))
        rows.append({"what": "encoder", "encoder": name, "batch": batch, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                     "forward_s": round(timed(fwd, params, obs, repeats=repeats), 4),
                     "param_grad_s": round(timed(grad, params, obs, repeats=repeats), 4),
                     "checksum": float(fwd(params, obs).sum())})
    return rows


def reversal(batch: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from rql import flow
    from rql.agents.kit import network
    from rql.nets import VelocityField

    @dataclasses.dataclass
    class Config:
        encoder: str = "impala_small"
        image_shape: tuple = (64, 64, 9)

    net = network(VelocityField((256, 256), 25, False, 1.0), Config())
    obs = jnp.asarray(np.random.RandomState(0).randint(0, 256, (batch, 64 * 64 * 9)).astype(np.uint8))
    x, t = jnp.zeros((batch, 25)), jnp.zeros((batch, 1))
    params = net.init(jax.random.PRNGKey(0), obs, x, t)
    rows = []
    for steps in (1, 10):
        fn = jax.jit(lambda p, o, a, F=steps: flow.reverse(lambda o_, x_, t_: net.apply(p, o_, x_, t_), o, a,
                                                            jnp.ones((batch,)), F)[0])
        rows.append({"what": "reversal", "encoder": "impala_small", "batch": batch, "flow_steps": steps,
                     "seconds": round(timed(fn, params, obs, x, repeats=repeats), 4)})
    return rows


def convolutions(batch: int, repeats: int) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.RandomState(0)
    x = jnp.asarray(rng.rand(batch, 64, 64, 9).astype(np.float32))
    w = jnp.asarray(rng.rand(3, 3, 9, 16).astype(np.float32))

    def xla(x, w):
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def patches(x, w):
        p = jax.lax.conv_general_dilated_patches(x, (3, 3), (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return p @ jnp.transpose(w, (2, 0, 1, 3)).reshape(-1, w.shape[-1])  # patches are (C, kh, kw)-major

    def shifted(x, w):
        xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        h, wd = x.shape[1:3]
        cols = jnp.concatenate([xp[:, i:i + h, j:j + wd, :] for i in range(3) for j in range(3)], -1)
        return cols @ w.reshape(-1, w.shape[-1])

    ref = xla(x, w)
    rows = []
    for fn in (xla, patches, shifted):
        rows.append({"what": "conv3x3 9->16 at 64x64", "how": fn.__name__, "batch": batch,
                     "max_abs_diff_to_xla": float(jnp.abs(fn(x, w) - ref).max()),
                     "forward_s": round(timed(jax.jit(fn), x, w, repeats=repeats), 4),
                     "weight_grad_s": round(timed(jax.jit(jax.grad(lambda x, w: fn(x, w).sum(), argnums=1)), x, w,
                                                  repeats=repeats), 4)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--cpu-flags", action="store_true", help="also time the encoders under XLA's CPU library flags")
    p.add_argument("--only-encoders", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--save", action="store_true")
    a = p.parse_args()
    if a.only_encoders:  # a child process of --cpu-flags
        print(json.dumps(encoders(a.batch_size, a.repeats)))
        return
    rows = encoders(a.batch_size, a.repeats) + reversal(a.batch_size, a.repeats) + convolutions(a.batch_size, a.repeats)
    if a.cpu_flags:
        for flags in FLAG_VARIANTS[1:]:
            env = {**os.environ, "XLA_FLAGS": flags}
            out = subprocess.run([sys.executable, __file__, "--only-encoders", "--batch-size", str(a.batch_size),
                                  "--repeats", str(a.repeats)], env=env, capture_output=True, text=True, check=True)
            rows += json.loads(out.stdout.strip().splitlines()[-1])
    meta = {"cpu": platform.machine(), "cores": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()]}
    lines = [json.dumps({**row, **meta}) for row in rows]
    print("\n".join(lines))
    if a.save:
        out = pathlib.Path(__file__).parent / "results" / "pixels_cpu.jsonl"
        with out.open("a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
