"""``rql export``: a run's evaluation policy as one file that runs with JAX alone (:mod:`rql.exported`).

The policy is the agent's ``act`` on the checkpoint's state, exactly what evaluation calls (for the
flow agents: the EMA actor's Euler sampler with its flow steps, the clip to [-1, 1] and the reshape
into a chunk), lowered with ``jax.export`` for the CPU and CUDA with a symbolic batch size. Only the state's
arrays that ``act`` reads travel (for RQL: the EMA velocity field, not the values, targets or optimiser
moments), as arguments of the program rather than constants folded into it: the exported program then
computes bit for bit what the checkpoint's compiled policy computes on the same machine.
"""

from __future__ import annotations

import datetime as _dt
import os
import pathlib

from rql.errors import RQLError
from rql.exported import pack

PLATFORMS = ("cpu", "cuda")


def read_leaves(fn, leaves: list, *args) -> list[int]:
    """Indices of the ``leaves`` that ``fn(leaves, *args)`` reads (the inputs its traced program uses)."""
    import jax

    closed = jax.make_jaxpr(fn)(leaves, *args)
    seen = set()
    for eqn in closed.jaxpr.eqns:
        seen.update(id(v) for v in eqn.invars if not hasattr(v, "val"))  # literals carry a value
    seen.update(id(v) for v in closed.jaxpr.outvars if not hasattr(v, "val"))
    return [i for i, v in enumerate(closed.jaxpr.invars[: len(leaves)]) if id(v) in seen]


def policy_file(agent, state, extra: dict | None = None) -> tuple[bytes, dict]:
    """The bytes of an exported-policy file for ``agent.act`` on ``state``, and its header (``extra``
    added to it)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import export

    from rql import __version__
    from rql.agents import plugins

    leaves, treedef = jax.tree_util.tree_flatten(state)
    key = jax.random.PRNGKey(0)
    image_shape = getattr(agent.config, "image_shape", None) if getattr(agent.config, "encoder", "none") != "none" else None
    obs_dtype = jnp.uint8 if image_shape else jnp.float32  # images stay uint8: the encoder makes the floats
    obs = jnp.zeros((1, agent.obs_dim), obs_dtype)
    used = read_leaves(lambda ls, o, k: agent.act(jax.tree_util.tree_unflatten(treedef, ls), o, k),
                       leaves, obs, key)

    def policy(params, obs, key):
        # The leaves act does not read are placeholders that compilation removes.
        full = [jnp.zeros(np.shape(x), x.dtype) for x in leaves]
        for i, p in zip(used, params):
            full[i] = p
        return agent.act(jax.tree_util.tree_unflatten(treedef, full), obs, key)

    params = [np.asarray(leaves[i]) for i in used]
    (batch,) = export.symbolic_shape("batch")
    args = ([jax.ShapeDtypeStruct(p.shape, p.dtype) for p in params],
            jax.ShapeDtypeStruct((batch, agent.obs_dim), obs_dtype), jax.ShapeDtypeStruct(key.shape, key.dtype))
    try:
        exported = export.export(jax.jit(policy), platforms=PLATFORMS)(*args)
    except Exception as e:  # an agent whose act cannot take a symbolic batch size
        raise RQLError(f"agent '{agent.name}' cannot be exported ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:300]})") from None
    header = {
        "agent": agent.name, "agent_source": plugins.source_of(agent.name), "rql_version": __version__,
        "jax_version": jax.__version__, "platforms": list(exported.platforms),
        "observation_shape": [agent.obs_dim], "observation_dtype": "uint8" if image_shape else "float32",
        "image_shape": list(image_shape) if image_shape else None,
        "horizon": agent.config.horizon, "action_dim": agent.action_dim,
        "action_shape": [agent.config.horizon, agent.action_dim], "action_bounds": [-1.0, 1.0],
        "key_shape": list(key.shape), "key_dtype": str(key.dtype), "batch": "symbolic",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(extra or {}),
    }
    return pack(header, bytes(exported.serialize()), params), header


def export_policy(run_dir: str | pathlib.Path, out: str | pathlib.Path, checkpoint: int | None = None,
                  log=print) -> tuple[pathlib.Path, dict]:
    """Write the evaluation policy of ``run_dir`` (its latest readable checkpoint unless ``checkpoint``) to
    ``out``; returns the path and the file's header."""
    from rql.training import restore_agent

    out = pathlib.Path(out).expanduser()
    if out.is_dir():
        raise RQLError(f"--out {out}: is a folder; give a file name, e.g. {out / 'policy.rqlx'}")
    run, agent, ts, step = restore_agent(run_dir, checkpoint, log=log)
    try:
        data, header = policy_file(agent, ts["agent"], {"checkpoint": int(step), "task": run.task,
                                                        "frame_stack": int(getattr(run, "frame_stack", 1)),
                                                        "run_dir": str(pathlib.Path(run_dir).resolve())})
    except RQLError as e:
        raise RQLError(f"{run_dir}: {e}") from None
    tmp = out.with_name(out.name + ".tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise RQLError(f"--out {out}: cannot write it ({e.strerror})") from None
    return out, header
