"""Faults on real ``rql train`` processes: a second writer, a damaged checkpoint, a full disk,
an unwritable run directory. (SIGTERM and kill -9 are in test_groups.py and test_train_resume.py.)"""

import os
import pathlib
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from conftest import TASK

TINY = ["--agent.actor-hidden-dims", "16", "16", "--agent.value-hidden-dims", "16", "16",
        "--agent.ensemble", "2", "--agent.batch-size", "16", "--agent.horizon", "2"]


def _cli(*args):
    return [sys.executable, "-m", "rql.cli", *args]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _run(*args):
    return subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=300)


def _ckpt_steps(run_dir):
    d = pathlib.Path(run_dir) / "checkpoints"
    return sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())


@pytest.fixture()
def small_run(tiny_ogbench, tmp_path):
    d = tmp_path / "run"
    r = _run("train", "--task", TASK, "--dataset-path", str(tiny_ogbench), *TINY, "--steps", "400",
             "--save-every", "200", "--log-every", "100", "--eval-episodes", "0", "--no-progress", "--run-dir", str(d))
    assert r.returncode == 0, r.stderr
    return d


def _logged_steps(run_dir):
    rows = (pathlib.Path(run_dir) / "metrics.csv").read_text().strip().splitlines()[1:]
    return [int(r.split(",", 1)[0]) for r in rows if r.split(",", 1)[0].isdigit()]


def test_second_writer_is_refused_and_readers_still_work(small_run):
    first = subprocess.Popen(_cli("train", "--resume", str(small_run), "--steps", "400000"), env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lock = small_run / ".lock"
        deadline = time.time() + 120
        while time.time() < deadline and first.poll() is None:
            if lock.exists() and lock.read_text().strip() == str(first.pid):
                break
            time.sleep(0.05)
        assert first.poll() is None, first.stderr.read()
        second = _run("train", "--resume", str(small_run))
        assert second.returncode == 2
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(small_run) in lines[0] and f"pid {first.pid}" in lines[0], second.stderr
        # a reader is not a writer
        ev = _run("eval", str(small_run), "--episodes", "1", "--envs", "1", "--json")
        assert ev.returncode == 0, ev.stderr
        while time.time() < deadline and first.poll() is None:  # in the update loop: it has logged a row
            if max(_logged_steps(small_run), default=0) > 400:
                break
            time.sleep(0.05)
        assert first.poll() is None and max(_logged_steps(small_run), default=0) > 400, \
            "the first writer never logged a new row"
    finally:
        first.terminate()
        first.wait(timeout=120)
    # the polite stop saved; the lock went with the process
    assert first.returncode == 143
    assert _ckpt_steps(small_run)[-1] > 400
    from rql.faults import holder_pid

    assert holder_pid(small_run) is None


def test_damaged_latest_checkpoint_falls_back(small_run):
    assert _ckpt_steps(small_run) == [200, 400]
    files = sorted((p for p in (small_run / "checkpoints" / "400").rglob("*") if p.is_file()),
                   key=lambda p: -p.stat().st_size)
    with open(files[0], "r+b") as f:  # truncate the largest file of the newest checkpoint
        f.truncate(files[0].stat().st_size // 3)

    ev = _run("eval", str(small_run), "--episodes", "1", "--envs", "1", "--json")
    assert ev.returncode == 0, ev.stderr
    assert "Traceback" not in ev.stderr and len(ev.stderr.splitlines()) < 5, ev.stderr
    assert '"checkpoint": 200' in ev.stdout
    assert "moved it aside" in ev.stdout + ev.stderr
    aside = [p.name for p in (small_run / "checkpoints").iterdir() if "damaged" in p.name]
    assert aside == ["400.damaged"]  # renamed, never deleted
    assert files[0].name in {p.name for p in (small_run / "checkpoints" / "400.damaged").rglob("*")}

    r = _run("train", "--resume", str(small_run), "--steps", "600")
    assert r.returncode == 0, r.stderr
    assert "from step 200" in r.stdout and "Traceback" not in r.stderr
    assert _ckpt_steps(small_run)[-1] == 600


def test_all_checkpoints_unreadable_is_one_line_and_nothing_renamed(small_run):
    for s in (200, 400):
        for p in (small_run / "checkpoints" / str(s)).rglob("*"):
            if p.is_file() and p.stat().st_size > 100:
                p.write_bytes(b"\0" * 10)
    r = _run("eval", str(small_run), "--episodes", "1")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _ckpt_steps(small_run) == [200, 400]


@pytest.fixture()
def tiny_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_is_one_line_and_keeps_earlier_work(tiny_ogbench, tiny_disk):
    run_dir = tiny_disk / "run"
    # a first checkpoint fits, the later ones do not: reference-size value nets, kept checkpoints
    r = _run("train", "--task", TASK, "--dataset-path", str(tiny_ogbench), "--agent.actor-hidden-dims", "64", "64",
             "--agent.value-hidden-dims", "128", "128", "--agent.ensemble", "2", "--agent.batch-size", "8",
             "--agent.horizon", "2", "--steps", "400", "--save-every", "10", "--log-every", "10",
             "--keep-checkpoints", "100", "--eval-episodes", "0", "--no-progress", "--no-tensorboard",
             "--run-dir", str(run_dir))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: no space left on device while saving checkpoint ")
    saved = _ckpt_steps(run_dir)
    assert saved, "at least one checkpoint should have fitted"
    assert lines[0].endswith(f"last complete checkpoint: {saved[-1]}")
    assert not [p for p in (run_dir / "checkpoints").iterdir() if "tmp" in p.name]
    assert (run_dir / "config.json").exists() and (run_dir / "metrics.csv").read_text().count("\n") >= 2


def test_unwritable_run_directory_is_refused_at_start(tiny_ogbench, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = _run("train", "--task", TASK, "--dataset-path", str(tiny_ogbench), *TINY, "--steps", "10",
             "--eval-episodes", "0", "--no-progress", "--run-dir", str(blocker / "run"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "not writable" in r.stderr, r.stderr


def test_quiet_other_threads_drops_only_other_threads_and_stays_after_a_failure(monkeypatch):
    import io
    import threading

    from rql.faults import quiet_other_threads

    sink = io.StringIO()
    monkeypatch.setattr(sys, "stderr", sink)

    def from_a_thread(text):
        t = threading.Thread(target=lambda: print(text, file=sys.stderr))
        t.start()
        t.join()

    with quiet_other_threads():
        print("main inside", file=sys.stderr)
        from_a_thread("thread inside")
    assert sys.stderr is sink  # a clean block puts the real stream back
    from_a_thread("thread after a clean block")

    with pytest.raises(OSError):
        with quiet_other_threads():
            raise OSError(28, "No space left on device")
    assert sys.stderr is not sink  # after a failure the filter stays for the rest of the process
    from_a_thread("thread after a failure")
    print("main after a failure", file=sys.stderr)
    assert sink.getvalue().splitlines() == ["main inside", "thread after a clean block", "main after a failure"]


def test_final_eval_episodes_must_be_positive(tiny_ogbench, tmp_path):
    r = _run("train", "--task", TASK, "--dataset-path", str(tiny_ogbench), "--steps", "10",
             "--final-eval-episodes", "0", "--run-dir", str(tmp_path / "run"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == ["error: --final-eval-episodes must be positive (leave it out to use "
                                             "--eval-episodes)"]


def test_unraisable_reports_of_orbax_coroutines_are_dropped_and_others_kept(capsys, monkeypatch):
    """The read coroutines of a damaged checkpoint, collected after the one-line report, print
    nothing; an unraisable exception from anywhere else is still printed."""
    import gc
    import sys

    from rql import checkpoint

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    checkpoint._drop_orbax_unraisables()
    checkpoint._drop_orbax_unraisables()  # installed once

    source = ("import types\n@types.coroutine\ndef pause():\n    yield\n"
              "async def read():\n    try:\n        await pause()\n    finally:\n"
              "        raise ValueError('read failed')\n")

    def collect_a_failing_coroutine_from(filename):
        ns = {}
        exec(compile(source, filename, "exec"), ns)
        coro = ns["read"]()
        coro.send(None)  # suspended; closing it when collected raises: an unraisable exception
        del coro
        gc.collect()
        return capsys.readouterr().err

    assert collect_a_failing_coroutine_from(os.path.join("site-packages", "orbax", "checkpoint", "io.py")) == ""
    err = collect_a_failing_coroutine_from(os.path.join("site-packages", "mylib", "io.py"))
    assert "Exception ignored in: <coroutine object read" in err and "read failed" in err
