"""``rql lab --run RUN_DIR``: the figures that make sense for a real run, from its checkpoint and
on states from its own dataset: flow reversal round trip against F, the value along reversed
chains (RQL only), and the spread of the policy's samples per state (beside a baseline run's)."""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import numpy as np

from rql.errors import RQLError
from rql.lab import draw, live, livejs
from rql.lab import measure as M
from rql.lab.page import Picture, Section, _jsonable, render


def _load(run_dir: str, checkpoint: int | None):
    from rql.training import restore_agent

    if not (pathlib.Path(run_dir) / "config.json").exists():
        raise RQLError(f"{run_dir}: no config.json; is this a run directory made by 'rql train'?")
    run, agent, ts, step = restore_agent(run_dir, checkpoint, log=lambda *a: None)
    return run, agent, ts["agent"], step


def _windows(ds, horizon: int, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """``n`` states and the dataset's action chunk that followed each (whole chunks inside one episode)."""
    starts, ends = ds.episode_bounds()
    cand = np.concatenate([np.arange(s, e - horizon + 2) for s, e in zip(starts, ends) if e - s + 1 >= horizon])
    if cand.size == 0:
        raise RQLError(f"{ds.source}: no episode holds a chunk of {horizon} actions")
    idx = rng.choice(cand, min(n, cand.size), replace=False)
    chunks = np.stack([ds.actions[i : i + horizon].reshape(-1) for i in idx])
    return ds.observations[idx], chunks


def _samples(agent, state, obs, k: int, seed: int) -> np.ndarray:
    """(S, k, chunk) policy samples, ``k`` per state."""
    o = np.repeat(np.asarray(obs, np.float32), k, axis=0)
    a = np.asarray(jax.jit(agent.act)(state, o, jax.random.PRNGKey(seed)))
    return a.reshape(obs.shape[0], k, -1)


@dataclasses.dataclass
class RunScene:
    """What the figures of a run are computed from: its restored agent, an optional baseline run's,
    and ``states`` dataset states with the action chunk that followed each."""

    run_dir: str
    agent: Any
    state: Any
    step: int
    base: tuple | None
    """``(label, agent, state)`` of the --baseline run, or None."""
    ds: Any
    obs: np.ndarray
    chunks: np.ndarray
    f: Any
    """The run's networks as functions (:func:`rql.lab.measure.fields`)."""
    F: int
    label: str
    seed: int
    numbers: dict
    live: dict | None = None
    """The page data of the live figures (:func:`run_live_data`)."""


def load_run_scene(run_dir: str, baseline: str | None, checkpoint: int | None, states: int, seed: int,
                   log=print) -> RunScene:
    from rql.data.loading import load_dataset

    run, agent, state, step = _load(run_dir, checkpoint)
    cfg = agent.config
    base = None
    if baseline:
        _, b_agent, b_state, b_step = _load(baseline, None)
        if (b_agent.obs_dim, b_agent.action_dim, b_agent.config.horizon) != (agent.obs_dim, agent.action_dim,
                                                                            cfg.horizon):
            raise RQLError(f"{baseline}: its observations, actions or chunk length differ from {run_dir}'s")
        base = (f"{b_agent.name} ({pathlib.Path(baseline).name}, update {b_step})", b_agent, b_state)
    log(f"{run_dir}: {agent.name} at update {step}; loading its dataset ...")
    ds = load_dataset(run.task, run.dataset_path, run.dataset_dir, horizon=cfg.horizon, sparse=cfg.sparse,
                      download=False)
    if (ds.obs_dim, ds.action_dim) != (agent.obs_dim, agent.action_dim):
        raise RQLError(f"{ds.source}: its dimensions differ from the run's ({agent.obs_dim}/{agent.action_dim})")
    rng = np.random.default_rng(seed)
    obs, chunks = _windows(ds, cfg.horizon, states, rng)
    f = M.fields(agent, state)
    label = f"{agent.name} ({pathlib.Path(run_dir).name}, update {step})"
    numbers: dict = {"run_dir": str(run_dir), "agent": agent.name, "checkpoint": step, "dataset": ds.source,
                     "states": int(len(obs)), "chunk_dim": int(chunks.shape[1])}
    return RunScene(run_dir, agent, state, step, base, ds, obs, chunks, f, f.flow_steps or 10, label, seed, numbers)


# ----------------------------------------------------------------------------- the figures, in page order


def roundtrip_section(s: RunScene) -> Section:
    """Flow reversal: the dataset chunks reversed to noise and sampled back, against F (figure run_roundtrip)."""
    f, obs, chunks, F, agent = s.f, s.obs, s.chunks, s.F, s.agent
    if f.reverse is None:
        return Section("reversal", "Flow reversal: round trip against F",
                       f"This run's agent ({agent.name}) has no flow velocity field, so there is nothing "
                       f"to reverse.")
    Fs = sorted({1, 2, 4, 8, F, 16, 32, 64})
    rt = M.round_trip(f.reverse, obs, chunks, Fs)
    med = np.median(rt["error"], 1)
    fit = M.loglinear_fit(np.log(Fs), np.log(np.maximum(med, 1e-12)))
    s.numbers["reversal"] = {"F": Fs, "roundtrip_median": med.tolist(),
                             "roundtrip_p90": np.percentile(rt["error"], 90, 1).tolist(),
                             "roundtrip_loglog_slope": fit["slope"]}
    iF = Fs.index(F)
    which = "the current actor RQL reverses with" if agent.name == "rql" else "the run's behaviour flow"
    return Section(
        "reversal", "Flow reversal: round trip against F",
        f"The dataset action chunks of {len(obs)} states ({chunks.shape[1]} numbers each) reversed to noise with "
        f"{which} in F steps, then sampled forward from that noise in F steps. Median round-trip error (RMS per "
        f"action dimension): {med[iF]:.4f} at the run's F = {F}, {med[0]:.4f} at F = 1, {med[-1]:.5f} at F = 64; "
        f"it falls like F^{fit['slope']:.2f}.",
        [Picture("run_roundtrip", [({}, draw.run_roundtrip(rt, s.label))], "round trip")])


def value_section(s: RunScene) -> Section:
    """RQL's value V(s, x_t, t) along the reversed chains of the dataset chunks (figure run_value)."""
    f, obs, F = s.f, s.obs, s.F
    if f.value is None:
        return Section(
            "value", "The value along reversed chains",
            f"Only RQL learns a value V(s, x, t) on partial actions; this run's agent is {s.agent.name}, so there "
            f"is no such value to draw.")
    path = M.reversal_path(f.reverse, obs, s.chunks, F)
    vals, grads = M.value_along(f.value, obs, path)
    within = vals.max(0) - vals.min(0)
    across = float(np.std(vals[-1]))
    gmed = np.median(grads, 1)
    s.numbers["value_along_chain"] = {
        "t": (np.arange(F + 1) / F).tolist(), "within_chain_range_median": float(np.median(within)),
        "across_state_std_t1": across, "flatness_ratio": float(np.median(within) / max(across, 1e-9)),
        "grad_norm_median": gmed.tolist(), "grad_norm_max_over_min": float(gmed.max() / max(gmed.min(), 1e-12)),
    }
    return Section(
        "value", "The value along reversed chains",
        f"V(s, x_t, t) of the run's value ensemble (mean) on the partial actions of the same {len(obs)} dataset "
        f"chunks reversed to t = k/{F}. Median range of V along one chain: {np.median(within):.4g}; spread "
        f"(std) of V(s, a, 1) across the states: {across:.4g} (ratio {np.median(within) / max(across, 1e-9):.2f}). "
        f"Median |grad_x V|: {gmed[0]:.4g} at t = 0, {gmed[F // 2]:.4g} at t = 0.5, {gmed[-1]:.4g} at t = 1 "
        f"(largest/smallest over t {gmed.max() / max(gmed.min(), 1e-12):.1f}x).",
        [Picture("run_value", [({}, draw.value_lines(vals, grads, np.full(len(obs), -1), 0))], "value along")])


SPREAD_SAMPLES = 32  # policy samples per state


def spread_section(s: RunScene) -> Section:
    """The spread of the policy's samples per state, beside the baseline's (figure run_spread)."""
    K, chunks = SPREAD_SAMPLES, s.chunks
    groups_all = [(s.label, s.agent, s.state)] + ([s.base] if s.base else [])
    spreads, draws = {}, []
    for i, (lab, a, st) in enumerate(groups_all):
        smp = _samples(a, st, s.obs, K, s.seed + 3 + i)
        per_state = np.sqrt(np.mean(np.var(smp, axis=1), axis=-1))
        to_data = np.linalg.norm(smp - chunks[:, None], axis=-1).min(1) / np.sqrt(chunks.shape[1])
        spreads[a.name if i == 0 else f"baseline:{a.name}"] = {
            "per_state_std_mean": float(per_state.mean()), "nearest_sample_to_data_rms_mean": float(to_data.mean())}
        draws.append((lab, smp))
    data_std = float(np.sqrt(np.mean(np.var(chunks, axis=0))))
    s.numbers["spread"] = {"samples_per_state": K, "dataset_across_state_std": data_std, **spreads}
    text = "; ".join(f"{k}: per-state sample std {v['per_state_std_mean']:.3f}, nearest of {K} samples to the "
                     f"dataset chunk {v['nearest_sample_to_data_rms_mean']:.3f} (RMS per dim)"
                     for k, v in spreads.items())
    return Section(
        "spread", "Policy samples per state",
        f"{K} samples of the policy (its own act function) in each of {len(s.obs)} dataset states. {text}. For "
        f"scale, the dataset chunks vary by {data_std:.3f} (std per dim) across these states. The pictures show "
        f"four states projected on the first two principal axes of their samples and data chunks."
        + ("" if s.base else " Give --baseline RUN_DIR (e.g. a flow-BC run on the same data) to draw a "
                             "behaviour-cloning policy beside it."),
        [Picture("run_spread", [({}, draw.run_spread(_projected(draws, chunks), s.label))], "samples per state")])


def _projected(draws: list, chunks: np.ndarray) -> list:
    """The first four states' samples and data chunks on the principal axes of their pool."""
    S = min(4, len(chunks))
    pool = np.concatenate([chunks[:S]] + [d[1][:S].reshape(-1, chunks.shape[1]) for d in draws])
    mean = pool.mean(0)
    _, _, vt = np.linalg.svd(pool - mean, full_matrices=False)
    proj = vt[:2].T if vt.shape[0] >= 2 else np.eye(chunks.shape[1], 2)
    cols = ["C3", "C0", "C2"]
    groups = [(lab, (d[:S] - mean) @ proj, cols[i % 3]) for i, (lab, d) in enumerate(draws)]
    groups.append(("dataset chunk", ((chunks[:S] - mean) @ proj)[:, None, :], "k"))
    return groups


def live_section(s: RunScene) -> Section:
    """The live figures of a run: samples per state, a dataset chunk's reversal and value, ascent (RQL)."""
    data = s.live
    if data is None or "sample" not in data["model"]["nets"]:
        return Section("live", "Live: the run's networks in the page",
                       f"This run's agent ({s.agent.name}) has no flow velocity field the page can run; the "
                       f"figures below are computed in JAX.")
    info = data["run"]
    figs = ["run_samples", "run_reversal"] + (["run_ascend"] if "value" in data["model"]["nets"] else [])
    nets = data["model"]["nets"]
    listed = ", ".join(k + ": " + v["note"] for k, v in nets.items())
    return Section(
        "live", "Live: the run's networks in the page",
        f"The run's networks travel in this page ({listed}; "
        f"{data['model']['floats']} float32 numbers) and run in the browser. Pick one of the {info['states']} "
        f"dataset states (slider or 'random state'). Samples: 're-roll' draws {info['samples']} noise vectors and "
        f"integrates the policy's velocity field for F = {info['F']} Euler steps. Reversal: the dataset chunk of "
        f"that state reversed to t = k/F with the actor RQL reverses with, sampled forward again, and "
        + ("the trained value V(s, x_t, t) along the chain. Ascent: a partial action x_t of that chain walked up "
           "grad_x V(s, x, t) (the network's backward pass in the page). " if "value" in nets else
           "(this run learns no value on partial actions). ")
        + f"Chunks have {info['chunk_dim']} numbers ({info['horizon']} x {info['action_dim']}); they are drawn "
        f"on {info['projection']['name']}.",
        live=figs)


FIGURES = (live_section, roundtrip_section, value_section, spread_section)
"""The page's figures in order."""


LIVE_SCRIPT = livejs.CORE + livejs.PLOT + livejs.RUN

LIVE_SAMPLES = 32
"""Policy samples per re-roll on the run page."""


def _flat_net(params) -> bool:
    """Whether a Flax parameter tree is a bare MLP the page can run (no image encoder in front)."""
    inner = params.get("params", params) if isinstance(params, dict) else {}
    return isinstance(inner, dict) and len(inner) == 1 and next(iter(inner)) in ("MLP_0", "VmapMLP_0")


def run_nets(agent, state) -> dict:
    """``{page name: (params, inputs, note)}``: the networks of a run the page runs."""
    params = state.get("params", {})
    out = {}
    if agent.name in ("rql", "flow-bc") and "actor" in params:
        out["sample"] = (state.get("target_actor", params["actor"]), ["obs", "x", "t"],
                         "the velocity field the policy samples with (EMA)")
        out["reverse"] = (params["actor"], ["obs", "x", "t"], "the current velocity field (reversal)")
    elif "flow" in params:
        out["sample"] = (params["flow"], ["obs", "x", "t"], "the behaviour flow")
        out["reverse"] = (params["flow"], ["obs", "x", "t"], "the behaviour flow")
    if agent.name == "rql" and "value" in params:
        out["value"] = (params["value"], ["obs", "x", "t"], "the value ensemble V(s, x, t), averaged")
    if not all(_flat_net(p) for p, _, _ in out.values()):
        return {}
    return out


def projection(chunks: np.ndarray) -> dict:
    """The 2-D view of action chunks: the chunk itself when it has two numbers, else its first two
    principal axes over the given chunks (named, with the variance each explains)."""
    d = chunks.shape[1]
    mean = chunks.mean(0)
    if d <= 2:
        P = np.eye(d, 2, dtype=np.float32)
        return {"P": P, "mean": np.zeros(d, np.float32), "name": "action dims 1 and 2" if d == 2 else "action dim 1",
                "axes": ["action dim 1", "action dim 2"], "explained": [1.0, 0.0]}
    _, sv, vt = np.linalg.svd(chunks - mean, full_matrices=False)
    var = sv**2 / max(float(np.sum(sv**2)), 1e-12)
    return {"P": vt[:2].T.astype(np.float32), "mean": mean.astype(np.float32),
            "name": (f"the first two principal axes of the {len(chunks)} dataset chunks shown (PC1 explains "
                     f"{100 * var[0]:.0f}% of their variance, PC2 {100 * var[1]:.0f}%)"),
            "axes": [f"PC1 ({100 * var[0]:.0f}%)", f"PC2 ({100 * var[1]:.0f}%)"], "explained": var[:2].tolist()}


def run_live_data(agent, state, obs: np.ndarray, chunks: np.ndarray, base=None, label: str = "") -> dict | None:
    """The page data of a run's live figures (``None`` when the agent has no network the page can run):
    its networks (packed float32), ``obs`` and their dataset ``chunks``, and the 2-D projection."""
    nets = run_nets(agent, state)
    if not nets:
        return None
    pk = live.Packer()
    for name, (params, inputs, note) in nets.items():
        pk.net(name, params, inputs, note)
    base_label = None
    if base is not None:
        b_nets = run_nets(base[1], base[2])
        if "sample" in b_nets:
            pk.net("base_sample", b_nets["sample"][0], ["obs", "x", "t"], f"{base[0]}: its sampling velocity field")
            base_label = base[0]
    obs = np.asarray(obs, np.float32)
    chunks = np.asarray(chunks, np.float32)
    proj = projection(chunks)
    pk.array("obs", obs)
    pk.array("chunks", chunks)
    pk.array("P", proj["P"])
    pk.array("mean", proj["mean"])
    c = agent.config
    F = getattr(c, "flow_steps", None) or 10
    return {"model": pk.spec(), "run": {
        "F": F, "states": int(len(obs)), "obs_dim": int(obs.shape[1]), "chunk_dim": int(chunks.shape[1]),
        "horizon": int(c.horizon), "action_dim": int(agent.action_dim), "agent": agent.name, "label": label,
        "base": base_label, "samples": LIVE_SAMPLES, "gamma": float(getattr(c, "discount", 0.99)),
        "projection": {k: v for k, v in proj.items() if k in ("name", "axes", "explained")}}}


# ----------------------------------------------------------------------------- the lab


def run_run_lab(out: pathlib.Path, run_dir: str, baseline: str | None = None, checkpoint: int | None = None,
                states: int = 64, seed: int = 0, log=print) -> dict:
    """Restore the run (and the baseline), make every figure of :data:`FIGURES` and write the page;
    returns the numbers written to lab.json."""
    t0 = time.time()
    s = load_run_scene(run_dir, baseline, checkpoint, states, seed, log=log)
    s.live = run_live_data(s.agent, s.state, s.obs, s.chunks, s.base, s.label)
    sections = [make_section(s) for make_section in FIGURES]
    s.numbers["timing"] = {"total_seconds": time.time() - t0}
    agent, step = s.agent, s.step
    intro = (f"Measured from the checkpoint of {run_dir} ({agent.name}, update {step}) on {len(s.obs)} states "
             f"of its dataset {s.ds.source}."
             + (" The first section runs the run's own networks in the browser: pick a state, re-roll samples, "
                "follow a dataset chunk's reversal." if s.live is not None else ""))
    if s.live is not None:
        s.numbers["page"] = {"weights_floats": s.live["model"]["floats"],
                             "nets": {k: v["params"] for k, v in s.live["model"]["nets"].items()}}
    page = render(out, f"rql lab: {pathlib.Path(run_dir).name}", intro, sections, s.numbers,
                  [("run", str(run_dir)), ("agent", agent.name), ("checkpoint", str(step)),
                   ("chunk", f"h = {agent.config.horizon} x {agent.action_dim} actions"), ("flow steps", str(s.F))],
                  s.live, LIVE_SCRIPT if s.live is not None else "")
    if s.live is not None:
        s.numbers["page"]["bytes"] = page.stat().st_size
        (out / "lab.json").write_text(json.dumps(s.numbers, indent=2, default=_jsonable))
    log(f"lab page: {page} ({time.time() - t0:.0f} s)")
    return s.numbers
