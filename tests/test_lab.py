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
def lab(tmp_path_factory):
    from rql.lab.toylab import run_toy_lab

    out = tmp_path_factory.mktemp("lab")
    numbers = run_toy_lab(out, "toy:ring", steps=STEPS, seed=0, agents=("flow-bc", "rql"), log=lambda *a: None)
    return out, numbers


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
    assert total == len(list((out / "figures").glob("*.png"))) and total > 20
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

    # A run without a value (flow BC), drawn with RQL as its baseline.
    toy_runs = lab[0] / "runs"
    out_bc = tmp_path / "lab-bc"
    assert main(["lab", "--run", str(toy_runs / "flow-bc"), "--baseline", str(toy_runs / "rql"), "--out",
                 str(out_bc), "--states", "32"]) == 0
    assert "Only RQL learns a value V(s, x, t)" in (out_bc / "index.html").read_text()
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
