"""Tests for rql.data.generate: OGBench-format files, determinism, oracle noise, atomic writes."""

from __future__ import annotations

import hashlib
import os
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*(DISPLAY|precision lowered).*")

import ogbench  # noqa: E402

from rql.data import generate as gen  # noqa: E402
from rql.errors import RQLError  # noqa: E402

STEPS = 40

# name, obs_dim, action_dim, has button_states
CASES = [
    ("cube-single-play-v0", 28, 5, False),
    ("scene-play-v0", 40, 5, True),
    ("puzzle-3x3-play-v0", 55, 5, True),
    ("pointmaze-medium-navigate-v0", 2, 2, False),
]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Two short training episodes (and one validation episode) for each case."""
    out = tmp_path_factory.mktemp("ogbench")
    paths = {}
    for name, *_ in CASES:
        paths[name] = gen.generate(name, out, episodes=2, max_steps=STEPS, seed=0, progress=False)
    return out, paths


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize("name,obs_dim,act_dim,buttons", CASES)
def test_files_match_ogbench_format(generated, name, obs_dim, act_dim, buttons):
    out, paths = generated
    train, val = paths[name]
    assert train == out / name.replace("-v0", "-v0.npz")
    assert val == out / name.replace("-v0", "-v0-val.npz")
    for path, episodes in ((train, 2), (val, 1)):
        n = episodes * STEPS
        with np.load(path, allow_pickle=False) as f:
            keys = set(f.files)
            expected = {"observations", "actions", "terminals", "qpos", "qvel"} | ({"button_states"} if buttons else set())
            assert keys == expected
            obs, act, term = f["observations"], f["actions"], f["terminals"]
            qpos, qvel = f["qpos"], f["qvel"]
            assert obs.shape == (n, obs_dim) and obs.dtype == np.float32
            assert act.shape == (n, act_dim) and act.dtype == np.float32
            assert term.shape == (n,) and term.dtype == np.bool_
            assert np.flatnonzero(term).tolist() == [STEPS * (i + 1) - 1 for i in range(episodes)]
            assert qpos.dtype == np.float32 and qvel.dtype == np.float32
            assert qpos.shape[0] == n and qvel.shape[0] == n
            assert np.all(np.abs(act) <= 1.0) and np.all(np.isfinite(obs))
            assert np.std(act) > 0.01  # real actions, not a constant
            if buttons:
                bs = f["button_states"]
                assert bs.dtype == np.int64 and bs.shape[0] == n
            # qpos describes the state each observation shows.
            if name.startswith("pointmaze"):
                np.testing.assert_allclose(obs, qpos[:, :2], atol=1e-6)
            else:
                np.testing.assert_allclose(obs[:, :6], qpos[:, :6], atol=1e-6)  # arm joint positions

    d = ogbench.load_dataset(str(train))
    assert d["observations"].shape == (2 * (STEPS - 1), obs_dim)
    assert d["next_observations"].shape == (2 * (STEPS - 1), obs_dim)
    assert d["terminals"].sum() == 2


@pytest.mark.parametrize("name,obs_dim,act_dim,buttons", CASES)
def test_single_task_loading(generated, name, obs_dim, act_dim, buttons):
    out, _ = generated
    task = name.replace("-v0", "-singletask-task1-v0")
    env, train, val = ogbench.make_env_and_datasets(task, dataset_dir=str(out))
    env.close()
    for d, episodes in ((train, 2), (val, 1)):
        n = episodes * (STEPS - 1)
        assert d["observations"].shape == (n, obs_dim)
        assert d["actions"].shape == (n, act_dim)
        r, m = d["rewards"], d["masks"]
        assert r.shape == (n,) and m.shape == (n,)
        assert np.all(r <= 0)
        assert set(np.unique(m).tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(m == 0, r == 0)  # success exactly where every subtask is done


def test_info_agrees_with_ogbench_relabelling(generated):
    from rql.data.info import dataset_info

    out, paths = generated
    train, _ = paths["scene-play-v0"]
    task = "scene-play-singletask-task2-v0"
    _, d, _ = ogbench.make_env_and_datasets(task, dataset_dir=str(out))
    info = dataset_info(str(train), task=task)
    assert info["transitions"] == d["rewards"].shape[0]
    assert info["task"]["rewards"]["mean"] == pytest.approx(float(d["rewards"].mean()))
    assert info["task"]["success_fraction"] == pytest.approx(float((d["masks"] == 0).mean()))


def test_same_seed_same_bytes_and_workers_do_not_matter(tmp_path):
    a = gen.generate("cube-single-play", tmp_path / "a", episodes=2, max_steps=30, seed=3, progress=False)
    b = gen.generate("cube-single-play", tmp_path / "b", episodes=2, max_steps=30, seed=3, workers=2, progress=False)
    c = gen.generate("cube-single-play", tmp_path / "c", episodes=2, max_steps=30, seed=4, progress=False)
    for pa, pb in zip(a, b):
        assert _sha(pa) == _sha(pb)
    with np.load(a[0]) as fa, np.load(c[0]) as fc:
        assert not np.array_equal(fa["observations"], fc["observations"])
        assert not np.array_equal(fa["actions"], fc["actions"])
    # Validation episodes come from different seeds than the training ones.
    with np.load(a[0]) as ft, np.load(a[1]) as fv:
        assert not np.array_equal(ft["observations"][:30], fv["observations"])


def test_episode_depends_only_on_its_own_seed():
    """Episode 2 is the same whether it runs after episodes 0 and 1 or alone (noisy: random actions)."""
    recipe = gen.resolve("cube-single-noisy")
    seq = list(gen._run_episodes(recipe, 25, [(0, 0, 0), (0, 0, 1), (0, 0, 2)], workers=1))
    alone = list(gen._run_episodes(recipe, 25, [(0, 0, 2)], workers=1))[0]
    for k in alone:
        np.testing.assert_array_equal(seq[2][k], alone[k])
    assert not np.array_equal(seq[1]["actions"], seq[2]["actions"])


def test_scene_health_check():
    healthy = gen._ManipCollector._healthy
    ok = np.zeros((3, 25), np.float32)
    ok[:, 14:17] = [0.4, 0.0, 0.02]
    assert healthy(ok)
    right = ok.copy()
    right[1, 15] = 0.29  # block too far right
    assert not healthy(right)
    left = ok.copy()
    left[2, 15:17] = [-0.31, 0.02]  # too far left, on the table
    assert not healthy(left)
    drawer = ok.copy()
    drawer[2, 15:17] = [-0.31, 0.07]  # inside the drawer: fine
    assert healthy(drawer)


def test_unhealthy_scene_episode_is_redone(monkeypatch):
    recipe = gen.resolve("scene-play")
    collector = gen._make_collector(recipe, 15)
    seeds = gen.episode_seeds(0, 0, 0)
    first = collector.run(seeds)
    verdicts = iter([False, True])
    monkeypatch.setattr(gen._ManipCollector, "_healthy", staticmethod(lambda qpos: next(verdicts)))
    redone = collector.run(seeds)
    assert next(verdicts, "used") == "used"  # both verdicts consumed: one rejection, one redo
    assert redone["observations"].shape == first["observations"].shape
    assert not np.array_equal(redone["observations"], first["observations"])  # the redo is a fresh rollout


def test_pointmaze_noise_around_oracle_direction():
    eps = gen._collect("pointmaze-medium-navigate", episodes=2, max_steps=200, seed=0)
    dirs = np.concatenate([e["_directions"] for e in eps])
    raw = np.concatenate([e["_raw_actions"] for e in eps])
    actions = np.concatenate([e["actions"] for e in eps])
    assert dirs.shape == raw.shape == (400, 2)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(actions, np.clip(raw, -1, 1).astype(np.float32))
    resid = raw - dirs
    # Standard error of the mean is 0.5 / sqrt(400) = 0.025.
    assert np.all(np.abs(resid.mean(axis=0)) < 0.1)
    assert np.all(np.abs(resid.std(axis=0) - 0.5) < 0.06)
    # The clipped actions still follow the oracle.
    assert np.mean(np.sum(actions * dirs, axis=1)) > 0.5


def test_interrupted_write_leaves_no_final_file(tmp_path, monkeypatch):
    real = gen._write_npz
    calls = []

    def failing(fileobj, arrays):
        if "_part" in arrays:  # an episode's part file (see test_generate_resume.py)
            return real(fileobj, arrays)
        calls.append(1)
        if len(calls) == 2:  # the validation file is written, the training file fails half way
            fileobj.write(b"PK\x03\x04 partial")
            raise OSError(28, "No space left on device")
        real(fileobj, arrays)

    monkeypatch.setattr(gen, "_write_npz", failing)
    with pytest.raises(RQLError) as exc:
        gen.generate("pointmaze-medium-stitch", tmp_path, episodes=2, max_steps=10, progress=False)
    assert "No space left" in str(exc.value) and "\n" not in str(exc.value)
    # Neither final files nor temporaries; the finished episodes stay in the hidden work folder.
    parts = gen.parts_dir_for(tmp_path, "pointmaze-medium-stitch", max_steps=10)
    assert os.listdir(tmp_path) == [parts.name]
    assert sorted(os.listdir(parts)) == [".lock", "train-0000000.npz", "train-0000001.npz", "val-0000000.npz"]

    # An existing complete file is never replaced by a partial one.
    monkeypatch.setattr(gen, "_write_npz", real)
    train, val = gen.generate("pointmaze-medium-stitch", tmp_path, episodes=2, max_steps=10, progress=False)
    assert sorted(os.listdir(tmp_path)) == sorted([train.name, val.name])  # the work folder is gone
    before = (_sha(train), _sha(val))
    calls.clear()
    monkeypatch.setattr(gen, "_write_npz", failing)
    with pytest.raises(RQLError):
        gen.generate("pointmaze-medium-stitch", tmp_path, episodes=2, max_steps=10, seed=9, progress=False)
    assert (_sha(train), _sha(val)) == before
    seed9 = gen.parts_dir_for(tmp_path, "pointmaze-medium-stitch", max_steps=10, seed=9).name
    assert sorted(os.listdir(tmp_path)) == sorted([train.name, val.name, seed9])


def test_name_resolution_and_defaults():
    r = gen.resolve("cube-single-play-singletask-task2-v0")
    assert (r.dataset, r.env_id, r.kind, r.episodes, r.max_steps) == (
        "cube-single-play-v0",
        "cube-single-v0",
        "play",
        1000,
        1001,
    )
    assert gen.resolve("cube-single-play").dataset == "cube-single-play-v0"
    assert gen.resolve("scene-noisy-singletask-v0").dataset == "scene-noisy-v0"
    assert gen.resolve("cube-triple-play").episodes == 3000
    assert gen.resolve("cube-quadruple-noisy").episodes == 5000
    assert gen.resolve("cube-triple-play").val_episodes == 300
    st = gen.resolve("pointmaze-large-stitch-v0")
    assert (st.env_id, st.episodes, st.max_steps) == ("pointmaze-large-v0", 5000, 201)
    gi = gen.resolve("pointmaze-giant-navigate")
    assert (gi.episodes, gi.max_steps) == (500, 2001)
    assert gen.resolve("puzzle-4x4-noisy").env_id == "puzzle-4x4-v0"


@pytest.mark.parametrize(
    "name,needle",
    [
        ("antmaze-large-navigate-v0", "download"),
        ("humanoidmaze-medium-stitch-singletask-task1-v0", "download"),
        ("cube-single-stitch-v0", "supported"),
        ("walker-medium", "supported"),
        ("cube-single-play-v1", "v0"),
    ],
)
def test_unsupported_names(name, needle):
    with pytest.raises(RQLError) as exc:
        gen.resolve(name)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


@pytest.mark.parametrize(
    "kwargs", [dict(episodes=0), dict(max_steps=1), dict(workers=0), dict(seed=-1), dict(episodes=2.5)]
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(RQLError):
        gen.generate("pointmaze-medium-navigate", tmp_path, progress=False, **kwargs)
    assert os.listdir(tmp_path) == []
