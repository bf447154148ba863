"""``rql lab`` on a toy task: train flow BC, RQL and FQL with the real runner, then measure and draw.

The agents are trained by :func:`rql.training.train` into ordinary run directories under
``OUT/runs/<agent>`` (so ``rql lab --run OUT/runs/rql`` and ``rql eval``-style tools read them) and
restored with :func:`rql.training.restore_agent`; every figure is computed from those networks.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rql.data import toy
from rql.errors import RQLError
from rql.lab import draw
from rql.lab import measure as M
from rql.lab.page import Picture, Section, render

# Small networks that learn the toy task in a few thousand updates on a 2-core CPU; one action
# per decision (horizon 1) so that an action is a point in the plane.
ACTOR = dict(actor_hidden_dims=(64, 64, 64), horizon=1, batch_size=128, lr=1e-3)
LAB_AGENTS = {
    "flow-bc": dict(ACTOR, ema=0.99),
    "rql": dict(ACTOR, ema=0.99, value_hidden_dims=(64, 64), ensemble=2, alpha=0.1),
    "fql": dict(ACTOR, value_hidden_dims=(64, 64), ensemble=2, alpha=1.0),
}
LABELS = {"flow-bc": "flow BC", "rql": "RQL", "fql": "FQL"}
BC_STEP_FACTOR = 2  # flow BC is ~10x cheaper per update; it gets twice the updates to fit the modes well


def agent_steps(name: str, steps: int) -> int:
    return steps * BC_STEP_FACTOR if name == "flow-bc" else steps


def train_agents(out: pathlib.Path, task_spec: str, agents, steps: int, seed: int, log=print) -> dict:
    """Train (or reuse, or resume) one run per agent under ``out/runs``; returns per agent the run
    directory and the training seconds of this call."""
    from rql.agents import build_config
    from rql.data.loading import load_dataset
    from rql.training import RunConfig, load_run_config, train

    done = {}
    dataset = None
    for name in agents:
        run_dir = out / "runs" / name
        cfg = build_config(name, None, None, LAB_AGENTS[name])
        n = agent_steps(name, steps)
        t0 = time.time()
        if (run_dir / "config.json").exists():
            run, old_name, old_cfg, _ = load_run_config(run_dir)
            if old_name != name or old_cfg != cfg or run.dataset_path != task_spec or run.seed != seed:
                raise RQLError(f"{run_dir} holds a run with other settings; give another --out or remove it")
            summary = run_dir / "summary.json"
            if summary.exists() and json.loads(summary.read_text()).get("steps") == n:
                log(f"{LABELS[name]}: reusing {run_dir}")
                done[name] = {"run_dir": str(run_dir), "steps": n, "train_seconds": 0.0, "reused": True}
                continue
            log(f"{LABELS[name]}: continuing {run_dir} to {n} updates")
            train(dataclasses.replace(run, steps=n), name, cfg, resume_dir=str(run_dir), log=log)
        else:
            if dataset is None:
                dataset = load_dataset(None, task_spec, horizon=1)
            log(f"{LABELS[name]}: training {n} updates into {run_dir}")
            block = 500 if n % 500 == 0 else n
            run = RunConfig(dataset_path=task_spec, run_dir=str(run_dir), steps=n, eval_every=0, eval_episodes=0,
                            log_every=block, updates_per_dispatch=block, keep_checkpoints=1, seed=seed,
                            tensorboard=False, progress=False, download=False)
            train(run, name, cfg, dataset=dataset, log=log)
        done[name] = {"run_dir": str(run_dir), "steps": n, "train_seconds": time.time() - t0, "reused": False}
    return done


def _restore(run_dir):
    from rql.training import restore_agent

    _, agent, ts, step = restore_agent(run_dir, log=lambda *a: None)
    return agent, ts["agent"], step


def _act(agent, state, obs, n, seed):
    """``n`` actions of the policy's own act function in one observation (first action of each chunk)."""
    o = np.repeat(np.asarray(obs, np.float32).reshape(1, -1), n, axis=0)
    return np.asarray(jax.jit(agent.act)(state, o, jax.random.PRNGKey(seed))[:, 0])


def _took(r: dict) -> str:
    return "reused" if r["reused"] else f"trained in {r['train_seconds']:.0f} s"


def _pct(x):
    return f"{100 * x:.0f}%"


def horizon_numbers(gamma: float, F: int, h: int, Fs=tuple(range(1, 33))) -> dict:
    """The value-horizon arithmetic of treating flow steps as decisions, computed.

    A decision executes a chunk of ``h`` environment steps (discount ``gamma^h``). RQL bootstraps once
    per decision; making each of the ``F`` flow steps a decision bootstraps ``F`` times per decision,
    with ``gamma^(h/F)`` per flow step to keep the same horizon, or with ``gamma^h`` per flow step,
    which keeps the number of backups but shortens the horizon ``F``-fold."""
    H = 1.0 / (1.0 - gamma)
    g_dec = gamma**h
    g_flow = g_dec ** (1.0 / F)

    def backups90(g):  # bootstrap backups until 90% of the discount mass sum_k g^k
        return float(np.log(0.1) / np.log(g))

    ks = np.unique(np.logspace(0, np.log10(50 * backups90(g_dec) * F), 300).astype(int))

    def share(g):
        return 1.0 - g**ks

    return {
        "gamma": gamma, "F": F, "h": h,
        "value_horizon_env_steps": H,
        "value_horizon_decisions_rql": H / h,
        "value_horizon_decisions_flow_steps": H / h * F,
        "discount_per_flow_step": g_flow,
        "discount_mass_rql": 1.0 / (1.0 - g_dec),
        "discount_mass_flow_steps": 1.0 / (1.0 - g_flow),
        "backups_to_90pct_rql": backups90(g_dec),
        "backups_to_90pct_flow_steps": backups90(g_flow),
        "env_horizon_if_gamma_per_flow_step": h / (1.0 - g_dec**F),
        "Fs": list(Fs),
        "rql_backups90": [backups90(g_dec)] * len(Fs),
        "ext_backups90": [backups90(g_dec ** (1.0 / f)) for f in Fs],
        "naive_env_steps": [float(h / (1.0 - g_dec**f)) for f in Fs],
        "mass_curves": [
            (f"RQL: gamma^h={g_dec:.4g} per decision", (ks, share(g_dec)), "-"),
            (f"flow steps as decisions: gamma^(h/{F}) per flow step", (ks, share(g_flow)), "--"),
        ],
    }


# ----------------------------------------------------------------------------- the scene


@dataclasses.dataclass
class ToyScene:
    """What every figure of the toy lab is computed from: the task and its data, the state the
    figures are drawn in (``obs0``, where mode ``best`` is rewarded), the trained networks, one
    random generator the figures draw from in page order, and the numbers written to lab.json."""

    task_spec: str
    task: Any
    ds: Any
    best: int
    obs0: np.ndarray
    in_state: np.ndarray
    """Dataset indices of the steps taken in ``obs0``'s state."""
    landscape: tuple
    landscape_wide: tuple
    trained: dict
    """Per agent ``(agent, state, updates)``, restored from its run directory."""
    fields: dict
    rng: np.random.Generator
    x0: np.ndarray
    """Noise draws shared by the flow figures."""
    numbers: dict
    reversed: tuple = ()
    """``(dataset actions, their modes, reversed chains)`` of the reversal figure, reused by the value figures."""

    @property
    def rql_agent(self):
        return self.trained["rql"][0]

    @property
    def f_rql(self):
        return self.fields["rql"]

    @property
    def F(self) -> int:
        return self.rql_agent.config.flow_steps


def _check_lab_args(task_spec: str, agents, steps: int) -> str:
    if not task_spec.startswith(toy.PREFIX):
        task_spec = toy.PREFIX + task_spec
    toy.parse(task_spec)
    for need in ("flow-bc", "rql"):
        if need not in agents:
            raise RQLError(f"--agents must include {need} (the figures compare flow BC with RQL)")
    unknown = [a for a in agents if a not in LAB_AGENTS]
    if unknown:
        raise RQLError(f"rql lab trains {', '.join(LAB_AGENTS)}; unknown: {', '.join(unknown)}")
    if steps <= 0:
        raise RQLError("--steps must be positive")
    return task_spec


def _reward_landscape(task, obs0, half_width: float) -> tuple:
    """``(grid, reward on grid x grid)`` of the toy task in ``obs0``, over [-half_width, half_width]^2."""
    g = np.linspace(-half_width, half_width, 160, dtype=np.float32)
    GX, GY = np.meshgrid(g, g)
    return g, toy.reward(task, obs0, np.stack([GX.ravel(), GY.ravel()], -1)).reshape(len(g), len(g))


def load_scene(task_spec: str, runs: dict, agents, seed: int) -> ToyScene:
    """The toy task's data and the networks trained into ``runs`` (:func:`train_agents`)."""
    from rql.data.loading import load_dataset

    task = toy.parse(task_spec)
    ds = load_dataset(None, task_spec, horizon=1)
    best = 0
    obs0 = toy.observation(task, np.array([best]))  # the state every toy figure is drawn in
    in_state = np.flatnonzero(toy.best_mode(task, ds.observations) == best)
    landscape, landscape_wide = _reward_landscape(task, obs0, 1.05), _reward_landscape(task, obs0, 2.8)
    trained = {name: _restore(runs[name]["run_dir"]) for name in agents}
    fields = {name: M.fields(a, s) for name, (a, s, _) in trained.items()}
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((300, 2)).astype(np.float32)
    numbers: dict = {"task": task_spec, "toy": dataclasses.asdict(task), "seed": seed, "runs": runs,
                     "agent_configs": {n: dataclasses.asdict(trained[n][0].config) for n in agents}}
    return ToyScene(task_spec, task, ds, best, obs0, in_state, landscape, landscape_wide, trained, fields, rng, x0,
                    numbers)


# ----------------------------------------------------------------------------- the figures, in page order


def flow_paths_section(s: ToyScene) -> Section:
    """1. Noise flowing into actions: Euler paths of flow BC and RQL from the same noise (figure flow_paths)."""
    task, best, F, fields, trained, numbers, x0 = s.task, s.best, s.F, s.fields, s.trained, s.numbers, s.x0
    obs0, centres, rad, landscape_wide = s.obs0, s.task.centres, s.task.success_radius, s.landscape_wide
    frames, para = [], []
    numbers["flow_paths"] = {}
    for name in ("flow-bc", "rql"):
        f = fields[name]
        path = M.forward_path(f.sample, obs0, x0, trained[name][0].config.flow_steps)
        modes = toy.nearest_mode(task, np.clip(path[-1], -1, 1))
        frac = np.bincount(modes + 1, minlength=task.modes + 1) / len(modes)
        numbers["flow_paths"][name] = {"rewarded": float(frac[best + 1]), "no_mode": float(frac[0]),
                                       "per_mode": frac[1:].tolist(), "paths": int(len(modes))}
        para.append(f"{LABELS[name]}: {_pct(frac[best + 1])} reach the rewarded mode, "
                    f"{_pct(frac[0])} end between modes")
        for k in range(F + 1):
            frames.append(({"agent": name, "k": k},
                           draw.flow_paths(path, modes, centres, best, rad, landscape_wide, LABELS[name], upto=k)))
    return Section(
        "flow", "1. Noise flowing into actions",
        f"Euler trajectories of the trained velocity fields from the same {len(x0)} noise draws x0 ~ N(0, I), "
        f"F = {F} steps, each path coloured by the mode of the ring its end lands in (grey: none; gold star: the "
        f"rewarded mode; green: the reward). The path from x0 is fully determined by the field: the only "
        f"randomness is x0. Measured: {'; '.join(para)} (the behaviour data puts 1/{task.modes} = "
        f"{_pct(1 / task.modes)} in each mode).",
        [Picture("flow_paths", frames, "Euler paths from noise to actions",
                 [("agent", "agent", ["flow-bc", "rql"], ["flow BC", "RQL"]),
                  ("k", "step", list(range(F + 1)), [f"{k}/{F}" for k in range(F + 1)])],
                 {"agent": "rql", "k": F})])


def chain_numbers(Fs: list, cj: dict, hop: dict) -> dict:
    """lab.json's ``chain_gradient``: the chain's Jacobian norms against F (percentiles of log10
    over the noise draws), one step's norm, and the one hop against backpropagation."""
    lc = np.log10(cj["chain"])
    c = {
        "F": Fs,
        "chain_log10_median": np.median(lc, 1).tolist(),
        "chain_log10_p10": np.percentile(lc, 10, 1).tolist(),
        "chain_log10_p90": np.percentile(lc, 90, 1).tolist(),
        "chain_log10_min": lc.min(1).tolist(),
        "chain_log10_max": lc.max(1).tolist(),
        "step_log10_sum_median": np.median(cj["step_logsum"], 1).tolist(),
        "one_step_norm_mean_median": np.median(cj["step_mean"], 1).tolist(),
        "one_step_norm_max_median": np.median(cj["step_max"], 1).tolist(),
        "F_times_one_minus_step": (np.asarray(Fs) * (1 - np.median(cj["step_mean"], 1))).tolist(),
        "hop_vs_bptt_cos_median": float(np.median(hop["cos"])),
        "hop_vs_bptt_cos_median_per_step": np.median(hop["cos"], 1).tolist(),
        "bptt_norm_median_per_step": np.median(hop["bptt_norm"], 1).tolist(),
        "hop_norm_median_per_step": np.median(hop["hop_norm"], 1).tolist(),
    }
    c["log_chain_vs_F_fit"] = M.loglinear_fit(Fs, c["chain_log10_median"])
    c["log_chain_vs_sum_log_steps_gap"] = float(np.median(np.abs(lc - cj["step_logsum"])))
    return c


def chain_gradient_section(s: ToyScene) -> Section:
    """2. The gradient through the whole chain against F, and RQL's one hop against it (figure chain_gradient)."""
    f_rql, obs0, x0, F, numbers = s.f_rql, s.obs0, s.x0, s.F, s.numbers
    Fs = list(range(1, 33))
    cj = M.chain_jacobians(f_rql.reverse, obs0, x0[:256], Fs)
    hop = M.hop_vs_bptt(f_rql.reverse, f_rql.value, obs0, x0[:256], F)
    iF = Fs.index(F)
    c = chain_numbers(Fs, cj, hop)
    numbers["chain_gradient"] = c
    med = c["chain_log10_median"]
    converged = abs(med[-1] - med[15]) < 0.15
    limit = ("tends to a limit (the Jacobian of the flow's ODE) instead of exploding or vanishing geometrically "
             "with F; the flow's geometry makes it ill-conditioned, and BPTT pays F Jacobian products to reach it"
             if converged else "is still changing at F = 32")
    cos_step = c["hop_vs_bptt_cos_median_per_step"]
    return Section(
        "chain", "2. Gradient through the whole chain against F",
        f"For the trained RQL actor, the spectral norm of d action / d x0, the product of the F step Jacobians "
        f"(jax.jacfwd of each Euler step) that backpropagation through the chain multiplies, against the norm of "
        f"one step's Jacobian, for F = 1..32 over {cj['chain'].shape[1]} noise draws. At F = {F} the product's norm spans "
        f"10^{c['chain_log10_p10'][iF]:.2f} to 10^{c['chain_log10_p90'][iF]:.2f} (10-90%, median "
        f"10^{c['chain_log10_median'][iF]:.2f}; extremes 10^{c['chain_log10_min'][iF]:.2f} .. "
        f"10^{c['chain_log10_max'][iF]:.2f}): below 1 where the noise contracts into a mode, above 1 where it "
        f"splits between modes. One step's norm is {c['one_step_norm_mean_median'][iF]:.3f} on average at F = {F} "
        f"and {c['one_step_norm_mean_median'][-1]:.3f} at F = 32; the per-step deviation F x (1 - |J|) is "
        f"{c['F_times_one_minus_step'][7]:.2f}, {c['F_times_one_minus_step'][15]:.2f} and "
        f"{c['F_times_one_minus_step'][31]:.2f} at F = 8, 16, 32, so each step is I + O(1/F) and the chain is a "
        f"product of F such factors: its log-norm follows the sum of the F one-step log-norms (median gap "
        f"{c['log_chain_vs_sum_log_steps_gap']:.2f} decades). Because the flow's time is normalised (steps of "
        f"1/F), the product's median is 10^{med[0]:.2f} at F = 1, 10^{med[15]:.2f} at F = 16 and 10^{med[-1]:.2f} "
        f"at F = 32 (a straight line through log-norm against F has slope {c['log_chain_vs_F_fit']['slope']:.4f} "
        f"per step, R^2 {c['log_chain_vs_F_fit']['r2']:.2f}): it {limit}. Right: RQL's gradient at step i "
        f"passes through one call of v into V(s, x_(i+1), t_(i+1)). Against the full backpropagated gradient of "
        f"Q(action) = V(s, action, 1) its median cosine is {c['hop_vs_bptt_cos_median']:.2f} over all steps "
        f"(per step from {min(cos_step):.2f} to {max(cos_step):.2f}); the backpropagated gradient at x_0 has "
        f"median norm {c['bptt_norm_median_per_step'][0]:.3g} against {c['hop_norm_median_per_step'][0]:.3g} for "
        f"the one hop: where the chain contracts into a mode, the gradient through it nearly vanishes, while the "
        f"slope of V at each t is learned directly.",
        [Picture("chain_gradient", [({}, draw.chain_gradient(cj, hop))], "chain gradient against F")])


def horizon_section(s: ToyScene) -> Section:
    """3. The horizon arithmetic of treating flow steps as decisions (figure horizon)."""
    F, numbers = s.F, s.numbers
    rql_agent = s.rql_agent
    hz = horizon_numbers(0.99, F, rql_agent.config.horizon)
    numbers["horizon"] = {k: v for k, v in hz.items() if k != "mass_curves"}
    return Section(
        "horizon", "3. The horizon arithmetic",
        f"Computed for gamma = {hz['gamma']} (the usual discount; the toy task itself ends after one decision), "
        f"F = {F}, chunk h = {hz['h']}. The value horizon is H = 1/(1 - gamma) = {hz['value_horizon_env_steps']:.0f} "
        f"environment steps, {hz['value_horizon_decisions_rql']:.0f} decisions. Treating every flow step as a "
        f"decision makes it H x F = {hz['value_horizon_decisions_flow_steps']:.0f} decisions with a discount of "
        f"gamma^(h/F) = {hz['discount_per_flow_step']:.5f} per flow step: discount mass "
        f"{hz['discount_mass_flow_steps']:.0f} instead of {hz['discount_mass_rql']:.0f}, and "
        f"{hz['backups_to_90pct_flow_steps']:.0f} instead of {hz['backups_to_90pct_rql']:.0f} bootstrap backups to "
        f"reach 90% of it. Discounting each flow step by gamma^h instead keeps the backups but shrinks the horizon "
        f"to {hz['env_horizon_if_gamma_per_flow_step']:.1f} environment steps. RQL does neither: flow steps are "
        f"deterministic, reward-free and undiscounted, and its value target does not depend on t.",
        [Picture("horizon", [({}, draw.horizon(hz))], "horizon arithmetic")])


def reversal_section(s: ToyScene) -> Section:
    """4. Flow reversal of dataset actions and its round trip against F (figure reversal)."""
    task, best, F, f_rql, obs0, numbers, rng = s.task, s.best, s.F, s.f_rql, s.obs0, s.numbers, s.rng
    ds, in_state, centres, rad = s.ds, s.in_state, s.task.centres, s.task.success_radius
    pick = rng.choice(in_state, min(300, len(in_state)), replace=False)
    acts = ds.actions[pick]
    dmodes = toy.nearest_mode(task, acts)
    rpath = M.reversal_path(f_rql.reverse, obs0, acts, F)
    rt_Fs = sorted({1, 2, 4, 8, F, 16, 32, 64})
    rt = M.round_trip(f_rql.reverse, obs0, acts, rt_Fs)
    med = np.median(rt["error"], 1)
    fit = M.loglinear_fit(np.log(rt_Fs), np.log(med))
    x0r = rpath[0]
    numbers["reversal"] = {
        "F": rt_Fs, "roundtrip_median": med.tolist(), "roundtrip_p90": np.percentile(rt["error"], 90, 1).tolist(),
        "roundtrip_loglog_slope": fit["slope"],
        "reversed_noise_mean": x0r.mean(0).tolist(), "reversed_noise_std": x0r.std(0).tolist(),
    }
    iF = rt_Fs.index(F)
    s.reversed = (acts, dmodes, rpath)
    return Section(
        "reversal", "4. Flow reversal",
        f"Left: {len(acts)} dataset actions integrated backwards from t = 1 to t = 0 with RQL's current actor "
        f"(rql.flow.reverse, the partial actions its critic is trained on), coloured by the dataset action's mode. "
        f"The reversed noise has mean ({x0r.mean(0)[0]:.2f}, {x0r.mean(0)[1]:.2f}) and standard deviation "
        f"({x0r.std(0)[0]:.2f}, {x0r.std(0)[1]:.2f}) (N(0, I) has 0 and 1). Right: reverse with F steps, then "
        f"sample forward from the recovered noise with F steps: the median round-trip error is "
        f"{med[iF]:.3f} at F = {F}, {med[-2]:.3f} at F = 32 and {med[-1]:.4f} at F = 64, falling like "
        f"F^{fit['slope']:.2f}" + (" (Euler is first order): reversal is the sampler run backwards, up to the step "
                                   "size." if -1.3 < fit["slope"] < -0.7 else "."),
        [Picture("reversal", [({}, draw.reversal(rpath, dmodes, centres, best, rad, rt, F))], "flow reversal")])


def value_section(s: ToyScene) -> Section:
    """5. RQL's value along the reversed chains of the reversal figure (figures value_lines, value_t)."""
    task, best, F, f_rql, obs0, numbers = s.task, s.best, s.F, s.f_rql, s.obs0, s.numbers
    centres, rad = s.task.centres, s.task.success_radius
    acts, dmodes, rpath = s.reversed
    vals, grads = M.value_along(f_rql.value, obs0, rpath)
    mode_means = np.array([vals[-1, dmodes == k].mean() if np.any(dmodes == k) else np.nan for k in range(task.modes)])
    within = vals.max(0) - vals.min(0)
    across = float(np.nanmax(mode_means) - np.nanmin(mode_means))
    gmed = np.median(grads, 1)
    ratio = float(np.median(within) / max(across, 1e-9))
    gratio = float(gmed.max() / max(gmed.min(), 1e-9))
    true_r = np.array([toy.reward(task, obs0, acts[dmodes == k]).mean() if np.any(dmodes == k) else np.nan
                       for k in range(task.modes)])
    numbers["value_along_chain"] = {
        "t": (np.arange(F + 1) / F).tolist(),
        "within_chain_range_median": float(np.median(within)),
        "within_chain_std_mean": float(vals.std(0).mean()),
        "across_mode_range": across,
        "flatness_ratio": ratio,
        "value_by_mode_t1": mode_means.tolist(),
        "value_by_mode_t0": [float(vals[0, dmodes == k].mean()) if np.any(dmodes == k) else None
                             for k in range(task.modes)],
        "reward_by_mode": true_r.tolist(),
        "grad_norm_median": gmed.tolist(),
        "grad_norm_max_over_min": gratio,
    }
    vg, vgrad, gcoord = M.value_grids(f_rql.value, obs0, [k / F for k in range(F + 1)], 2.8, 60)
    # Colours span the values met along the chains (the grid extrapolates far from them).
    vr = (float(np.percentile(vals, 1)), float(np.percentile(vals, 99)))
    gscale = float(np.percentile(np.linalg.norm(vgrad, axis=-1), 95))
    vframes = [({"t": k}, draw.value_frame(gcoord, vg[k], vgrad[k], rpath[k], dmodes, task.modes, k / F, vr, gscale,
                                           *((centres, best, rad) if k == F else ()))) for k in range(F + 1)]
    return Section(
        "value", "5. The value along a reversed chain",
        f"RQL's value V(s, x_t, t) (ensemble mean) at the partial actions of the reversed chains of section 4. "
        f"Along one chain the value {'barely moves' if ratio < 0.3 else 'moves'}: median range over t "
        f"{np.median(within):.3f}, against {across:.3f} between the modes' values at t = 1 (ratio {ratio:.2f}); its "
        f"value per mode at t = 1 is {', '.join(f'{v:.2f}' for v in mode_means)} for rewards "
        f"{', '.join(f'{v:.2f}' for v in true_r)}. Its slope {'does' if gratio > 1.3 else 'hardly does'} "
        f"change: the median |grad_x V| is "
        f"{gmed[0]:.3f} at t = 0, {gmed[F // 2]:.3f} at t = 0.5 and {gmed[-1]:.3f} at t = 1 (largest/smallest "
        f"over t: {gmed.max() / max(gmed.min(), 1e-9):.1f}x). That is why V takes t: the scalar is the Q-value of "
        f"the action the chain will become, but the direction to move x_t depends on the noise level. Slide t "
        f"to see V(s, ., t) and its gradient field with the chains' points at that t.",
        [Picture("value_lines", [({}, draw.value_lines(vals, grads, dmodes, task.modes))], "value along chains"),
         Picture("value_t", vframes, "value landscape at time t",
                 [("t", "t", list(range(F + 1)), [f"{k / F:.1f}" for k in range(F + 1)])], {"t": F})])


def estimators_section(s: ToyScene) -> Section:
    """6. Score-function against pathwise gradient estimates of the same gradient (figure estimators)."""
    f_rql, obs0, seed, numbers, trained = s.f_rql, s.obs0, s.numbers["seed"], s.numbers, s.trained
    bc_agent, bc_state, _ = trained["flow-bc"]
    a_bc = _act(bc_agent, bc_state, obs0, 2000, seed + 11)

    def q(a):
        n = a.shape[0]
        return f_rql.value(jnp.broadcast_to(jnp.asarray(obs0), (n, 2)), a, jnp.ones((n, 1), jnp.float32))

    sigmas = [0.02, 0.05, 0.1, 0.2, 0.4]
    ge = M.gradient_estimators(q, a_bc, sigmas, 300, 64, jax.random.PRNGKey(seed + 5))
    i1 = sigmas.index(0.1)
    numbers["estimators"] = {k: v for k, v in ge.items() if k != "raw"}
    numbers["estimators"]["variance_ratio_score_over_pathwise"] = [a / b for a, b in zip(ge["score"], ge["pathwise"])]
    numbers["estimators"]["variance_ratio_baseline_over_pathwise"] = [
        a / b for a, b in zip(ge["score_baseline"], ge["pathwise"])]
    clouds = {**ge["raw"][i1], "sigma": 0.1}
    diff = np.abs(np.subtract(ge["score_baseline_mean"], ge["pathwise_mean"]))
    se = np.hypot(ge["score_baseline_stderr"], ge["pathwise_stderr"])
    numbers["estimators"]["means_differ_in_stderrs"] = (diff / np.maximum(se, 1e-12)).max(1).tolist()
    z1 = numbers["estimators"]["means_differ_in_stderrs"][i1]
    sf_slope = M.loglinear_fit(np.log(sigmas), np.log(ge["score"]))["slope"]
    pw_slope = M.loglinear_fit(np.log(sigmas), np.log(ge["pathwise"]))["slope"]
    numbers["estimators"]["variance_vs_sigma_loglog_slope"] = {"score": sf_slope, "pathwise": pw_slope}
    return Section(
        "estimators", "6. Score-function vs pathwise gradients",
        f"The same gradient, d/db E[Q(a + b + sigma eps)] at b = 0, with a drawn from the flow BC policy and Q = "
        f"RQL's value at t = 1, estimated {ge['draws']} times from {ge['batch']} samples each. At sigma = 0.1 the "
        f"score-function estimate (mean of Q eps / sigma) has variance {ge['score'][i1]:.3g}, "
        f"{ge['score_baseline'][i1]:.3g} with a leave-one-out baseline, and the pathwise estimate (mean of "
        f"grad Q) {ge['pathwise'][i1]:.3g}: {ge['score'][i1] / ge['pathwise'][i1]:.0f}x and "
        f"{ge['score_baseline'][i1] / ge['pathwise'][i1]:.0f}x less for the pathwise one. Both estimate the same "
        f"vector: their means over the draws, ({ge['score_baseline_mean'][i1][0]:.3f}, "
        f"{ge['score_baseline_mean'][i1][1]:.3f}) and ({ge['pathwise_mean'][i1][0]:.3f}, "
        f"{ge['pathwise_mean'][i1][1]:.3f}), differ by {z1:.1f} standard errors at most. Against sigma, the "
        f"variance goes like sigma^{sf_slope:.2f} for the score function ({ge['score'][0]:.3g} at sigma = "
        f"{sigmas[0]}) and sigma^{pw_slope:.2f} for the pathwise estimate. RQL's actor update is pathwise, one "
        f"flow step at a time.",
        [Picture("estimators", [({}, draw.estimators(ge, clouds))], "gradient estimators")])


def policies_section(s: ToyScene) -> Section:
    """7. Samples of every trained policy against the dataset's (figure policies)."""
    task, best, obs0, numbers, rng, trained = s.task, s.best, s.obs0, s.numbers, s.rng, s.trained
    ds, in_state, landscape, centres, rad = s.ds, s.in_state, s.landscape, s.task.centres, s.task.success_radius
    seed, agents, rql_agent = numbers["seed"], list(s.trained), s.rql_agent
    panels = []
    data_acts = ds.actions[rng.choice(in_state, min(1000, len(in_state)), replace=False)]
    data_succ = float(toy.success(task, obs0, data_acts).mean())
    panels.append(("dataset (behaviour)", data_acts, data_succ))
    numbers["policies"] = {"dataset": {"rewarded": data_succ}}
    for name in agents:
        a, state, step = trained[name]
        acts_n = _act(a, state, obs0, 1000, seed + 7)
        modes = toy.nearest_mode(task, acts_n)
        succ = float(toy.success(task, obs0, acts_n).mean())
        numbers["policies"][name] = {"rewarded": succ, "no_mode": float(np.mean(modes < 0)),
                                     "mean_reward": float(toy.reward(task, obs0, acts_n).mean()), "updates": int(step)}
        panels.append((f"{LABELS[name]} ({step} updates)", acts_n, succ))
    pol = numbers["policies"]
    return Section(
        "policies", "7. The policy before and after RQL",
        f"1000 samples of each trained policy (its own act function: the EMA flow for flow BC and RQL, the "
        f"one-step policy for FQL) on the reward landscape. In the rewarded mode: dataset "
        f"{_pct(pol['dataset']['rewarded'])}, " + ", ".join(
            f"{LABELS[n]} {_pct(pol[n]['rewarded'])} (mean reward {pol[n]['mean_reward']:.2f})" for n in agents)
        + f". RQL keeps a behaviour-cloning term (alpha = {rql_agent.config.alpha}); "
          f"{_pct(pol['rql']['no_mode'])} of its samples land between modes.",
        [Picture("policies", [({}, draw.policies(panels, centres, best, rad, landscape))], "policy samples")])


FIGURES = (
    ("flow_paths", flow_paths_section),
    ("chain_gradient", chain_gradient_section),
    ("horizon", horizon_section),
    ("reversal", reversal_section),
    ("value_along_chain", value_section),
    ("estimators", estimators_section),
    ("policies", policies_section),
)
"""The page's figures in order: (timing key in lab.json, the step that computes and draws it)."""


# ----------------------------------------------------------------------------- the lab


def run_toy_lab(out: pathlib.Path, task_spec: str = "toy:ring", steps: int = 3000, seed: int = 0,
                agents=("flow-bc", "rql", "fql"), log=print) -> dict:
    """Train the agents (or reuse their runs), make every figure of :data:`FIGURES` in order and
    write the page; returns the numbers written to lab.json."""
    t_start = time.time()
    task_spec = _check_lab_args(task_spec, agents, steps)
    out.mkdir(parents=True, exist_ok=True)
    runs = train_agents(out, task_spec, agents, steps, seed, log=log)
    t_train = time.time() - t_start
    log("measuring and drawing ...")
    t_mark = time.time()
    scene = load_scene(task_spec, runs, agents, seed)
    section_seconds = {"restore": time.time() - t_mark}
    sections = []
    for name, make_section in FIGURES:
        t_mark = time.time()
        sections.append(make_section(scene))
        section_seconds[name] = time.time() - t_mark
    t_total = time.time() - t_start
    scene.numbers["timing"] = {"train_seconds": t_train, "total_seconds": t_total,
                               "figures_seconds": t_total - t_train, "sections": section_seconds}
    page = write_toy_page(out, scene, sections, runs, agents, f"{t_total:.0f} s in all ({t_train:.0f} s training)")
    log(f"lab page: {page} ({t_total:.0f} s; training {t_train:.0f} s)")
    return scene.numbers


def write_toy_page(out: pathlib.Path, scene: ToyScene, sections: list, runs: dict, agents, took: str):
    """index.html (with its figures) and lab.json; returns the page's path."""
    task, best = scene.task, scene.best
    table = [("task", f"{scene.task_spec} ({task.modes} modes, rewarded mode {best})"),
             *[(LABELS[n], f"{runs[n]['steps']} updates, {_took(runs[n])} -> {runs[n]['run_dir']}") for n in agents],
             ("time", took)]
    trained_names = ", ".join(LABELS[n] for n in agents)
    intro = ("The ideas of Reversal Q-Learning, measured on networks trained by this project's own runner "
             "(rql.training.train) on a toy offline task with a 2-D action: behaviour actions from a ring of "
             f"{task.modes} Gaussian blobs, a reward that prefers one of them. "
             f"{trained_names[0].upper() + trained_names[1:]} were trained with the settings in lab.json; "
             "every figure below is computed from their checkpoints."
             + (f" The state names the rewarded mode; the figures are drawn in the state that rewards mode {best}."
                if task.context else ""))
    return render(out, "rql lab: Reversal Q-Learning, measured", intro, sections, scene.numbers, table)
