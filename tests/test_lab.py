"""rql lab: on the toy task the trained networks show what the page claims, the page opens in a real
headless browser with every image and no script error, and --run works on a real (tiny) RQL run."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

from conftest import TASK

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STEPS = 1500  # RQL updates (flow BC gets twice as many); the toy lab's default is 3000


@pytest.fixture(scope="module")
def lab_scene(tmp_path_factory):
    from rql.lab.toylab import run_toy_lab

    out = tmp_path_factory.mktemp("lab")
    numbers, scene = run_toy_lab(out, "toy:ring", steps=STEPS, seed=0, agents=("flow-bc", "rql"),
                                 log=lambda *a: None, keep_scene=True)
    return out, numbers, scene


@pytest.fixture(scope="module")
def lab(lab_scene):
    return lab_scene[:2]


def test_toy_dataset_is_an_ordinary_dataset():
    from rql.data import toy
    from rql.data.loading import load_dataset
    from rql.errors import RQLError

    for h in (1, 3):  # horizon 1 and the agents' default chunk
        ds = load_dataset(None, "toy:ring", horizon=h)
        starts, ends = ds.episode_bounds()
        assert np.all(ends - starts + 1 >= h + 1) and ds.action_dim == 2 and np.all(ds.masks == 0)
    task = toy.parse("toy:ring")
    best = toy.success(task, ds.observations, ds.actions).mean()
    assert abs(best - 1 / task.modes) < 0.03  # the behaviour does not prefer the rewarded mode
    assert toy.reward(task, ds.observations[:1], task.centres[:1])[0] > 0.99
    ctx = toy.parse("toy:ring-context,modes=4")
    ds = load_dataset(None, "toy:ring-context,modes=4")
    assert set(toy.best_mode(ctx, ds.observations)) == {0, 1, 2, 3}
    with pytest.raises(RQLError, match="unknown toy task"):
        load_dataset(None, "toy:square")


def test_horizon_arithmetic():
    from rql.lab.toylab import horizon_numbers

    h = horizon_numbers(0.99, 10, 1)
    assert h["value_horizon_env_steps"] == pytest.approx(100)
    assert h["discount_mass_flow_steps"] == pytest.approx(10 * h["discount_mass_rql"], rel=0.01)
    assert h["backups_to_90pct_flow_steps"] == pytest.approx(10 * h["backups_to_90pct_rql"])
    assert h["env_horizon_if_gamma_per_flow_step"] == pytest.approx(100 / 10, rel=0.05)
    h5 = horizon_numbers(0.99, 10, 5)  # chunks: fewer decisions, the same F-fold stretch
    assert h5["value_horizon_decisions_rql"] == pytest.approx(20)
    assert h5["backups_to_90pct_flow_steps"] == pytest.approx(10 * h5["backups_to_90pct_rql"])


def test_rql_lands_in_the_rewarded_mode_far_more_often_than_bc(lab):
    _, n = lab
    bc, rql = n["policies"]["flow-bc"]["rewarded"], n["policies"]["rql"]["rewarded"]
    assert bc < 0.3, f"flow BC should follow the data (1/6 in the rewarded mode), got {bc:.2f}"
    assert rql > 0.5 and rql > 3 * bc, f"RQL {rql:.2f} vs flow BC {bc:.2f}"
    # The Euler paths of section 1 tell the same story from the velocity fields directly.
    assert n["flow_paths"]["rql"]["rewarded"] > 3 * n["flow_paths"]["flow-bc"]["rewarded"]


def test_value_is_flat_along_reversed_chains_but_its_slope_is_not(lab):
    _, n = lab
    v = n["value_along_chain"]
    assert v["flatness_ratio"] < 0.3, v  # range along one chain vs spread between the modes' values
    assert int(np.argmax(v["value_by_mode_t1"])) == 0  # the critic ranks the rewarded mode first
    assert v["grad_norm_max_over_min"] > 1.3


def test_pathwise_variance_is_below_score_function_variance(lab):
    _, n = lab
    e = n["estimators"]
    for s, sf, sfb, pw in zip(e["sigma"], e["score"], e["score_baseline"], e["pathwise"]):
        assert pw < sfb < sf, (s, sf, sfb, pw)
    assert e["score"][0] > 20 * e["score"][-1]  # ~ 1 / sigma^2
    assert max(e["pathwise"]) < 3 * min(e["pathwise"])
    assert max(e["means_differ_in_stderrs"]) < 5  # the same gradient, estimated twice


def test_chain_gradient_is_a_product_of_near_identity_steps(lab):
    _, n = lab
    c = n["chain_gradient"]
    F = np.asarray(c["F"])
    dev = np.asarray(c["F_times_one_minus_step"])[F >= 8]
    # Each step's Jacobian is I + O(1/F): F (1 - |J|) is the same number for every F ...
    assert dev.min() > 0 and dev.max() < 1.3 * dev.min(), dev
    # ... so the log-norm of the product of F steps is the sum of F one-step log-norms (geometric in the
    # per-step factor) and tends to a limit instead of growing with F.
    assert c["log_chain_vs_sum_log_steps_gap"] < 0.5
    med = np.asarray(c["chain_log10_median"])
    assert abs(med[-1] - med[15]) < 0.15
    i10 = list(F).index(10)
    assert c["chain_log10_p90"][i10] - c["chain_log10_p10"][i10] > 1.0  # ill-conditioned across noise draws
    one = np.asarray(c["one_step_norm_mean_median"])
    assert abs(1 - one[-1]) < 0.6 * abs(1 - one[7])  # one step tends to the identity as F grows


def test_reversal_round_trip_shrinks_with_F(lab):
    _, n = lab
    r = n["reversal"]
    err = dict(zip(r["F"], r["roundtrip_median"]))
    assert err[64] < err[8] / 4 and r["roundtrip_loglog_slope"] < -0.6


def test_outputs_are_self_contained(lab):
    out, n = lab
    page = (out / "index.html").read_text()
    assert "http://" not in page and "https://" not in page and "<script src" not in page
    assert page.count("data:image/png;base64,") == len(list((out / "figures").glob("*.png")))
    for f in (out / "figures").glob("*.png"):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "lab.json").read_text())["policies"] == json.loads(json.dumps(n["policies"]))
    for sid in ("flow", "chain", "horizon", "reversal", "value", "estimators", "policies"):
        assert f'id="{sid}"' in page


def _open_in_chromium(path: pathlib.Path) -> tuple[str, str]:
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=10000", "--dump-dom", path.resolve().as_uri()],
        capture_output=True, text=True, timeout=120)
    return proc.stdout, proc.stderr


def _page_state(dom: str, log: str) -> tuple[int, int, int, list[str]]:
    m = re.search(r'<body[^>]*data-images-loaded="(\d+)/(\d+)"[^>]*data-errors="(\d+)"', dom)
    assert m, "the page's self-check did not run (no data-images-loaded on <body>)"
    console = [line for line in log.splitlines() if "CONSOLE" in line]
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), console


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) to open the page in")
def test_page_opens_in_a_headless_browser(lab, tmp_path):
    out, _ = lab
    loaded, total, errors, console = _page_state(*_open_in_chromium(out / "index.html"))
    assert total == len(list((out / "figures").glob("*.png"))) and total >= 5
    assert loaded == total, f"{total - loaded} image(s) did not load"
    assert errors == 0 and not console, console
    # The check can fail: a broken image and a throwing script are caught.
    bad = tmp_path / "bad.html"
    html = (out / "index.html").read_text()
    html = html.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1)
    html = html.replace("<script>", "<script>window.setTimeout(function () { no_such_function(); }, 0);\n", 1)
    bad.write_text(html)
    loaded, total, errors, console = _page_state(*_open_in_chromium(bad))
    assert loaded == total - 1 and (errors >= 1 or console)


def test_lab_on_a_real_run(tiny_ogbench, lab, tmp_path, capsys):
    """--run on a tiny RQL run trained on recorded OGBench data (chunks of 2 x 5 actions); a run without
    a value and --baseline on the toy lab's own runs."""
    from rql.agents import build_config
    from rql.cli import main
    from rql.training import RunConfig, train

    tiny = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, batch_size=16, horizon=2)
    run_dir = tmp_path / "rql"
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), run_dir=str(run_dir), steps=40, eval_every=0,
                    eval_episodes=0, log_every=20, tensorboard=False, progress=False)
    train(run, "rql", build_config("rql", TASK, None, tiny), log=lambda *a: None)
    out = tmp_path / "lab-rql"
    assert main(["lab", "--run", str(run_dir), "--out", str(out), "--states", "16"]) == 0
    n = json.loads((out / "lab.json").read_text())
    assert n["agent"] == "rql" and n["chunk_dim"] == 2 * 5 and n["states"] == 16 and n["checkpoint"] == 40
    err = n["reversal"]["roundtrip_median"]
    assert len(err) == len(n["reversal"]["F"]) and err[-1] < err[0]
    assert len(n["value_along_chain"]["grad_norm_median"]) == 11
    assert (out / "index.html").exists() and len(list((out / "figures").glob("*.png"))) == 3
    browser = None
    if CHROMIUM:
        from rql.lab.browser import Browser

        browser = Browser()
        _run_page_is_live(browser, out, run_dir)

    # A run without a value (flow BC), drawn with RQL as its baseline.
    toy_runs = lab[0] / "runs"
    out_bc = tmp_path / "lab-bc"
    assert main(["lab", "--run", str(toy_runs / "flow-bc"), "--baseline", str(toy_runs / "rql"), "--out",
                 str(out_bc), "--states", "32"]) == 0
    assert "Only RQL learns a value V(s, x, t)" in (out_bc / "index.html").read_text()
    if browser is not None:
        with browser as b:
            b.open(out_bc / "index.html")
            assert b.eval("document.body.getAttribute('data-live-figures')") == "2/2"  # no value: no ascent
            assert b.readout("run_samples", "base_std") > 0 and not b.console_errors()
    n = json.loads((out_bc / "lab.json").read_text())
    assert "value_along_chain" not in n and n["agent"] == "flow-bc"
    # Flow BC spreads its samples over the ring like the data; RQL concentrates them in one mode.
    spread = n["spread"]
    assert spread["flow-bc"]["per_state_std_mean"] > spread["baseline:rql"]["per_state_std_mean"]

    capsys.readouterr()
    assert main(["lab", "--baseline", str(run_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--run" in capsys.readouterr().err
    assert main(["lab", "--run", str(tmp_path / "nowhere"), "--out", str(tmp_path / "y")]) == 2
    assert main(["lab", "--run", str(toy_runs / "rql"), "--baseline", str(run_dir), "--out",
                 str(tmp_path / "z")]) == 2  # a baseline on other data


# ----------------------------------------------------------------------------- the live figures in chromium


def _rel(a, b) -> float:
    """Largest absolute difference over the largest magnitude of the reference."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _jax_nets(scene) -> dict:
    """The page's networks as JAX functions of the concatenated input vector (batch, in)."""
    from rql.lab import measure as M

    tr = scene.trained

    def vel(fn):
        return lambda z: fn(z[:, :2], z[:, 2:4], z[:, 4:5])

    out = {"bc_sample": vel(M.fields(*tr["flow-bc"][:2]).sample)}
    rql_agent, rql_state, _ = tr["rql"]
    velocity, value = rql_agent.extras["velocity"], rql_agent.extras["value"]
    out["rql_sample"] = vel(velocity(rql_state["target_actor"]))
    out["rql_actor"] = vel(velocity(rql_state["params"]["actor"]))
    out["rql_value"] = lambda z: value(rql_state["params"]["value"], z[:, :2], z[:, 2:4], z[:, 4:5]).mean(0)[:, None]
    if "fql" in tr:
        fa, fs, _ = tr["fql"]
        p = fs["params"]
        out["fql_flow"] = vel(M.fields(fa, fs).sample)
        out["fql_critic"] = lambda z: fa.extras["critic"](p["critic"], z[:, :2], z[:, 2:4]).mean(0)[:, None]
        out["fql_onestep"] = lambda z: fa.extras["onestep"](p["onestep"], z[:, :2], z[:, 2:4])
    return out


def _page_networks_against_jax(b, scene) -> dict:
    """Every embedded network on fixed inputs, in the page and in JAX: relative differences of the
    outputs and of the gradients of the outputs' sum with respect to the inputs."""
    import jax
    import jax.numpy as jnp

    nets = _jax_nets(scene)
    assert sorted(b.eval("Object.keys(rqlLab.nets)")) == sorted(nets)
    rng = np.random.default_rng(3)
    diffs = {}
    for name, f in nets.items():
        n_in, n_out = b.eval(f"[rqlLab.nets.{name}.inDim, rqlLab.nets.{name}.outDim]")
        z = rng.uniform(-1.5, 1.5, (16, n_in)).astype(np.float32)
        z[:, :2] = scene.obs0.reshape(-1)
        js = np.asarray(b.eval(f"rqlLab.evaluate('{name}', {z.tolist()})"))
        if name == "fql_onestep":  # clipped where the page acts with it, as FQL's onestep is
            js = np.clip(js, -1, 1)
        diffs[name] = {"output": _rel(js, f(jnp.asarray(z)))}
        if name != "fql_onestep":
            gjs = b.eval(f"rqlLab.gradient('{name}', {z.tolist()}, {[1.0] * n_out})")
            diffs[name]["gradient"] = _rel(gjs, jax.grad(lambda z: jnp.sum(f(z)))(jnp.asarray(z)))
    return diffs


def _to_px(b, canvas: str, point) -> tuple[float, float]:
    return tuple(b.eval(f"(function () {{ var p = document.getElementById('{canvas}')._plot; "
                        f"return [p.X({point[0]}), p.Y({point[1]})]; }})()"))


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (apt-get install chromium) to open the page in")
def test_live_figures_run_the_trained_networks(lab_scene, tmp_path):
    """The toy page in headless chromium: its networks against JAX, then every interaction, asserting
    that the numbers the figures show are the trained networks' and move as they must."""
    import jax
    import jax.numpy as jnp

    from rql.lab import measure as M
    from rql.lab.browser import Browser
    from rql.lab.toylab import horizon_numbers

    out, numbers, scene = lab_scene
    F, obs0, f_rql = scene.F, scene.obs0, scene.f_rql
    o1 = jnp.asarray(obs0.reshape(1, -1))
    ones = jnp.ones((1, 1), jnp.float32)

    def V(x, t):
        return float(f_rql.value(o1, jnp.asarray([x], jnp.float32), ones * t)[0])

    def gradV(x, t):
        return np.asarray(jax.grad(lambda y: jnp.sum(f_rql.value(o1, y, ones * t)))(jnp.asarray([x], jnp.float32))[0])

    with Browser() as b:
        b.open(out / "index.html")
        n_live = b.eval("document.querySelectorAll('.live[data-fig]').length")
        assert n_live == 13 and b.eval("document.body.getAttribute('data-live-figures')") == f"{n_live}/{n_live}"
        assert b.eval("document.body.getAttribute('data-errors')") == "0"

        # The networks: outputs and input gradients as JAX computes them.
        diffs = _page_networks_against_jax(b, scene)
        for name, d in diffs.items():
            assert d["output"] < 1e-5, (name, d)
            assert d.get("gradient", 0) < 1e-5, (name, d)

        # 1. re-roll samples the trained flow: the page's Euler paths are JAX's from the same noise.
        seed0 = b.readout("flow", "seed")
        b.click("#btn-flow-reroll")
        assert b.readout("flow", "seed") == seed0 + 1
        x0 = np.asarray(b.eval("rqlLab.figs.flow.state.x0"), np.float32)
        paths = np.asarray(b.eval("rqlLab.figs.flow.state.paths"))
        assert _rel(paths.transpose(1, 0, 2), M.forward_path(f_rql.sample, obs0, x0, F)) < 1e-5
        rql_in = b.readout("flow", "rewarded")
        b.click("#opt-flow-agent-flow-bc")
        assert b.readout("flow", "rewarded") < rql_in  # flow BC spreads over the ring

        # 2. BPTT: lambda^F, and the trained actor's chain norm (its Jacobians in the page) against JAX's.
        b.set_slider("#sl-bptt-lambda", 1.2)
        b.set_slider("#sl-bptt-F", 20)
        assert b.readout("bptt", "pow") == pytest.approx(1.2 ** 20, rel=1e-9)
        b.set_slider("#sl-bptt-F", F)
        x0s = np.asarray(b.eval("rqlLab.figs.bptt.state.x0s"), np.float32)
        x0_backprop = np.asarray(b.eval("rqlLab.figs.backprop.state.xs[0]"), np.float32)  # figure 10's chain
        cj = M.chain_jacobians(f_rql.reverse, obs0, np.concatenate([x0s, x0_backprop[None]]), [F])
        assert b.readout("bptt", "chain") == pytest.approx(float(np.median(cj["chain"][0, :-1])), rel=1e-4)

        # 3. unroll: one decision becomes F, each node's value the trained V along the chain.
        assert b.eval("document.getElementById('live-unroll').dataset.nodes") == "1"
        b.click("#btn-unroll-unroll")
        assert b.eval("document.getElementById('live-unroll').dataset.nodes") == str(F + 1)
        assert b.readout("unroll", "decisions") == F
        chain = b.eval("rqlLab.figs.unroll.state.chain")
        assert _rel(b.readout("unroll", "values"), [V(x, k / F) for k, x in enumerate(chain)]) < 1e-5

        # 4. the horizon sliders compute the arithmetic of horizon_numbers.
        b.set_slider("#sl-horizon-F", 20)
        b.set_slider("#sl-horizon-gamma", 0.95)
        hz = horizon_numbers(0.95, 20, scene.rql_agent.config.horizon)
        assert b.readout("horizon", "H") == pytest.approx(hz["value_horizon_env_steps"], rel=1e-6)
        assert b.readout("horizon", "ext") == pytest.approx(hz["value_horizon_decisions_flow_steps"], rel=1e-6)
        assert b.readout("horizon", "b90") == pytest.approx([hz["backups_to_90pct_rql"], hz["backups_to_90pct_flow_steps"]],
                                                           rel=1e-6)

        # 5. drag the dataset action: the reversal follows, as rql.flow.reverse computes it, and round-trips.
        cv = "cv-reversal-0"
        start = b.readout("reversal", "xF")
        target = [0.55, 0.35]
        b.drag(f"#{cv}", [_to_px(b, cv, start), _to_px(b, cv, [0.65, 0.2]), _to_px(b, cv, target)])
        xF = b.readout("reversal", "xF")
        assert xF != start and np.allclose(xF, target, atol=0.02), (xF, target)
        rpath = M.reversal_path(f_rql.reverse, obs0, np.asarray([xF], np.float32), F)[:, 0]
        assert _rel(b.readout("reversal", "x0"), rpath[0]) < 1e-5
        back = M.forward_path(f_rql.reverse, obs0, rpath[:1], F)[-1, 0]
        err = float(np.sqrt(np.mean((back - np.asarray(xF)) ** 2)))
        assert b.readout("reversal", "roundtrip") == pytest.approx(err, rel=1e-3, abs=1e-6) and err < 0.2
        b.eval(f"document.getElementById('{cv}').focus()")
        b.key("ArrowRight")
        assert b.readout("reversal", "xF")[0] == pytest.approx(xF[0] + 0.02, abs=1e-9)  # the keyboard moves it too
        xF = b.readout("reversal", "xF")
        chain = b.eval("rqlLab.figs.reversal && rqlLab.flow.reversal(rqlLab.nets.rql_actor, rqlLab.lab.toy.obs, "
                       f"{list(xF)}, {F})")

        # 6. the value along that chain; the wrong discount is the right Q times gamma^(F - f).
        v0, v1 = b.readout("value", "v0"), b.readout("value", "v1")
        assert v0 == pytest.approx(V(chain[0], 0.0), rel=1e-5) and v1 == pytest.approx(V(xF, 1.0), rel=1e-5)
        b.click("#opt-value-mode-wrong")
        gamma = scene.rql_agent.config.discount
        assert b.readout("value", "v1") == pytest.approx(v1, rel=1e-12)
        assert b.readout("value", "v0") == pytest.approx(gamma ** F * v1, rel=1e-9)
        b.set_slider("#sl-value-gamma", 0.9)
        assert b.readout("value", "v0") == pytest.approx(0.9 ** F * v1, rel=1e-9)

        # 7. the slope at each f: V and grad_x V at the chain's points, from the page's backward pass.
        got = {}
        for f in (0, F // 2, F):
            b.set_slider("#sl-slope-f", f)
            got[f] = (b.readout("slope", "v"), b.readout("slope", "grad"))
            assert got[f][0] == pytest.approx(V(chain[f], f / F), rel=1e-5)
            assert got[f][1] == pytest.approx(float(np.linalg.norm(gradV(chain[f], f / F))), rel=1e-4)
        assert len({round(g, 6) for _, g in got.values()}) == 3  # the slope moves with f

        # 8. score function against pathwise: the same gradient, the score function's spread far larger.
        b.click("#btn-estimators-draw")
        b.click("#opt-estimators-mode-pathwise")
        b.click("#btn-estimators-draw")
        mu = b.eval("rqlLab.figs.estimators.state.mu")
        samples = np.asarray(b.eval("rqlLab.figs.estimators.state.samples"), np.float32)
        g_ref = np.asarray(jax.grad(lambda a: jnp.sum(f_rql.value(jnp.broadcast_to(o1, (len(samples), 2)), a,
                                                                   jnp.ones((len(samples), 1)))))(samples)).mean(0)
        assert _rel(b.readout("estimators", "est"), g_ref) < 1e-4
        assert b.readout("estimators", "ratio") > 5, b.readout("estimators", "ratio")
        assert np.allclose(mu, b.eval("rqlLab.figs.estimators.state.mu"))

        # 9. drag an action, ascend: the critic's value rises; the first step is eta grad_a Q.
        cv = "cv-ascend-0"
        a_start = b.eval("rqlLab.figs.ascend.state.a")
        b.drag(f"#{cv}", [_to_px(b, cv, a_start), _to_px(b, cv, [-0.2, -0.5]), _to_px(b, cv, [-0.3, -0.45])])
        a = np.asarray(b.eval("rqlLab.figs.ascend.state.a"), np.float32)
        assert np.allclose(a, [-0.3, -0.45], atol=0.02)
        b.click("#btn-ascend-ascend")
        q0, q1 = b.readout("ascend", "q0"), b.readout("ascend", "q1")
        assert q1 > q0, (q0, q1)
        if "fql" in scene.trained:  # the figure ascends FQL's critic where there is one, else RQL's V(s, a, 1)
            fa, fs, _ = scene.trained["fql"]
            crit = lambda x: fa.extras["critic"](fs["params"]["critic"], o1, x).mean(0)  # noqa: E731
        else:
            crit = lambda x: f_rql.value(o1, x, ones)  # noqa: E731
        assert q0 == pytest.approx(float(crit(jnp.asarray([a]))[0]), rel=1e-5)
        eta = b.eval("rqlLab.figs.ascend.state.eta")
        gq = np.asarray(jax.grad(lambda x: jnp.sum(crit(x)))(jnp.asarray([a]))[0])
        assert _rel(b.readout("ascend", "step"), eta * gq) < 1e-4

        # 10. backprop: the per-step Jacobian norms are the trained actor's; RQL needs one hop per step.
        b.click("#btn-backprop-backprop")
        assert b.readout("backprop", "hops") == 1
        xs = np.asarray(b.eval("rqlLab.figs.backprop.state.xs"), np.float32)
        assert np.array_equal(xs[0], x0_backprop)
        norms = b.readout("backprop", "jac")
        assert len(norms) == F and max(norms) == pytest.approx(float(cj["step_max"][0, -1]), rel=1e-4)
        assert b.readout("backprop", "chain") == pytest.approx(float(cj["chain"][0, -1]), rel=1e-4)
        assert b.readout("backprop", "prod") >= b.readout("backprop", "chain") * (1 - 1e-9)
        hop = M.hop_vs_bptt(f_rql.reverse, f_rql.value, obs0, xs[:1], F)
        assert b.readout("backprop", "cos") == pytest.approx(float(hop["cos"][0, 0]), abs=1e-3)
        b.click("#opt-backprop-mode-bptt")
        b.click("#btn-backprop-backprop")
        assert b.readout("backprop", "hops") == F

        # 11. the update running: k one-hop updates bend flow BC's path; the value of its end rises.
        x0u = np.asarray(b.eval("rqlLab.figs.update.state.x0"), np.float32)
        v_start = b.readout("update", "v")
        for _ in range(4):
            b.click("#btn-update-update")
        assert b.readout("update", "k") == 4 and b.readout("update", "v") > v_start
        eta_u = b.eval("rqlLab.figs.update.state.eta")
        bent = M.bent_paths(scene.fields["flow-bc"].sample, f_rql.value, obs0, x0u[None], F, [4 * eta_u])[0, :, 0]
        assert _rel(b.eval("rqlLab.figs.update.state.path"), bent) < 1e-4

        # 12-13. the logged losses, and every policy's samples re-rolled in the page.
        last = b.readout("loop", "last")
        assert last == pytest.approx(numbers["training_metrics_last"]["loss/critic"], rel=1e-6)
        b.click("#btn-compare-reroll")
        bc, rql = b.readout("compare", "flow-bc"), b.readout("compare", "rql")
        assert abs(rql - numbers["policies"]["rql"]["rewarded"]) < 0.12  # JAX's 1000 samples say the same
        assert rql > 0.5 and rql > 2 * bc, (rql, bc)

        # Readable at a phone's width: nothing wider than the screen.
        b.set_width(390, 844, mobile=True)
        assert b.eval("document.documentElement.scrollWidth") <= 392
        assert b.eval("Math.max.apply(null, Array.prototype.map.call(document.querySelectorAll('.live canvas'), "
                      "function (c) { return c.getBoundingClientRect().width; }))") <= 390
        assert not b.console_errors(), b.console_errors()

        # A figure that throws is caught by the page's own check.
        bad = tmp_path / "bad.html"
        bad.write_text((out / "index.html").read_text().replace(
            "FIGS.slope = function (root) {", "FIGS.slope = function (root) { no_such_function();", 1))
        b.open(bad)
        assert b.eval("document.body.getAttribute('data-live-figures')") == f"{n_live - 1}/{n_live}"
        assert b.eval("document.getElementById('live-slope').dataset.live") == "error"
        assert b.eval("+document.body.getAttribute('data-errors')") >= 1 and b.console_errors()


def _run_page_is_live(b, out: pathlib.Path, run_dir: pathlib.Path) -> None:
    """A real run's page in chromium: its networks against JAX, a state picked, the dataset chunk's
    reversal and value as JAX computes them, samples re-rolled, a partial action ascended."""
    import jax.numpy as jnp

    from rql.lab import measure as M
    from rql.training import restore_agent

    _, agent, ts, _ = restore_agent(str(run_dir), log=lambda *a: None)
    st = ts["agent"]
    vel, value = agent.extras["velocity"], agent.extras["value"]
    f = M.fields(agent, st)
    b.open(out / "index.html")
    assert b.eval("document.body.getAttribute('data-live-figures')") == "3/3", b.console_errors()
    n_obs, D, F = b.eval("[rqlLab.lab.run.obs_dim, rqlLab.lab.run.chunk_dim, rqlLab.lab.run.F]")
    z = np.random.default_rng(0).uniform(-1, 1, (8, n_obs + D + 1)).astype(np.float32)
    o, x, t = jnp.asarray(z[:, :n_obs]), jnp.asarray(z[:, n_obs:-1]), jnp.asarray(z[:, -1:])
    for name, ref in (("sample", vel(st["target_actor"])(o, x, t)), ("reverse", vel(st["params"]["actor"])(o, x, t)),
                      ("value", value(st["params"]["value"], o, x, t).mean(0)[:, None])):
        assert _rel(b.eval(f"rqlLab.evaluate('{name}', {z.tolist()})"), ref) < 1e-5, name
    b.set_slider("#sl-run_reversal-state", 3)
    assert b.eval("document.getElementById('sl-run_samples-state').value") == "3"  # one state for all figures
    obs3, chunk3 = (np.asarray(b.eval(f"rqlLab.arr('{k}').row(3)"), np.float32) for k in ("obs", "chunks"))
    path = M.reversal_path(f.reverse, obs3, chunk3[None], F)[:, 0]
    assert _rel(b.eval("rqlLab.figs.run_reversal.state.chain"), path) < 1e-5
    vals, _ = M.value_along(f.value, obs3, path[:, None])
    assert b.readout("run_reversal", "v0") == pytest.approx(float(vals[0, 0]), rel=1e-5)
    back = M.forward_path(f.reverse, obs3, path[:1], F)[-1, 0]
    rt = float(np.sqrt(np.mean((back - chunk3) ** 2)))
    assert b.readout("run_reversal", "roundtrip") == pytest.approx(rt, rel=1e-3, abs=1e-7)
    before = b.eval("rqlLab.figs.run_samples.state.samples")
    b.click("#btn-run_samples-reroll")
    assert b.eval("rqlLab.figs.run_samples.state.samples") != before and b.readout("run_samples", "std") > 0
    b.click("#btn-run_ascend-ascend")
    assert b.readout("run_ascend", "v1") > b.readout("run_ascend", "v0")
    assert "principal axes" in b.eval("rqlLab.lab.run.projection.name")
    assert not b.console_errors(), b.console_errors()
