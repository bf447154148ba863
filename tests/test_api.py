"""The Python API and exported policies: the README's Python block runs as written (with fewer episodes,
updates and units: each change below must find its text in the block, so the README cannot drift from what
is run), and the policy it exports (``rql export`` / ``rql.export``) equals the checkpoint policy's actions
for the same observations and key at any batch size, in a process where flax, optax and rql's agents cannot
be imported; a damaged or foreign file is one line."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import rql
from rql.cli import main

README = pathlib.Path(__file__).parents[1] / "README.md"

# (text in the README's block, what the test runs instead): tiny data and few updates, the same calls.
SMALLER = [
    ('episodes=60)', 'episodes=2, max_steps=60)'),
    ('steps=15_000', 'steps=20'),
    ('eval_episodes=50', 'eval_episodes=1, eval_envs=1, progress=False, log=lambda *a, **k: None'),
    ('agent_config={"alpha": 10.0}', 'agent_config={"alpha": 10.0, "actor_hidden_dims": (16,), '
                                     '"value_hidden_dims": (16,), "batch_size": 16, "flow_steps": 2}'),
    ('episodes=20)', 'episodes=1, envs=1, log=lambda *a, **k: None)'),
]


def python_block() -> str:
    text = README.read_text()
    section = text.split("## From Python", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the 'From Python' section holds one python block"
    return blocks[0]


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    """The README block run in a fresh folder: its namespace and the folder."""
    code = python_block()
    assert len(code.strip().splitlines()) <= 14, "the quickstart stays short"
    for old, new in SMALLER:
        assert code.count(old) == 1, f"README block no longer has {old!r}"
        code = code.replace(old, new)
    d = tmp_path_factory.mktemp("quickstart")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        namespace: dict = {}
        exec(compile(code, str(README), "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace, d


@pytest.fixture(scope="module")
def exported(quickstart):
    """The quickstart's first run and the policy file it exported."""
    namespace, d = quickstart
    return d / namespace["result"].run_dirs[0], d / "policy.rqlx"


def test_readme_python_block_runs(quickstart):
    namespace, d = quickstart
    result = namespace["result"]
    assert len(result.run_dirs) == 2 and all(0.0 <= s <= 1.0 for s in result.success)
    assert [s["steps"] for s in result.summaries] == [20, 20]
    assert namespace["chunks"].shape == (8, 5, 5)
    assert (d / "policy.rqlx").is_file() and (d / "data" / "cube-single-play-v0.npz").is_file()


def test_round_trip_equals_the_checkpoint_policy_at_any_batch_size(exported, capsys):
    run_dir, path = exported
    policy, loaded = rql.load(run_dir), rql.load_exported(path)
    header = loaded.header
    assert header["agent"] == policy.name == "rql" and header["checkpoint"] == 20 == policy.checkpoint
    assert header["observation_shape"] == [policy.obs_dim] and header["horizon"] == 5 == loaded.horizon
    assert header["action_shape"] == [5, policy.action_dim] and header["batch"] == "symbolic"
    assert header["rql_version"] == rql.__version__ and "cpu" in header["platforms"]
    rng = np.random.default_rng(0)
    for batch in (1, 7, 64):
        obs = rng.normal(size=(batch, policy.obs_dim)).astype(np.float32)
        key = jax.random.PRNGKey(batch)
        a = np.asarray(loaded(obs, key))
        assert a.shape == (batch, 5, policy.action_dim) and np.all(np.abs(a) <= 1)
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
