"""The measurements behind the lab's figures, computed from trained networks.

Every function takes velocity fields ``v(obs, x, t)`` and value functions as the agents expose them
and returns plain numpy arrays; the flow steps are the project's own (:mod:`rql.flow`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from rql import flow


# ----------------------------------------------------------------------------- what a trained agent offers


@dataclasses.dataclass
class Fields:
    """The networks of a trained agent that the figures read."""

    sample: Callable | None
    """Velocity field the policy samples with (RQL and flow BC: the EMA actor; FQL/IFQL: the BC flow)."""
    reverse: Callable | None
    """Velocity field flow reversal uses (RQL: the current actor)."""
    value: Callable | None
    """``value(obs, x, t) -> (batch,)``: the ensemble mean of RQL's V on partial actions, else None."""
    flow_steps: int | None


def fields(agent, state) -> Fields:
    """Read the velocity field(s) and the value of an agent's state.

    RQL exposes them through ``agent.extras``; flow BC, FQL and IFQL keep a
    :class:`rql.nets.VelocityField` under a known key, rebuilt here from their config
    (an agent that exposes ``extras["velocity"]`` is read through it instead)."""
    from rql.nets import VelocityField

    c = agent.config
    F = getattr(c, "flow_steps", None)
    chunk = c.horizon * agent.action_dim
    if agent.name == "rql":
        vel = agent.extras["velocity"]
        value_fn = agent.extras["value"]
        vparams = state["params"]["value"]
        return Fields(vel(state["target_actor"]), vel(state["params"]["actor"]),
                      lambda o, x, t: value_fn(vparams, o, x, t).mean(axis=0), F)
    params = None
    if agent.name == "flow-bc":
        params, current = state["target_actor"], state["params"]["actor"]
        net = VelocityField(c.actor_hidden_dims, chunk, c.actor_layer_norm, getattr(c, "actor_out_init_scale", 1.0))
    elif "flow" in state.get("params", {}):  # FQL, IFQL: a behaviour flow beside the policy
        params = current = state["params"]["flow"]
        net = VelocityField(c.actor_hidden_dims, chunk, c.actor_layer_norm)
    if params is None:
        return Fields(None, None, None, F)
    if "velocity" in agent.extras:
        vel = agent.extras["velocity"]
        return Fields(vel(params), vel(current), None, F)
    return Fields(lambda o, x, t: net.apply(params, o, x, t), lambda o, x, t: net.apply(current, o, x, t), None, F)


def _bcast(obs, n):
    """Observations for ``n`` samples (numpy): one observation repeated, or ``n`` of them."""
    obs = np.asarray(obs, np.float32)
    obs = obs.reshape(-1, obs.shape[-1])
    return np.ascontiguousarray(np.broadcast_to(obs, (n, obs.shape[-1]))) if obs.shape[0] == 1 else obs


# ----------------------------------------------------------------------------- forward paths


def forward_path(v, obs, x0, F: int) -> np.ndarray:
    """(F + 1, N, D) Euler states from ``x0`` at t = 0 to the (unclipped) action at t = 1."""
    obs = _bcast(obs, x0.shape[0])

    @jax.jit
    def run(obs, x0):
        def body(x, i):
            t = jnp.full((x.shape[0], 1), i / F, x.dtype)
            x = x + v(obs, x, t) / F
            return x, x

        _, xs = jax.lax.scan(body, x0, jnp.arange(F, dtype=jnp.float32))
        return jnp.concatenate([x0[None], xs])

    return np.asarray(run(obs, np.asarray(x0, np.float32)))


# ----------------------------------------------------------------------------- gradients through the chain


def chain_jacobians(v, obs, x0, Fs, f_max: int | None = None) -> dict:
    """Per ``F``: the Jacobians of the ``F`` Euler steps along the paths from ``x0``.

    Returns ``{"F": Fs, "chain": (len(Fs), N) spectral norm of the product of the F step Jacobians
    (d action / d x0, what backpropagation through the whole chain multiplies), "step_max":
    (len(Fs), N) largest spectral norm of a single step's Jacobian along the path (what a one-step
    gradient passes through), "step_mean": same, mean over the steps}``."""
    x0 = np.asarray(x0, np.float32)
    n, d = x0.shape
    obs = _bcast(obs, n)
    f_max = f_max or max(Fs)

    @jax.jit
    def run(obs, x0, F):
        # Steps past F are identities (dt = 0), so one compiled loop serves every F.
        i = jnp.arange(f_max, dtype=jnp.float32)
        active = i < F
        dt = jnp.where(active, 1.0 / F, 0.0)
        ts = i / F

        def per_sample(o, x):
            def step(x, t, h):  # one Euler step of one sample
                return x + v(o[None], x[None], jnp.reshape(t, (1, 1)))[0] * h

            def body(carry, inp):
                x, prod = carry
                t, h, on = inp
                J = jax.jacfwd(step)(x, t, h)
                J = jnp.where(on, J, jnp.eye(d))
                return (step(x, t, h), J @ prod), jnp.linalg.norm(J, 2)

            (_, prod), norms = jax.lax.scan(body, (x, jnp.eye(d)), (ts, dt, active))
            return jnp.linalg.norm(prod, 2), norms

        chain, norms = jax.vmap(per_sample)(obs, x0)
        masked = jnp.where(active[None], norms, -jnp.inf)
        logsum = jnp.sum(jnp.where(active[None], jnp.log10(norms), 0.0), 1)
        return chain, masked.max(axis=1), jnp.sum(jnp.where(active[None], norms, 0.0), 1) / F, logsum

    keys = ("chain", "step_max", "step_mean", "step_logsum")
    out = {"F": list(Fs), **{k: [] for k in keys}}
    for F in Fs:
        for k, a in zip(keys, run(obs, x0, np.float32(F))):
            out[k].append(np.asarray(a))
    for k in keys:
        out[k] = np.stack(out[k])
    return out


def hop_vs_bptt(v, value, obs, x0, F: int) -> dict:
    """At every Euler step ``i`` of the paths from ``x0``, two gradients with respect to ``x_i``:

    - backpropagation through the rest of the chain: ``grad Q(x_F)`` with ``Q(a) = V(s, a, 1)``,
      carried back step by step through each step's vector-Jacobian product;
    - RQL's one hop: ``grad V(s, x_i + v(s, x_i, t_i) / F, t_i + 1/F)`` (:func:`rql.flow.one_step`),
      the gradient its actor update passes through a single call of ``v``.

    Returns ``{"F", "cos": (F, N), "bptt_norm": (F, N), "hop_norm": (F, N)}``."""
    x0 = np.asarray(x0, np.float32)
    n = x0.shape[0]
    obs_np = _bcast(obs, n)
    ts_np = np.arange(F, dtype=np.float32) / F

    @jax.jit
    def run(obs, x0, ts):
        ones = jnp.ones((n, 1), jnp.float32)

        def step(x, t):
            return flow.one_step(v, obs, x, ones * t, F)

        def v_sum(x, t):
            return jnp.sum(value(obs, x, ones * t))

        x_end, xs = jax.lax.scan(lambda x, t: (step(x, t)[0], x), x0, ts)  # xs[i] = x_i
        g_end = jax.grad(v_sum)(x_end, 1.0)

        def back(g, inp):
            x, t = inp
            g = jax.vjp(lambda x: step(x, t)[0], x)[1](g)[0]
            return g, g

        _, g_bptt = jax.lax.scan(back, g_end, (xs, ts), reverse=True)
        g_hop = jax.vmap(lambda x, t: jax.grad(lambda x: v_sum(*step(x, t)))(x))(xs, ts)
        nb, nh = jnp.linalg.norm(g_bptt, axis=-1), jnp.linalg.norm(g_hop, axis=-1)
        cos = jnp.sum(g_bptt * g_hop, -1) / jnp.maximum(nb * nh, 1e-12)
        return cos, nb, nh

    cos, nb, nh = run(obs_np, x0, ts_np)
    return {"F": F, "cos": np.asarray(cos), "bptt_norm": np.asarray(nb), "hop_norm": np.asarray(nh)}


def loglinear_fit(x, y) -> dict:
    """Least-squares line through ``(x, y)`` with its coefficient of determination."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    r2 = 1.0 - float(np.sum(resid**2)) / max(float(np.sum((y - y.mean()) ** 2)), 1e-12)
    return {"slope": float(slope), "intercept": float(icpt), "r2": r2}


# ----------------------------------------------------------------------------- reversal


def reversal_path(v, obs, actions, F: int) -> np.ndarray:
    """(F + 1, N, D) partial actions at t = k / F, k = 0..F, of ``actions`` as RQL's critic sees them:
    :func:`rql.flow.reverse` by the distance ``1 - t`` in ``F`` sub-steps from t = 1."""
    actions = np.asarray(actions, np.float32)
    n = actions.shape[0]
    obs = np.tile(_bcast(obs, n), (F + 1, 1))
    dist = np.repeat(1.0 - np.arange(F + 1, dtype=np.float32) / F, n)
    run = jax.jit(lambda o, a, d: flow.reverse(v, o, a, d, F)[0])
    x = run(obs, np.tile(actions, (F + 1, 1)), dist)
    return np.asarray(x).reshape(F + 1, n, -1)


def round_trip(v, obs, actions, Fs) -> dict:
    """Reverse dataset actions to noise with ``F`` steps, sample forward from that noise with ``F``
    steps (:func:`rql.flow.euler_sample`, unclipped), and measure how far the result lands from the
    action it started from (root mean square over action dims), per ``F``."""
    actions = np.asarray(actions, np.float32)
    n = actions.shape[0]
    obs = _bcast(obs, n)
    ones = np.ones((n,), np.float32)

    def trip(o, a, d, F):
        x0, _ = flow.reverse(v, o, a, d, F)
        back = flow.euler_sample(v, o, x0, F, clip=False)
        return jnp.sqrt(jnp.mean(jnp.square(back - a), axis=-1))

    # Every F in one compiled program (one compilation instead of one per F).
    errs = jax.jit(lambda o, a, d: jnp.stack([trip(o, a, d, F) for F in Fs]))(obs, actions, ones)
    return {"F": list(Fs), "error": np.asarray(errs)}


def value_along(value, obs, path) -> tuple[np.ndarray, np.ndarray]:
    """``V(s, x_t, t)`` and ``|grad_x V(s, x_t, t)|`` at every point of a reversed path (F + 1, N, D)."""
    F = path.shape[0] - 1
    n = path.shape[1]
    obs = _bcast(obs, n)

    @jax.jit
    def at(obs, x, t):
        tt = jnp.full((n, 1), t, jnp.float32)
        grad = jax.grad(lambda x: jnp.sum(value(obs, x, tt)))(x)
        return value(obs, x, tt), jnp.linalg.norm(grad, axis=-1)

    out = [at(obs, np.asarray(path[k], np.float32), np.float32(k / F)) for k in range(F + 1)]
    return np.stack([np.asarray(a) for a, _ in out]), np.stack([np.asarray(b) for _, b in out])


# ----------------------------------------------------------------------------- policy-gradient estimators


def gradient_estimators(q, actions, sigmas, draws: int, batch: int, key) -> dict:
    """Two estimates of the same gradient, ``d/db E[Q(a + b + sigma eps)]`` at ``b = 0`` with ``a`` the
    policy's samples and ``eps ~ N(0, I)``, each from ``batch`` samples, repeated ``draws`` times:

    - score function (REINFORCE): ``mean Q(a') eps / sigma`` (and with a leave-one-out baseline);
    - pathwise (reparameterised): ``mean grad Q(a')``.

    Returns per sigma the mean estimate and the total variance (trace of the covariance) of each, and
    under ``raw`` the estimates themselves."""
    actions = jnp.asarray(np.asarray(actions, np.float32))
    n, d = actions.shape
    grad_q = jax.grad(lambda a: jnp.sum(q(a)))

    def one(key, sigma):
        k_idx, k_eps = jax.random.split(key)
        a = actions[jax.random.randint(k_idx, (batch,), 0, n)]
        eps = jax.random.normal(k_eps, (batch, d))
        a2 = a + sigma * eps
        qa = q(a2)
        sf = jnp.mean(qa[:, None] * eps, 0) / sigma
        loo = (jnp.sum(qa) - qa) / (batch - 1)
        sf_b = jnp.mean((qa - loo)[:, None] * eps, 0) / sigma
        pw = jnp.mean(grad_q(a2), 0)
        return sf, sf_b, pw

    out = {"sigma": list(sigmas), "batch": batch, "draws": draws, "score": [], "score_baseline": [], "pathwise": [],
           "score_mean": [], "score_baseline_mean": [], "pathwise_mean": [], "raw": []}
    all_sigmas = jax.jit(lambda key, sig: jax.vmap(lambda s: jax.vmap(lambda k: one(k, s))(
        jax.random.split(key, draws)))(sig))
    results = all_sigmas(key, np.asarray(sigmas, np.float32))
    for j, s in enumerate(sigmas):
        sf, sf_b, pw = (r[j] for r in results)
        raw = {}
        for name, est in (("score", sf), ("score_baseline", sf_b), ("pathwise", pw)):
            est = np.asarray(est)
            raw[name] = est
            out[name].append(float(np.trace(np.cov(est.T))))
            out[name + "_mean"].append(est.mean(0).tolist())
            out.setdefault(name + "_stderr", []).append((est.std(0, ddof=1) / np.sqrt(draws)).tolist())
        out["raw"].append(raw)
    return out


# ----------------------------------------------------------------------------- the update, running


def bent_paths(v, value, obs, x0, F: int, cs) -> np.ndarray:
    """(len(cs), F + 1, N, D) Euler paths of ``v`` from ``x0`` with ``c`` times the one-hop gradient added
    to the velocity at every step, ``v(s, x_i, t_i) + c grad V(s, x_i + v / F, t_i + 1/F)``, for each ``c``
    in ``cs``: the direction RQL's actor update moves each step's velocity in (``c = 0``: the plain flow).
    One compiled program for every ``c``."""
    x0 = np.asarray(x0, np.float32)
    n = x0.shape[0]
    obs = _bcast(obs, n)

    def one(obs, x0, c):
        def body(x, i):
            t = jnp.full((n, 1), i / F, jnp.float32)
            vel = v(obs, x, t)
            g = jax.grad(lambda y: jnp.sum(value(obs, y, jnp.minimum(t + 1.0 / F, 1.0))))(x + vel / F)
            x = x + (vel + c * g) / F
            return x, x

        _, xs = jax.lax.scan(body, x0, jnp.arange(F, dtype=jnp.float32))
        return jnp.concatenate([x0[None], xs])

    run = jax.jit(lambda obs, x0, cs: jax.vmap(lambda c: one(obs, x0, c))(cs))
    return np.asarray(run(obs, x0, np.asarray(cs, np.float32)))


def ascend(q, actions, eta: float, steps: int) -> np.ndarray:
    """``steps`` steps of gradient ascent ``a <- a + eta grad_a q(a)`` from each of ``actions`` (one
    compiled loop)."""
    grad = jax.grad(lambda a: jnp.sum(q(a)))
    run = jax.jit(lambda a: jax.lax.fori_loop(0, steps, lambda _, a: a + eta * grad(a), a))
    return np.asarray(run(jnp.asarray(np.asarray(actions, np.float32))))
