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
from rql.lab import draw, live, livejs
from rql.lab import measure as M
from rql.lab.page import Picture, Section, _jsonable, render

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
    value_range: tuple = (0.0, 1.0)
    metrics: dict = dataclasses.field(default_factory=dict)
    rql_paths: Any = None
    """Section 1's Euler paths of the RQL policy (F + 1, N, 2), reused by section 3."""
    """Per metric, per agent: ``[[update, value], ...]`` from the runs' metrics.csv."""
    """Colour range of the live value maps: the 1-99% of V along the reversed chains."""

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
    """1. Noise flowing into actions: Euler paths of flow BC and RQL from the same noise (live figure flow)."""
    task, best, F, fields, trained, numbers, x0, obs0 = s.task, s.best, s.F, s.fields, s.trained, s.numbers, s.x0, s.obs0
    para = []
    numbers["flow_paths"] = {}
    for name in ("flow-bc", "rql"):
        f = fields[name]
        path = M.forward_path(f.sample, obs0, x0, trained[name][0].config.flow_steps)
        if name == "rql":
            s.rql_paths = path
        modes = toy.nearest_mode(task, np.clip(path[-1], -1, 1))
        frac = np.bincount(modes + 1, minlength=task.modes + 1) / len(modes)
        numbers["flow_paths"][name] = {"rewarded": float(frac[best + 1]), "no_mode": float(frac[0]),
                                       "per_mode": frac[1:].tolist(), "paths": int(len(modes))}
        para.append(f"{LABELS[name]}: {_pct(frac[best + 1])} reach the rewarded mode, "
                    f"{_pct(frac[0])} end between modes")
    return Section(
        "flow", "1. Noise flowing into actions",
        f"Euler trajectories of the trained velocity fields (the EMA actor each policy samples with) from "
        f"noise x0 ~ N(0, I), F = {F} steps, each path coloured by the mode of the ring its end lands in (grey: "
        f"none; gold star: the rewarded mode; green: the reward). The path from x0 is fully determined by the "
        f"field: the only randomness is x0. 're-roll noise' draws 200 new x0 and runs the trained network in "
        f"the page; 'flow step' and 'play' show the paths up to step k. Measured in JAX on {len(x0)} draws: "
        f"{'; '.join(para)} (the behaviour data puts 1/{task.modes} = {_pct(1 / task.modes)} in each mode).",
        live=["flow"])


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
        "chain", "2. Route A: backpropagating through the whole chain",
        f"Above, live: through F steps, a gradient is multiplied by F step Jacobians, so a per-step factor "
        f"lambda gives lambda^F (drag F and lambda); the red curve is the trained actor's own product, "
        f"|d x^F / d x^0| for 16 noise draws, computed in the page from its Jacobians. Below, measured: "
        f"for the trained RQL actor, the spectral norm of d action / d x0, the product of the F step Jacobians "
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
        [Picture("chain_gradient", [({}, draw.chain_gradient(cj, hop))], "chain gradient against F")],
        live=["bptt"])


def unroll_section(s: ToyScene) -> Section:
    """3. Route B: one environment step unrolled into F decision steps (live figure only)."""
    F, f_rql, obs0, x0 = s.F, s.f_rql, s.obs0, s.x0
    path = s.rql_paths  # section 1's Euler paths of the RQL policy
    n = path.shape[1]
    t = np.repeat(np.arange(F + 1, dtype=np.float32) / F, n)[:, None]
    vals = np.asarray(f_rql.value(jnp.asarray(np.tile(obs0.reshape(1, -1), (len(t), 1))),
                                  jnp.asarray(path.reshape(-1, path.shape[-1])), jnp.asarray(t))).reshape(F + 1, n)
    within = vals.max(0) - vals.min(0)
    s.numbers["unroll"] = {"chains": int(len(x0)), "value_range_along_chain_median": float(np.median(within)),
                           "value_t1_std_across_chains": float(vals[-1].std())}
    return Section(
        "unroll", "3. Route B: every flow step a decision",
        f"'unroll' splits the one action a_t of an environment step into the {F} decision steps of the extended "
        f"MDP, x^0 -> x^1 -> ... -> x^{F} = a_t -> s'. The nodes are one sample of the trained RQL policy (its "
        f"EMA actor from a re-rollable noise draw) and each carries the trained value V(s, x^f, f/F) of that "
        f"partial action. Measured in JAX on the {len(x0)} chains from the noise of section 1: the value's median "
        f"range along one chain is {np.median(within):.3f}, against a spread (std) of {vals[-1].std():.3f} of "
        f"V(s, a, 1) between the chains' actions: a value on every step, nearly one number per chain.",
        live=["unroll"])


def horizon_section(s: ToyScene) -> Section:
    """3. The horizon arithmetic of treating flow steps as decisions (figure horizon)."""
    F, numbers = s.F, s.numbers
    rql_agent = s.rql_agent
    hz = horizon_numbers(0.99, F, rql_agent.config.horizon)
    numbers["horizon"] = hz
    return Section(
        "horizon", "4. The horizon arithmetic",
        f"Computed for gamma = {hz['gamma']} (the usual discount; the toy task itself ends after one decision), "
        f"F = {F}, chunk h = {hz['h']}. The value horizon is H = 1/(1 - gamma) = {hz['value_horizon_env_steps']:.0f} "
        f"environment steps, {hz['value_horizon_decisions_rql']:.0f} decisions. Treating every flow step as a "
        f"decision makes it H x F = {hz['value_horizon_decisions_flow_steps']:.0f} decisions with a discount of "
        f"gamma^(h/F) = {hz['discount_per_flow_step']:.5f} per flow step: discount mass "
        f"{hz['discount_mass_flow_steps']:.0f} instead of {hz['discount_mass_rql']:.0f}, and "
        f"{hz['backups_to_90pct_flow_steps']:.0f} instead of {hz['backups_to_90pct_rql']:.0f} bootstrap backups to "
        f"reach 90% of it. Discounting each flow step by gamma^h instead keeps the backups but shrinks the horizon "
        f"to {hz['env_horizon_if_gamma_per_flow_step']:.1f} environment steps. RQL does neither: flow steps are "
        f"deterministic, reward-free and undiscounted, and its value target does not depend on t. Slide F and "
        f"gamma: the curves and numbers above are this arithmetic, computed live.",
        live=["horizon"])


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
        "reversal", "5. Flow reversal",
        f"Above, live: drag the dataset action x^F (or focus the plot and use the arrow keys; 'next dataset "
        f"action' steps through them): the page reverses it with the trained actor exactly as rql.flow.reverse "
        f"does (x at t = k/F from F sub-steps of size (1 - t)/F) and samples forward from the recovered x^0; the "
        f"round trip is the distance between the two ends. Below, measured: left: {len(acts)} dataset actions integrated backwards from t = 1 to t = 0 with RQL's current actor "
        f"(rql.flow.reverse, the partial actions its critic is trained on), coloured by the dataset action's mode. "
        f"The reversed noise has mean ({x0r.mean(0)[0]:.2f}, {x0r.mean(0)[1]:.2f}) and standard deviation "
        f"({x0r.std(0)[0]:.2f}, {x0r.std(0)[1]:.2f}) (N(0, I) has 0 and 1). Right: reverse with F steps, then "
        f"sample forward from the recovered noise with F steps: the median round-trip error is "
        f"{med[iF]:.3f} at F = {F}, {med[-2]:.3f} at F = 32 and {med[-1]:.4f} at F = 64, falling like "
        f"F^{fit['slope']:.2f}" + (" (Euler is first order): reversal is the sampler run backwards, up to the step "
                                   "size." if -1.3 < fit["slope"] < -0.7 else "."),
        [Picture("reversal", [({}, draw.reversal(rpath, dmodes, centres, best, rad, rt, F))], "flow reversal")],
        live=["reversal"])


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
    # Colours of the live value maps span the values met along the chains (the grid extrapolates far from them).
    s.value_range = (float(np.percentile(vals, 1)), float(np.percentile(vals, 99)))
    gamma = s.rql_agent.config.discount
    return Section(
        "value", "6. Within one action, every step has the same value",
        f"Above, live: the value along the reversed chain of the action dragged in section 5, read from the "
        f"trained V(s, x^f, f) (RQL's target has no f: the flow steps are deterministic, reward-free and not "
        f"discounted). The toggle shows the wrong version, a discount gamma on every denoise step: V_wrong(x^f) = "
        f"gamma^(F - f) Q(s, x^F) with Q(s, x^F) = V(s, x^F, 1) from the same network, so at t = 0 it is gamma^F = "
        f"{gamma ** F:.4f} times the value at t = 1 (gamma = {gamma}, F = {F}). Below, measured: "
        f"RQL's value V(s, x_t, t) (ensemble mean) at the partial actions of the reversed chains of section 5. "
        f"Along one chain the value {'barely moves' if ratio < 0.3 else 'moves'}: median range over t "
        f"{np.median(within):.3f}, against {across:.3f} between the modes' values at t = 1 (ratio {ratio:.2f}); its "
        f"value per mode at t = 1 is {', '.join(f'{v:.2f}' for v in mode_means)} for rewards "
        f"{', '.join(f'{v:.2f}' for v in true_r)}. Its slope {'does' if gratio > 1.3 else 'hardly does'} "
        f"change: the median |grad_x V| is "
        f"{gmed[0]:.3f} at t = 0, {gmed[F // 2]:.3f} at t = 0.5 and {gmed[-1]:.3f} at t = 1 (largest/smallest "
        f"over t: {gmed.max() / max(gmed.min(), 1e-9):.1f}x); section 7 shows why V still takes t.",
        [Picture("value_lines", [({}, draw.value_lines(vals, grads, dmodes, task.modes))], "value along chains")],
        live=["value"])


def slope_section(s: ToyScene) -> Section:
    """7. The same value, a different slope: V(s, ., t) live at each t (the numbers of section 6)."""
    v, F = s.numbers["value_along_chain"], s.F
    g = v["grad_norm_median"]
    return Section(
        "slope", "7. The same value, a different slope",
        f"V(s, x, t) of the trained value over the plane of partial actions x at t = f/F (colour), evaluated in "
        f"the page on a grid, with the point x^f of the dragged action's reversed chain and grad_x V there (the "
        f"arrow, from the network's backward pass in the page). Slide f: the dot's value barely moves, the "
        f"landscape and the arrow do. Measured over the chains of section 5: the median |grad_x V| is {g[0]:.3f} "
        f"at t = 0, {g[F // 2]:.3f} at t = 0.5 and {g[-1]:.3f} at t = 1 while the value's median range along a "
        f"chain is {v['within_chain_range_median']:.3f}. The policy update needs the gradient, not the scalar, "
        f"and the gradient depends on the noise level: that is why V takes t.",
        live=["slope"])


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
        "estimators", "8. Score-function vs pathwise gradients",
        f"Above, live: the gradient of E[Q(mu + sigma eps)] at the dot (drag it), Q = RQL's trained value at t = 1, "
        f"estimated from 16 samples at a time, either from Q's values alone (score function, mean Q eps / sigma) "
        f"or from its slope (pathwise, mean grad_a Q from the network's backward pass). 'draw 20 estimates' "
        f"or 'play' redraws the dice: the score-function arrow jitters, the pathwise one holds; the read-out "
        f"compares their spreads. Below, measured: the same gradient, d/db E[Q(a + b + sigma eps)] at b = 0, with a drawn from the flow BC policy and Q = "
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
        [Picture("estimators", [({}, draw.estimators(ge, clouds))], "gradient estimators")],
        live=["estimators"])


def _critic(s: ToyScene):
    """``(label, q(a) on a batch of actions in obs0)``: FQL's critic (ensemble mean) when trained, else RQL's V at t = 1."""
    obs0 = s.obs0
    if "fql" in s.trained:
        agent, state, _ = s.trained["fql"]
        crit, params = agent.extras["critic"], state["params"]["critic"]
        return "FQL's critic Q(s, a)", lambda a: crit(params, jnp.broadcast_to(jnp.asarray(obs0), (a.shape[0], 2)),
                                                        a).mean(axis=0)
    v = s.f_rql.value
    return "RQL's value V(s, a, 1)", lambda a: v(jnp.broadcast_to(jnp.asarray(obs0), (a.shape[0], 2)), a,
                                                 jnp.ones((a.shape[0], 1), jnp.float32))


def ascend_section(s: ToyScene) -> Section:
    """9. Gradient ascent of an action on the trained critic (DDPG/SAC's one hop)."""
    label, q = _critic(s)
    acts = s.reversed[0][:64] if len(s.reversed) else s.ds.actions[s.in_state[:64]]
    acts = np.clip(np.asarray(acts, np.float32) + 0.3 * s.rng.standard_normal(np.shape(acts)).astype(np.float32),
                   -1, 1)
    eta, steps = 0.01, 25
    q0 = np.asarray(q(jnp.asarray(acts)))
    q1 = np.asarray(q(jnp.asarray(M.ascend(q, acts, eta, steps))))
    s.numbers["ascend"] = {"critic": label, "eta": eta, "steps": steps, "actions": int(len(acts)),
                           "q_before_mean": float(q0.mean()), "q_after_mean": float(q1.mean()),
                           "rose": float(np.mean(q1 > q0))}
    return Section(
        "ascend", "9. DDPG and SAC: ascend grad_a Q in one hop",
        f"Drag the action and press 'ascend': {steps} steps a <- a + eta grad_a Q(s, a) on {label} (its backward "
        f"pass in the page; the critic toggle switches to RQL's V(s, a, 1)). The actor of DDPG or SAC is one "
        f"forward pass, so this gradient reaches its parameters in one hop. Measured in JAX from {len(acts)} "
        f"perturbed dataset actions with eta = {eta}: the mean Q goes from {q0.mean():.3f} to {q1.mean():.3f}, and "
        f"rises for {_pct(np.mean(q1 > q0))} of them.",
        live=["ascend"])


def backprop_section(s: ToyScene) -> Section:
    """10. RQL's one hop per flow step against backpropagation through the chain (numbers of section 2)."""
    c, F = s.numbers["chain_gradient"], s.F
    cos = c["hop_vs_bptt_cos_median_per_step"]
    return Section(
        "backprop", "10. RQL's actor update: one hop per flow step",
        f"One chain of the trained RQL actor (re-roll the noise). Per flow step f: the norm of that step's "
        f"Jacobian d x^(f+1) / d x^f, the chain's d x^F / d x^f (what BPTT multiplies), the gradient of "
        f"Q(x^F) = V(s, x^F, 1) carried back through the chain to x^f, and RQL's one hop, the gradient of "
        f"V(s, x^f + v(s, x^f, t) / F, t + 1/F) through a single call of v, all from the networks' forward and "
        f"backward passes in the page. 'backprop' runs the chosen gradient: BPTT reaches step f after F - f "
        f"Jacobian products, RQL reaches every step in one hop. Measured in JAX over {len(s.x0[:256])} chains: "
        f"the median cosine between the two gradients is {c['hop_vs_bptt_cos_median']:.2f} (per step "
        f"{min(cos):.2f} to {max(cos):.2f}); at x^0 the backpropagated gradient's median norm is "
        f"{c['bptt_norm_median_per_step'][0]:.3g}, the one hop's {c['hop_norm_median_per_step'][0]:.3g}.",
        live=["backprop"])


def update_section(s: ToyScene) -> Section:
    """11. The update running: one-hop value gradients added to flow BC's velocity, step by step."""
    F, obs0, x0, trained = s.F, s.obs0, s.x0, s.trained
    v_bc, value = s.fields["flow-bc"].sample, s.f_rql.value
    eta, ks = 0.5, (0, 1, 2, 4, 8)
    paths = M.bent_paths(v_bc, value, obs0, x0, F, [k * eta for k in ks])
    ends = {k: paths[i, -1] for i, k in enumerate(ks)}
    ones = jnp.ones((len(x0), 1), jnp.float32)
    o = jnp.broadcast_to(jnp.asarray(obs0), (len(x0), 2))
    vals = {k: float(np.mean(np.asarray(value(o, jnp.clip(ends[k], -1, 1), ones)))) for k in ks}
    succ = {k: float(toy.success(s.task, obs0, np.clip(ends[k], -1, 1)).mean()) for k in ks}
    s.numbers["update"] = {"eta": eta, "updates": list(ks), "value_of_end_mean": [vals[k] for k in ks],
                           "rewarded": [succ[k] for k in ks]}
    return Section(
        "update", "11. The update, running",
        f"Each 'update' adds eta times the one-hop gradient grad V(s, x^(f+1), t + 1/F) to the flow BC velocity at "
        f"every step f of the trajectory (drag the start x^0 or re-roll it): the stepwise pathwise gradient bends "
        f"the flow toward the high-value mode one cheap hop per step, while the dotted path is where RQL's "
        f"training actually took the same noise. Measured in JAX on {len(x0)} noise draws with eta = {eta}: after "
        + ", ".join(f"{k} updates the mean value of the end is {vals[k]:.3f} ({_pct(succ[k])} in the rewarded mode)"
                    for k in ks) + ".",
        live=["update"])


def loop_section(s: ToyScene) -> Section:
    """12. The training loop: what the runs logged (metrics.csv)."""
    from rql.plots import read_metrics

    series: dict = {}
    for name, r in s.numbers["runs"].items():
        for row in read_metrics(r["run_dir"]):
            for k, v in row.items():
                if k.startswith("loss/") or k in ("value/q_mean", "value/target_mean"):
                    series.setdefault(k, {}).setdefault(name, []).append([row["step"], v])
    s.metrics = series
    last = {k: {a: pts[-1][1] for a, pts in d.items()} for k, d in series.items()}
    s.numbers["training_metrics_last"] = last
    crit = last.get("loss/critic", {})
    return Section(
        "loop", "12. The training loop",
        "Every update of RQL samples an offline batch, reverses its dataset actions with the current actor "
        "(no gradient), regresses V(s, x_t, t) at every t on the one target r + gamma V_target(s', x'_0, 0), then "
        "takes one Adam step on the actor's value ascent plus alpha x flow-matching BC, then moves the target "
        "value (Polyak) and the EMA actor. The curves are the losses the toy runs logged (metrics.csv, every "
        "500 updates); pick a metric. Last critic losses: "
        + (", ".join(f"{LABELS[a]} {v:.4f}" for a, v in crit.items()) or "none logged") + ".",
        live=["loop"])


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
        "policies", "13. RQL against behaviour cloning and one-step distillation",
        f"Above, live: 300 samples of each trained policy drawn in the page (flow BC and RQL: {s.F} Euler steps "
        f"of their EMA actor, clipped to [-1, 1]; FQL: its one-step distilled policy), re-rolled on demand. "
        f"Below, measured in JAX: 1000 samples of each trained policy (its own act function: the EMA flow for flow BC and RQL, the "
        f"one-step policy for FQL) on the reward landscape. In the rewarded mode: dataset "
        f"{_pct(pol['dataset']['rewarded'])}, " + ", ".join(
            f"{LABELS[n]} {_pct(pol[n]['rewarded'])} (mean reward {pol[n]['mean_reward']:.2f})" for n in agents)
        + f". RQL keeps a behaviour-cloning term (alpha = {rql_agent.config.alpha}); "
          f"{_pct(pol['rql']['no_mode'])} of its samples land between modes.",
        [Picture("policies", [({}, draw.policies(panels, centres, best, rad, landscape))], "policy samples")],
        live=["compare"])


FIGURES = (
    ("flow_paths", flow_paths_section),
    ("chain_gradient", chain_gradient_section),
    ("unroll", unroll_section),
    ("horizon", horizon_section),
    ("reversal", reversal_section),
    ("value_along_chain", value_section),
    ("slope", slope_section),
    ("estimators", estimators_section),
    ("ascend", ascend_section),
    ("backprop", backprop_section),
    ("update", update_section),
    ("loop", loop_section),
    ("policies", policies_section),
)
"""The page's figures in order: (timing key in lab.json, the step that computes and draws it)."""


# ----------------------------------------------------------------------------- the lab


def run_toy_lab(out: pathlib.Path, task_spec: str = "toy:ring", steps: int = 3000, seed: int = 0,
                agents=("flow-bc", "rql", "fql"), log=print, keep_scene: bool = False):
    """Train the agents (or reuse their runs), make every figure of :data:`FIGURES` in order and
    write the page; returns the numbers written to lab.json (and, with ``keep_scene``, the
    :class:`ToyScene` they were computed from)."""
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
    return (scene.numbers, scene) if keep_scene else scene.numbers


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
             "every figure below is computed from their checkpoints. The figures follow the RQL explainer's "
             "order, and their networks travel in this page and run in the browser: drag, click and slide, and "
             "every number a figure shows is recomputed from the trained networks (below each, the paragraph and "
             "picture measured in JAX over many draws when the page was written)."
             + (f" The state names the rewarded mode; the figures are drawn in the state that rewards mode {best}."
                if task.context else ""))
    data = live_data(scene)
    scene.numbers["page"] = {"weights_floats": data["model"]["floats"],
                             "nets": {k: v["params"] for k, v in data["model"]["nets"].items()}}
    page = render(out, "rql lab: Reversal Q-Learning, measured", intro, sections, scene.numbers, table, data,
                  LIVE_SCRIPT)
    scene.numbers["page"]["bytes"] = page.stat().st_size
    (out / "lab.json").write_text(json.dumps(scene.numbers, indent=2, default=_jsonable))
    return page


LIVE_SCRIPT = livejs.CORE + livejs.PLOT + livejs.TOY


def live_data(s: ToyScene) -> dict:
    """What the page's live figures run on: the trained networks (packed float32) and the toy task."""
    pk = live.Packer()
    tr = s.trained
    vel, val = ["obs", "x", "t"], ["obs", "x", "t"]
    pk.net("bc_sample", tr["flow-bc"][1]["target_actor"], vel, "flow BC: EMA velocity field (sampling)")
    rql_state = tr["rql"][1]
    pk.net("rql_sample", rql_state["target_actor"], vel, "RQL: EMA velocity field (sampling)")
    pk.net("rql_actor", rql_state["params"]["actor"], vel, "RQL: current velocity field (reversal, actor update)")
    pk.net("rql_value", rql_state["params"]["value"], val, "RQL: value ensemble V(s, x, t)")
    if "fql" in tr:
        fp = tr["fql"][1]["params"]
        pk.net("fql_flow", fp["flow"], vel, "FQL: behaviour flow")
        pk.net("fql_onestep", fp["onestep"], ["obs", "z"], "FQL: one-step policy (clipped)", clip=True)
        pk.net("fql_critic", fp["critic"], ["obs", "a"], "FQL: critic ensemble Q(s, a)")
    acts, dmodes, _ = s.reversed
    pk.array("dataset_actions", acts)
    best_rows = np.flatnonzero(dmodes == s.best)
    task, cfg = s.task, s.rql_agent.config
    toy_data = {
        "F": s.F, "obs": np.asarray(s.obs0, np.float32).reshape(-1).tolist(), "best": s.best,
        "centres": task.centres.tolist(), "mode_values": task.mode_values(np.array([s.best]))[0].tolist(),
        "width": task.width, "success_radius": task.success_radius, "gamma": cfg.discount, "h": cfg.horizon,
        "agents": list(tr), "dataset_modes": dmodes.tolist(), "start_action": int(best_rows[0]) if best_rows.size else 0,
        "value_range": list(s.value_range), "metrics": {"series": s.metrics},
    }
    return {"model": pk.spec(), "toy": toy_data}
