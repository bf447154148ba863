"""Resumable ``rql data generate``: a killed run continues where it stopped and writes the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*(DISPLAY|precision lowered).*")

from rql.data import generate as gen  # noqa: E402
from rql.errors import RQLError  # noqa: E402
from rql.faults import Stopped  # noqa: E402

NAME = "cube-single-play-v0"
EPISODES, STEPS = 3, 20  # 3 training episodes and 1 validation episode

# The command line, with each part write followed by a long pause once `PAUSE_AFTER` parts were written in
# this process, so that the test kills it at a known point (after a part, never during the last one).
_CHILD = textwrap.dedent(
    """
    import os, sys, time
    from rql.data import generate as gen
    real, count = gen._PartWriter.write, [0]
    def write(self, task, ep):
        real(self, task, ep)
        count[0] += 1
        if count[0] >= int(os.environ["PAUSE_AFTER"]):
            open(os.environ["PAUSED"], "w").close()
            time.sleep(120)
    gen._PartWriter.write = write
    from rql.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def _parts(out: pathlib.Path) -> list[str]:
    return sorted(p.name for d in out.glob(f".{NAME}.parts-*") for p in d.glob("*.npz"))


def _start(out: pathlib.Path, flag: pathlib.Path, pause_after: int = 10**6) -> subprocess.Popen:
    env = dict(os.environ, PAUSE_AFTER=str(pause_after), PAUSED=str(flag))
    cmd = [sys.executable, "-c", _CHILD, "data", "generate", NAME, "--episodes", str(EPISODES),
           "--max-steps", str(STEPS), "--seed", "5", "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_paused(proc: subprocess.Popen, flag: pathlib.Path, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while not flag.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the generating process never wrote its part"
        time.sleep(0.02)


def test_killed_generation_resumes_to_the_same_bytes(tmp_path):
    ref = gen.generate(NAME, tmp_path / "ref", episodes=EPISODES, max_steps=STEPS, seed=5, progress=False)
    out = tmp_path / "out"

    # 1. kill -9 after the first part file.
    proc = _start(out, tmp_path / "p1", pause_after=1)
    _wait_paused(proc, tmp_path / "p1")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert _parts(out) == ["train-0000000.npz"]
    assert not (out / f"{NAME}.npz").exists()

    # 2. The same command again finishes; the work folder is gone; the files are an uninterrupted run's.
    proc = _start(out, tmp_path / "p2")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resuming: 1 of 4 episodes" in err and "(1 resumed)" in err
    assert sorted(os.listdir(out)) == sorted([f"{NAME}.npz", f"{NAME}-val.npz"])
    for mine, theirs in zip((out / f"{NAME}.npz", out / f"{NAME}-val.npz"), ref):
        with np.load(mine, allow_pickle=False) as a, np.load(theirs, allow_pickle=False) as b:
            assert a.files == b.files
            for k in a.files:
                assert a[k].dtype == b[k].dtype
                np.testing.assert_array_equal(a[k], b[k])
        assert _sha(mine) == _sha(theirs)


def _interrupt_after(monkeypatch, n: int, how: str = "ctrl-c") -> None:
    real, count = gen._PartWriter.write, [0]

    def write(self, task, ep):
        real(self, task, ep)
        count[0] += 1
        if count[0] == n:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here
            raise KeyboardInterrupt

    monkeypatch.setattr(gen._PartWriter, "write", write)


@pytest.mark.parametrize("how,status", [("ctrl-c", 130), ("sigterm", 143)])
def test_a_stop_keeps_parts_and_other_settings_do_not_reuse_them(tmp_path, monkeypatch, how, status):
    name, kw = "pointmaze-medium-navigate", dict(episodes=3, max_steps=15)
    ref = gen.generate(name, tmp_path / "ref", seed=1, progress=False, **kw)
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 2, how)
    with pytest.raises(Stopped) as exc:
        gen.generate(name, out, seed=1, progress=False, **kw)
    msg = str(exc.value)
    assert exc.value.exit_code == status and "\n" not in msg
    assert f"stopped by {'SIGINT' if how == 'ctrl-c' else 'SIGTERM'}: 2 of 4 episodes are kept in" in msg
    assert "run the same command again to continue" in msg
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or how == "ctrl-c"  # the handler is undone
    parts = gen.parts_dir_for(out, name, max_steps=15, seed=1)
    assert sorted(p.name for p in parts.glob("*.npz")) == ["train-0000000.npz", "train-0000001.npz"]
    monkeypatch.undo()

    # Another seed or episode length uses its own folder: seed 1's parts are neither used nor removed.
    other = gen.generate(name, tmp_path / "other", seed=2, progress=False, **kw)
    gen.generate(name, out, seed=2, progress=False, **kw)
    assert _sha(out / f"{name}-v0.npz") == _sha(other[0])
    assert parts.is_dir() and len(list(parts.glob("*.npz"))) == 2
    assert gen.parts_dir_for(out, name, max_steps=16, seed=1) != parts

    # Seed 1 again picks up its two episodes.
    gen.generate(name, out, seed=1, progress=False, **kw)
    assert _sha(out / f"{name}-v0.npz") == _sha(ref[0]) and _sha(out / f"{name}-v0-val.npz") == _sha(ref[1])
    assert not parts.exists()


def test_more_episodes_reuse_the_finished_ones(tmp_path, monkeypatch):
    """Episode i depends on (seed, split, i) only: a run stopped with --episodes 2 continues as --episodes 3."""
    name = "pointmaze-medium-navigate"
    ref = gen.generate(name, tmp_path / "ref", episodes=3, max_steps=12, progress=False)
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Stopped):
        gen.generate(name, tmp_path / "out", episodes=2, max_steps=12, progress=False)
    monkeypatch.undo()
    made = []
    real = gen._PartWriter.write
    monkeypatch.setattr(gen._PartWriter, "write", lambda self, task, ep: (made.append(task), real(self, task, ep)))
    train, val = gen.generate(name, tmp_path / "out", episodes=3, max_steps=12, progress=False)
    assert made == [(0, gen.TRAIN, 2), (0, gen.VAL, 0)]
    assert _sha(train) == _sha(ref[0]) and _sha(val) == _sha(ref[1])


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def _damage_pickle(path):
    np.savez(path, observations=np.array([{"x": 1}], dtype=object))  # loading it would unpickle


def _damage_values(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k].copy() for k in f.files}
    arrays["actions"][0, 0] += 0.5  # the description's checksum no longer matches
    np.savez(path, **arrays)


def _damage_settings(path):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k].copy() for k in f.files}
    meta = json.loads(bytes(arrays["_part"]).decode())
    meta["settings"]["seed"] = 99  # a part of another command, renamed into this folder
    arrays["_part"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_pickle, _damage_values, _damage_settings])
def test_damaged_or_foreign_parts_are_made_again(tmp_path, monkeypatch, damage):
    name, kw = "pointmaze-medium-navigate", dict(episodes=2, max_steps=10, seed=3, progress=False)
    ref = gen.generate(name, tmp_path / "ref", **kw)
    out = tmp_path / "out"
    _interrupt_after(monkeypatch, 2)
    with pytest.raises(Stopped):
        gen.generate(name, out, **kw)
    monkeypatch.undo()
    parts = gen.parts_dir_for(out, name, max_steps=10, seed=3)
    damage(parts / "train-0000001.npz")
    (parts / ".train-0000000.npz.123.abcd.tmp").write_bytes(b"PK half")  # left by a killed writer
    train, val = gen.generate(name, out, **kw)
    assert _sha(train) == _sha(ref[0]) and _sha(val) == _sha(ref[1])
    assert not parts.exists()


def test_one_generating_process_per_work_folder(tmp_path):
    from rql.faults import RunLock

    parts = gen.parts_dir_for(tmp_path, "pointmaze-medium-stitch", max_steps=10)
    parts.mkdir(parents=True)
    lock = RunLock(parts)
    try:
        with pytest.raises(RQLError, match="another process"):
            gen.generate("pointmaze-medium-stitch", tmp_path, episodes=1, max_steps=10, progress=False)
    finally:
        lock.release()
    assert not (tmp_path / "pointmaze-medium-stitch-v0.npz").exists()


def test_all_parts_kept_makes_no_environment(tmp_path, monkeypatch):
    """A run stopped while writing the final files: the rerun only assembles them."""
    name, kw = "pointmaze-medium-stitch", dict(episodes=2, max_steps=10, progress=False)
    ref = gen.generate(name, tmp_path / "ref", **kw)
    real = gen._write_npz

    def full_disk(fileobj, arrays):
        if "_part" not in arrays:
            raise OSError(28, "No space left on device")
        real(fileobj, arrays)

    monkeypatch.setattr(gen, "_write_npz", full_disk)
    with pytest.raises(RQLError, match="No space left"):
        gen.generate(name, tmp_path / "out", **kw)
    monkeypatch.setattr(gen, "_write_npz", real)
    monkeypatch.setattr(gen, "_make_collector", lambda *a: pytest.fail("an episode was made again"))
    train, val = gen.generate(name, tmp_path / "out", **kw)
    assert _sha(train) == _sha(ref[0]) and _sha(val) == _sha(ref[1])
