"""``rql sweep``: plans, a sweep on a local Ray, and a sweep on a two-node Ray cluster started here.

The runs are tiny (8-unit networks, 20 updates, one evaluation episode) on the small recorded
dataset of conftest.py (cube-single-play-v0.npz).
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import pytest

import rql.sweep as sweep
from rql.cli import main
from rql.errors import RQLError

T1 = "cube-single-play-singletask-task1-v0"
# Networks this small compile in half the time of 2x16 ones; compiling dominates these tests.
TINY = ["agent.actor_hidden_dims=[8]", "rql.value_hidden_dims=[8]", "rql.ensemble=2", "agent.batch_size=8",
        "agent.horizon=1", "agent.flow_steps=1", "run.tensorboard=false", "run.updates_per_dispatch=10"]
SCHEDULE = ["--steps", "20", "--eval-every", "0", "--eval-episodes", "1", "--eval-envs", "1", "--log-every", "10"]


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """One JAX compilation cache for every trial of this module: the cells of one agent share shapes."""
    return tmp_path_factory.mktemp("jax-cache")


@pytest.fixture
def quick_compiles(monkeypatch):
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def cells_of(out: pathlib.Path) -> dict[str, dict]:
    return {c["dir"]: c for c in json.loads((out / "sweep.json").read_text())["cells"]}


def file_times(out: pathlib.Path) -> dict[pathlib.Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and "compare" not in p.relative_to(out).parts and p.name != "sweep.json"}


# ----------------------------------------------------------------------------- plans (no Ray)


def test_plan_grid_labels_and_file_equivalence(tmp_path):
    args = sweep.SweepArgs(tasks=T1, agents="rql,flow-bc", seeds="0-2", out=str(tmp_path / "o"))
    plan = sweep.make_plan(args, ["agent.flow-steps=2,4", "rql.alpha=1,3.5"], ["rql.ensemble=2", "run.log_every=5"])
    cells = sweep.make_cells(plan)
    labels = sorted({c.label for c in cells})
    assert labels == sorted(["rql-flow_steps=2-alpha=1", "rql-flow_steps=2-alpha=3.5", "rql-flow_steps=4-alpha=1",
                             "rql-flow_steps=4-alpha=3.5", "flow-bc-flow_steps=2", "flow-bc-flow_steps=4"])
    assert len(cells) == 6 * 3 and {c.seed for c in cells} == {0, 1, 2}
    c = next(c for c in cells if c.label == "rql-flow_steps=4-alpha=3.5" and c.seed == 2)
    assert c.dir == f"{T1}/rql-flow_steps=4-alpha=3.5/s2"
    assert c.overrides == {"ensemble": 2, "flow_steps": 4, "alpha": 3.5}
    assert all("ensemble" not in c.overrides for c in cells if c.agent == "flow-bc")
    assert plan.run["log_every"] == 5
    cfg = sweep.agent_config(c.agent, c.task, plan.preset, c.overrides)
    assert (cfg.flow_steps, cfg.alpha, cfg.ensemble) == (4, 3.5, 2)

    toml = tmp_path / "s.toml"
    toml.write_text(f'tasks = ["{T1}"]\nagents = ["rql", "flow-bc"]\nseeds = "0-2"\nout = "{tmp_path / "o"}"\n'
                    '[grid]\n"agent.flow-steps" = [2, 4]\nrql.alpha = [1, 3.5]\n'
                    '[set]\nrql = { ensemble = 2 }\nrun.log_every = 5\n')
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(f"tasks: [{T1}]\nagents: [rql, flow-bc]\nseeds: [0, 1, 2]\nout: {tmp_path / 'o'}\n"
                         "grid:\n  agent.flow-steps: [2, 4]\n  rql:\n    alpha: [1, 3.5]\n"
                         "set:\n  rql.ensemble: 2\n  run:\n    log_every: 5\n")
    for f in (toml, yaml_file):
        other = sweep.make_plan(sweep.SweepArgs(config=str(f)))
        assert [(c.dir, c.overrides) for c in sweep.make_cells(other)] == [(c.dir, c.overrides) for c in cells]
        assert other.run == plan.run
    # Settings of an agent not swept this time are allowed (a shared sweep file), and unused.
    only_bc = sweep.make_plan(sweep.SweepArgs(config=str(toml), agents="flow-bc"))
    assert {c.label for c in sweep.make_cells(only_bc)} == {"flow-bc-flow_steps=2", "flow-bc-flow_steps=4"}
    # The command line wins over the file.
    assert sweep.make_plan(sweep.SweepArgs(config=str(toml), seeds="7")).seeds == [7]


def test_plan_errors_are_one_line(tmp_path, capsys):
    base = ["sweep", "--tasks", T1, "--agents", "rql,flow-bc", "--out", str(tmp_path / "o")]
    cases = [
        (["--grid", "rql.alpah=1,2"], "agent 'rql' has no field 'alpah'"),
        (["--grid", "agent.nope=1"], "no agent has a field 'nope'"),
        (["--grid", "nope.alpha=1"], "'nope' is neither 'agent' nor an agent name"),
        (["--set", "run.task=x"], "the sweep sets this itself"),
        (["--seeds", "0,x"], "'x' is not a seed"),
        (["--cpus-per-run", "0"], "--cpus-per-run must be more than 0"),
        (["--agents", "nope"], "unknown agent 'nope'"),
        (["--config", str(tmp_path / "missing.toml")], "no such file"),
    ]
    for extra, needle in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0], (extra, err)
    assert main(["sweep", "--tasks", T1]) == 2
    assert "give --out DIR" in capsys.readouterr().err
    # A value of the wrong type fails its cells (not the sweep) with a line naming the setting.
    with pytest.raises(RQLError, match=r"rql.horizon=abc: expected an integer"):
        sweep.agent_config("rql", T1, None, {"horizon": "abc"})
    assert sweep.agent_config("rql", T1, None, {"actor_hidden_dims": "[8,8]"}).actor_hidden_dims == (8, 8)


# ----------------------------------------------------------------------------- local Ray


def test_local_sweep_finishes_skips_and_isolates_a_bad_cell(tiny_ogbench, tmp_path, capsys, monkeypatch, jax_cache,
                                                             quick_compiles):
    out = tmp_path / "sweep"
    argv = ["sweep", "--tasks", T1, "--agents", "rql,flow-bc", "--seeds", "0,1", "--out", str(out),
            "--dataset-dir", str(tiny_ogbench.parent), *SCHEDULE, "--seeds-per-run", "2", "--num-cpus", "2",
            "--compile-cache", str(jax_cache), "--grid", "flow-bc.lr=0.001,bad", "--set", *TINY]
    assert main(argv) == 1
    cap = capsys.readouterr()
    cells = cells_of(out)
    assert len(cells) == 3 * 2  # (rql, flow-bc lr=0.001, flow-bc lr=bad) x 2 seeds
    good = {d: c for d, c in cells.items() if "lr=bad" not in d}
    bad = {d: c for d, c in cells.items() if "lr=bad" in d}
    assert {c["label"] for c in good.values()} == {"rql", "flow-bc-lr=0.001"}
    for d, c in good.items():
        assert c["status"] == "done", (d, c)
        run = out / d
        assert json.loads((run / "summary.json").read_text())["steps"] == 20
        assert json.loads((run / "config.json").read_text())["label"] == c["label"]
        assert c["node_id"] and c["hostname"] == socket.gethostname() and c["wall_time_s"] > 0
    # Two seeds of a cell share a trial (--seeds-per-run 2): 2 trials for the 4 good cells.
    assert len({c["trial"] for c in good.values()}) == 2
    for d, c in good.items():
        sibling = d[:-1] + ("1" if d.endswith("0") else "0")
        assert cells[sibling]["trial"] == c["trial"]
    for d, c in bad.items():
        assert c["status"] == "failed" and c["error"] == "flow-bc.lr=bad: expected a number", c
        assert not (out / d).exists()
    last = cap.err.strip().splitlines()[-1]
    assert "2 of 6 cells failed" in last and str(out / "sweep.json") in last
    # The comparison of the whole grid, one row per (task, variant) (plans of several tasks: test_plan_grid_...).
    with (out / "compare" / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["task"], r["agent"], r["seeds"]) for r in rows) == sorted(
        (T1, a, "2") for a in ("rql", "flow-bc-lr=0.001"))
    assert "| flow-bc-lr=0.001 |" in cap.out and (out / "compare" / f"{T1}.png").is_file()

    # The same command again: finished cells are skipped, nothing is trained or rewritten, no Ray.
    before = file_times(out)
    monkeypatch.setattr(sweep.execution, "_start_ray", lambda *a: pytest.fail("a re-run with nothing to train started Ray"))
    assert main(argv) == 1
    again = cells_of(out)
    assert all(again[d]["status"] == "skipped" for d in good)
    assert all(again[d]["node_id"] == good[d]["node_id"] for d in good)  # where it ran is kept
    assert all(again[d]["status"] == "failed" for d in bad)
    assert file_times(out) == before
    capsys.readouterr()

    assert main(["sweep", "status", str(out)]) == 1
    status = capsys.readouterr().out
    assert "6 cells: 2 failed, 4 skipped" in status and "flow-bc.lr=bad: expected a number" in status
    assert "| rql |" in status


# ----------------------------------------------------------------------------- a Ray cluster


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp_dir: str) -> None:
    """Stop the processes of the cluster started by this test only: those naming its temp folder."""
    import psutil

    mine = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and any(temp_dir in a for a in (p.info["cmdline"] or [])):
                mine.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    for p in mine:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(mine, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def _ray_start(ray_bin, args, env):
    ports = [f"--{name}={_free_port()}" for name in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                                     "runtime-env-agent-port", "metrics-export-port")]
    return subprocess.run([str(ray_bin), "start", *args, *ports, "--disable-usage-stats"], env=env,
                          capture_output=True, text=True, timeout=180)


def test_sweep_on_a_two_node_cluster_copies_runs_back(tiny_ogbench, tmp_path, capsys, monkeypatch, jax_cache,
                                                      quick_compiles):
    ray_bin = pathlib.Path(sys.executable).parent / "ray"
    if not ray_bin.exists():
        pytest.skip(f"no 'ray' command next to {sys.executable}")
    # Token authentication on every node and for the driver, with Ray's token (as a plain ray.init makes).
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
            or (pathlib.Path.home() / ".ray" / "auth_token").is_file()):
        subprocess.run([str(ray_bin), "get-auth-token", "--generate"], capture_output=True, timeout=60)
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="rqlray-")  # short: Ray's socket paths must stay under ~100 characters
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        head = _ray_start(ray_bin, ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                                    f"--temp-dir={temp}"], env)
        if head.returncode != 0:
            lines = (head.stderr or head.stdout or "no output").strip().splitlines()
            pytest.skip(f"'ray start --head' cannot run here: {lines[-1][:300]}")
        worker = _ray_start(ray_bin, [f"--address=127.0.0.1:{port}", "--num-cpus=1",
                                      '--resources={"worker_node": 1}', f"--temp-dir={temp}"], env)
        assert worker.returncode == 0, worker.stderr[-2000:]

        import ray

        ray.init(address=f"127.0.0.1:{port}", log_to_driver=False, logging_level="ERROR")
        try:
            nodes = [n for n in ray.nodes() if n["Alive"]]
        finally:
            ray.shutdown()
        assert len(nodes) == 2
        worker_id = next(n["NodeID"] for n in nodes if "worker_node" in n["Resources"])

        # Every trial on the worker node; runs trained in its temp folder come back as archives. The method is a
        # plugin agent from a file outside the package: the file's bytes travel with each trial.
        monkeypatch.setenv(sweep.COPY_ENV, "1")
        from test_plugins import write_plugin

        plugin = write_plugin(tmp_path / "mine" / "plug_bc.py", "plug-bc")
        out = tmp_path / "cluster-sweep"
        bad_task = "cube-single-play-singletask-task9-v0"
        argv = ["sweep", "--tasks", f"{T1},{bad_task}", "--agents", str(plugin), "--seeds", "0,1", "--out", str(out),
                "--dataset-dir", str(tiny_ogbench.parent), *SCHEDULE, "--eval-episodes", "0", "--seeds-per-run", "2",
                "--compile-cache", str(jax_cache), "--grid", "plug-bc.lr=0.001", "--set", *TINY,
                "--address", f"127.0.0.1:{port}", "--resources-per-run", '{"worker_node": 1}', "--no-compare"]
        assert main(argv) == 1
        cells = cells_of(out)
        ok = {d: c for d, c in cells.items() if d.startswith(T1)}
        failed = {d: c for d, c in cells.items() if d.startswith(bad_task)}
        assert len(ok) == 2 and len(failed) == 2
        for d, c in ok.items():
            assert c["status"] == "done" and c["node_id"] == worker_id, c
            assert json.loads((out / d / "summary.json").read_text())["steps"] == 20
            cfg = json.loads((out / d / "config.json").read_text())
            assert cfg["label"] == "plug-bc-lr=0.001" and cfg["run"]["run_dir"] == str(out / d)
            assert cfg["agent"] == "plug-bc" and cfg["agent_source"]["path"] == str(plugin.resolve())
        for c in failed.values():  # an error inside the trial is reported, on the node it ran on
            assert c["status"] == "failed" and c["node_id"] == worker_id and "unknown task" in c["error"], c
        assert not any(p.name.startswith(".incoming") for p in out.iterdir())

        # An interrupted cell (config.json, no summary) travels to the worker and resumes there.
        for d in ok:
            (out / d / "summary.json").unlink()
        capsys.readouterr()
        assert main(argv) == 1
        again = cells_of(out)
        for d in ok:
            assert again[d]["status"] == "done" and again[d]["resumed"] and again[d]["node_id"] == worker_id
            assert json.loads((out / d / "summary.json").read_text())["steps"] == 20
    finally:
        _stop_cluster(temp)
        shutil.rmtree(temp, ignore_errors=True)
