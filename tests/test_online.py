"""Offline-to-online fine-tuning (``--online-steps``): the replay buffer on the device, its windows,
the online phase of a group on the real task, and kill -9 / SIGTERM then resume in the online phase."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents import build_config, make_agent
from rql.checkpoint import Checkpoints
from rql.data.dataset import Dataset
from rql.data.device import to_device
from rql.data.loading import load_dataset
from rql.online import append, close_open_episode, init_online_buffer, online_template, window_indices
from rql.training import RunConfig, train_group

from conftest import TASK

TINY = dict(actor_hidden_dims=(16, 16), value_hidden_dims=(16, 16), ensemble=2, batch_size=16, horizon=2)


def _episode_ids(off_terminals, on_terminals, off_cap):
    """Episode id of every global index, from the terminal flags alone (offline ids first)."""
    off_ids = np.concatenate([[0], np.cumsum(off_terminals[:-1] > 0)])
    on_ids = np.concatenate([[0], np.cumsum(on_terminals[:-1] > 0)]) + off_ids[-1] + 1 if len(on_terminals) else []
    ids = np.full(off_cap + len(on_terminals), -1)
    ids[: len(off_ids)] = off_ids
    ids[off_cap:] = on_ids
    return ids


def test_buffer_append_and_windows_respect_episodes():
    """Synthetic stream with known episodes: every window stays inside one episode, the episode in
    progress is sampled from its second step on and ends at its newest step, a full buffer stops."""
    h = 3
    off_eps = [6, 4, 9]
    n_off = sum(off_eps)
    obs = np.concatenate([np.stack([np.full(n, -1.0 - e), np.arange(n)], 1) for e, n in enumerate(off_eps)])
    term = np.concatenate([np.eye(n)[-1] for n in off_eps]).astype(np.float32)
    ds = Dataset(obs.astype(np.float32), np.zeros((n_off, 1), np.float32), np.zeros(n_off, np.float32), term,
                 1.0 - term)
    off = to_device(ds, capacity=n_off + 5)  # padded offline arrays are never sampled
    buf = init_online_buffer(20, 2, 1)
    app = jax.jit(append)
    online_eps = [5, 1, 2, 7]  # an episode of one step is stored but never sampled
    key = jax.random.PRNGKey(0)

    def check(buf, n_online_steps, open_len):
        idx = np.asarray(jax.jit(window_indices, static_argnums=(3, 4))(off, buf, key, 4000, h))
        o = np.where(idx[..., None] < off.observations.shape[0],
                     np.asarray(off.observations)[np.minimum(idx, off.observations.shape[0] - 1)],
                     np.asarray(buf["observations"])[np.clip(idx - off.observations.shape[0], 0, 19)])
        assert (o[:, :, 0] == o[:, :1, 0]).all(), "a window crosses an episode boundary"
        assert (idx < n_off).any() and (((idx < n_off) | (idx >= off.observations.shape[0])).all())
        on = idx[:, 0] >= off.observations.shape[0]
        assert np.all(idx[on] - off.observations.shape[0] < n_online_steps)
        ep_ids = set(np.unique(o[on, 0, 0]).astype(int))
        assert 1 not in ep_ids  # the one-step episode
        if open_len is not None:
            cur = len(online_eps)
            assert (cur in ep_ids) == (open_len >= 2)
            if open_len >= 2:  # its windows end at its newest step
                w = o[on & (o[:, 0, 0] == cur)]
                assert w[:, :, 1].max() == open_len - 1
        return ep_ids

    def tr(e, t, done):
        return {"observations": jnp.array([e, t], jnp.float32), "actions": jnp.zeros(1), "rewards": jnp.float32(0),
                "masks": jnp.float32(1), "done": jnp.float32(done)}

    n = 0
    for e, L in enumerate(online_eps):
        for t in range(L):
            buf = app(buf, tr(e, t, t == L - 1))
            n += 1
    assert int(buf["size"]) == n == 15 and int(buf["num_closed"]) == 3
    assert check(buf, n, None) == {0, 2, 3}
    terms = np.asarray(buf["terminals"])[:n]
    assert terms.sum() == 4 and all(terms[np.cumsum(online_eps) - 1] == 1)
    # The episode in progress: one step (not sampled), then two and three (sampled, provisional end).
    cur = len(online_eps)
    for t in range(3):
        buf = app(buf, tr(cur, t, False))
        n += 1
        check(buf, n, t + 1)
        assert np.asarray(buf["terminals"])[n - 1] == 1 and (t == 0 or np.asarray(buf["terminals"])[n - 2] == 0)
    # Resume closes it where it stands; a new episode starts after it.
    buf = jax.jit(close_open_episode)(buf)
    assert int(buf["num_closed"]) == 4 and int(buf["cur_start"]) == n
    # Full: 20 steps of capacity, the rest is not stored.
    for t in range(5):
        buf = app(buf, tr(cur + 1, t, t == 4))
    assert int(buf["size"]) == 20
    assert np.asarray(buf["observations"])[-1].tolist() == [cur + 1, 1]
    assert check(buf, 20, None) == {0, 2, 3, cur, cur + 1}


def test_online_phase_of_a_group(tiny_ogbench, tmp_path):
    cfg = build_config("rql", TASK, None, TINY)
    steps, online, ep_len = 40, 160, 25
    run = RunConfig(task=TASK, dataset_path=str(tiny_ogbench), steps=steps, online_steps=online,
                    online_episode_steps=ep_len, eval_every=100, eval_episodes=2, eval_envs=2, log_every=20,
                    progress=False, utd=2)
    dirs = [tmp_path / "g" / "s0", tmp_path / "g" / "s1"]
    summaries = train_group(run, "rql", cfg, [0, 1], dirs, log=lambda *a: None)
    ds = load_dataset(TASK, str(tiny_ogbench), horizon=2)
    agent = make_agent("rql", cfg, ds.obs_dim, ds.action_dim)
    for seed, d, s in zip([0, 1], dirs, summaries):
        assert s["steps"] == steps + online
        rows = list(csv.DictReader(open(d / "metrics.csv")))
        assert [int(r["step"]) for r in rows] == list(range(20, steps + online + 1, 20))
        assert all(np.isfinite(float(r["loss/total"])) for r in rows)
        on_rows = [r for r in rows if int(r["step"]) > steps]
        assert all(r["online/env_steps"] for r in on_rows) and not any(r["online/env_steps"] for r in rows[:2])
        for r in on_rows:  # the buffer grows by exactly the environment steps taken
            assert int(r["online/env_steps"]) == int(r["step"]) - steps
            assert int(r["online/buffer_size"]) == ds.size + int(r["step"]) - steps
            assert float(r["online/env_steps_per_s"]) > 0
        evals = [int(r["step"]) for r in rows if r["eval/success"]]
        assert evals == [40, 100, 200]
        finished = [float(r["online/episode_length"]) for r in on_rows if r["online/episode_length"]]
        assert finished and all(1 <= x <= ep_len for x in finished)
        assert int(on_rows[-1]["online/episodes"]) >= online // ep_len

        doc = json.loads((d / "config.json").read_text())
        cap = doc["online"]["capacity"]
        assert cap == online
        ck = Checkpoints(d / "checkpoints")
        assert ck.latest() == steps + online
        st = ck.restore(steps + online, online_template(agent, seed, cap))
        ck.close()
        buf = st["online"]
        assert int(buf["size"]) == online and int(buf["env_steps"]) == online
        assert int(st["step"]) == steps + online * run.utd  # updates: offline, then utd per env step
        terms = np.asarray(buf["terminals"])
        n_eps = int(on_rows[-1]["online/episodes"])  # finished; plus the one in progress, if it has steps
        assert n_eps <= terms.sum() <= n_eps + 1 and int(buf["num_closed"]) <= n_eps
        # Many windows from the device buffer: none crosses offline/online or two online episodes.
        off = to_device(ds)
        idx = np.asarray(window_indices(off, buf, jax.random.PRNGKey(seed), 20000, cfg.horizon))
        ids = _episode_ids(ds.terminals, terms, ds.size)
        assert (ids[idx] == ids[idx[:, :1]]).all()
        assert (idx[:, 0] >= ds.size).mean() > 0.1  # online episodes are sampled
    # The two seeds acted in their own environments.
    a = list(csv.DictReader(open(dirs[0] / "metrics.csv")))[-1]
    b = list(csv.DictReader(open(dirs[1] / "metrics.csv")))[-1]
    assert a["loss/total"] != b["loss/total"]


def _cli(*args):
    return [sys.executable, "-m", "rql.cli", *args]


def _ckpts(d):
    ck = os.path.join(d, "checkpoints")
    return sorted(int(s) for s in (os.listdir(ck) if os.path.isdir(ck) else []) if s.isdigit())


def _wait_for(proc, d, beyond, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(s > beyond for s in _ckpts(d)) or proc.poll() is not None:
            return
        time.sleep(0.05)


def test_sigterm_and_kill_9_in_online_phase_then_resume(tiny_ogbench, tmp_path):
    steps, online = 100, 700
    d = str(tmp_path / "run")
    args = ["train", "--task", TASK, "--dataset-path", str(tiny_ogbench), "--eval-episodes", "0",
            "--agent.actor-hidden-dims", "16", "16", "--agent.value-hidden-dims", "16", "16",
            "--agent.ensemble", "2", "--agent.batch-size", "16", "--agent.horizon", "2",
            "--steps", str(steps), "--online-steps", str(online), "--online-episode-steps", "50",
            "--save-every", "50", "--log-every", "50", "--no-progress", "--keep-checkpoints", "30", "--run-dir", d]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    # SIGTERM in the online phase: saves where it stands and exits with 128 + 15.
    proc = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for(proc, d, steps + 50)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    stopped_at = _ckpts(d)[-1]
    assert steps < stopped_at < steps + online and f"at step {stopped_at}" in err

    # Resume, then kill -9 further on in the online phase.
    proc = subprocess.Popen(_cli("train", "--resume", d), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for(proc, d, stopped_at + 50)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _ckpts(d)[-1]
    assert stopped_at < killed_at < steps + online, "the run finished before it could be killed"

    r = subprocess.run(_cli("train", "--resume", d), env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"from step {killed_at}" in r.stdout + r.stderr
    total = steps + online
    rows = list(csv.DictReader(open(os.path.join(d, "metrics.csv"))))
    assert [int(x["step"]) for x in rows] == list(range(50, total + 1, 50))
    assert int(rows[-1]["online/env_steps"]) == online
    assert int(rows[-1]["online/buffer_size"]) == 117 + online  # the tiny data: 3 episodes of 39 steps
    assert _ckpts(d)[-1] == total
    assert json.loads(open(os.path.join(d, "summary.json")).read())["steps"] == total

    cfg = build_config("rql", TASK, None, TINY)
    agent = make_agent("rql", cfg, 28, 5)
    ck = Checkpoints(os.path.join(d, "checkpoints"))
    st = ck.restore(total, online_template(agent, 0, online))
    ck.close()
    assert int(st["online"]["size"]) == online and int(st["online"]["env_steps"]) == online
    # Two interruptions: the episodes in progress were closed where they stood, new ones started.
    assert int(st["online"]["episode"]) >= online // 50 + 1
