"""``rql export`` and ``rql.load_exported``: the exported policy's actions equal the checkpoint policy's for
the same observations and key, at any batch size, in a process where flax, optax and rql's agents cannot be
imported; a damaged or foreign file is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import rql
from rql.cli import main

from conftest import TASK

TINY = {"actor_hidden_dims": (16,), "value_hidden_dims": (16,), "ensemble": 2, "batch_size": 8, "horizon": 2,
        "flow_steps": 2}


@pytest.fixture(scope="module")
def exported(tiny_ogbench, tmp_path_factory):
    """A trained RQL run and its exported policy (every built-in agent exports: benchmarks/export_agents.py)."""
    d = tmp_path_factory.mktemp("export")
    result = rql.train(task=TASK, agent="rql", dataset_path=tiny_ogbench, steps=20, run_dir=d / "run",
                       eval_episodes=0, progress=False, tensorboard=False, log=lambda *a, **k: None,
                       agent_config=TINY)
    out = d / "policy.rqlx"
    assert main(["export", str(result.run_dir), "--out", str(out)]) == 0
    return result.run_dir, out


def test_round_trip_equals_the_checkpoint_policy_at_any_batch_size(exported, capsys):
    run_dir, path = exported
    policy, loaded = rql.load(run_dir), rql.load_exported(path)
    header = loaded.header
    assert header["agent"] == policy.name and header["checkpoint"] == 20 == policy.checkpoint
    assert header["observation_shape"] == [policy.obs_dim] and header["horizon"] == 2 == loaded.horizon
    assert header["action_shape"] == [2, policy.action_dim] and header["batch"] == "symbolic"
    assert header["rql_version"] == rql.__version__ and "cpu" in header["platforms"]
    rng = np.random.default_rng(0)
    for batch in (1, 7, 64):
        obs = rng.normal(size=(batch, policy.obs_dim)).astype(np.float32)
        key = jax.random.PRNGKey(batch)
        a = np.asarray(loaded(obs, key))
        assert a.shape == (batch, 2, policy.action_dim) and np.all(np.abs(a) <= 1)
        np.testing.assert_array_equal(a, policy(obs, key))
    one = np.asarray(loaded.act(obs[0], jax.random.PRNGKey(5)))
    np.testing.assert_array_equal(one, policy.act(obs[0], jax.random.PRNGKey(5)))
    assert one.shape == policy.chunk_space.shape and policy.action_space.shape == (policy.action_dim,)
    with pytest.raises(rql.RQLError, match=r"this policy takes \(batch, "):
        loaded(obs[:, :3], key)


BLOCKED = textwrap.dedent('''
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("flax", "optax", "orbax") or name.startswith("rql.agents"):
                raise ImportError(f"{name} is blocked in this process")
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np, jax, rql

    policy = rql.load_exported(sys.argv[1])
    obs = np.load(sys.argv[2])
    np.save(sys.argv[3], np.asarray(policy(obs, jax.random.PRNGKey(11))))
    try:
        import flax  # noqa: F401
        print("flax importable")
    except ImportError:
        pass
    print("loaded", sorted(m for m in sys.modules if m.startswith("rql")))
''')


def test_runs_with_jax_alone(exported, tmp_path):
    run_dir, path = exported
    policy = rql.load(run_dir)
    obs = np.random.default_rng(1).normal(size=(5, policy.obs_dim)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    script = tmp_path / "jax_only.py"
    script.write_text(BLOCKED)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "obs.npy"), str(tmp_path / "a.npy")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "flax importable" not in r.stdout and "rql.agents" not in r.stdout
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), policy(obs, jax.random.PRNGKey(11)))


def test_damaged_or_foreign_files_are_one_line(exported, tmp_path, capsys):
    run_dir, path = exported
    data = path.read_bytes()
    header_len = int.from_bytes(data[8:16], "little")
    cases = {
        "foreign.rqlx": (b"PK\x03\x04 not a policy", "not a policy exported by 'rql export'"),
        "truncated.rqlx": (data[: len(data) - 100], "damaged exported policy"),
        "flipped.rqlx": (data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:], "damaged exported policy"),
        "header.rqlx": (data[:20] + b"\x00" + data[21:], "damaged exported policy (unreadable header)"),
        "program.rqlx": (data[: 16 + header_len + 50] + b"\x00" * 8 + data[16 + header_len + 58 :],
                         "damaged exported policy"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(rql.RQLError, match=expected.replace("(", r"\(").replace(")", r"\)")) as e:
            rql.load_exported(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(rql.RQLError, match="no such file"):
        rql.load_exported(tmp_path / "missing.rqlx")
    # The command line: a run directory that is none, an output that is a folder.
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "p.rqlx")]) == 2
    assert "no config.json" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0]
    assert json.loads(path.read_bytes()[16 : 16 + header_len])["program_bytes"] > 0
