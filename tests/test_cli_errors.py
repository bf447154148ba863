"""Every kind of bad input: one line on stderr, starting 'error:', non-zero exit, no traceback."""

import os
import pickle

import numpy as np
import pytest

from rql.cli import main

from conftest import TASK

TINY = ["--agent.actor-hidden-dims", "8", "--agent.value-hidden-dims", "8", "--agent.ensemble", "2",
        "--agent.batch-size", "8", "--steps", "10", "--eval-episodes", "0", "--no-progress", "--no-tensorboard"]


def run_cli(capsys, args):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]


def good_arrays(n=40):
    rng = np.random.default_rng(0)
    t = np.zeros(n, bool)
    t[n // 2 - 1] = t[-1] = True
    return dict(observations=rng.standard_normal((n, 4)).astype(np.float32),
                actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
                rewards=-np.ones(n, np.float32), terminals=t)


def train_on(tmp_path, capsys, arrays=None, name="d.npz", raw=None, extra=()):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    elif arrays is not None:
        np.savez(path, **arrays)
    return run_cli(capsys, ["train", "--dataset-path", str(path), "--run-dir", str(tmp_path / "run"), *TINY, *extra])


def test_plain_npz_trains(tmp_path, capsys):
    code, out, err = train_on(tmp_path, capsys, good_arrays())
    assert code == 0, err
    assert "done: 10 updates" in out


def test_missing_file(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["train", "--dataset-path", str(tmp_path / "nope.npz"), *TINY])
    assert_one_line_error(code, err, "no such file")


def test_corrupt_file(tmp_path, capsys):
    code, _, err = train_on(tmp_path, capsys, raw=os.urandom(3000))
    assert_one_line_error(code, err, "corrupt")


def test_truncated_file(tmp_path, capsys):
    np.savez(tmp_path / "full.npz", **good_arrays(400))
    data = (tmp_path / "full.npz").read_bytes()
    code, _, err = train_on(tmp_path, capsys, raw=data[: len(data) // 2])
    assert_one_line_error(code, err, "npz")


def test_pickle_is_never_loaded(tmp_path, capsys):
    arrays = good_arrays()
    arrays["observations"] = np.array([object()] * 40, dtype=object)
    np.savez(tmp_path / "p.npz", **arrays)
    code, _, err = run_cli(capsys, ["train", "--dataset-path", str(tmp_path / "p.npz"), *TINY])
    assert_one_line_error(code, err, "pickle")
    (tmp_path / "raw.pkl").write_bytes(pickle.dumps({"observations": 1}))
    code, _, err = run_cli(capsys, ["train", "--dataset-path", str(tmp_path / "raw.pkl"), *TINY])
    assert_one_line_error(code, err)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda a: a.pop("actions"), "missing key"),
        (lambda a: a.pop("rewards"), "no rewards"),
        (lambda a: a.update(actions=a["actions"][:-3]), "rows"),
        (lambda a: a.update(observations=a["observations"][:, :, None]), "shape"),
        (lambda a: a["observations"].__setitem__((5, 1), np.nan), "nan"),
        (lambda a: a.update(actions=a["actions"] * 3), "[-1, 1]"),
        (lambda a: a.update(terminals=np.ones(40, bool)), "episode"),
    ],
    ids=["missing-key", "no-rewards", "length-mismatch", "wrong-shape", "nan", "action-range", "no-window"],
)
def test_bad_arrays(tmp_path, capsys, mutate, needle):
    arrays = good_arrays()
    mutate(arrays)
    code, _, err = train_on(tmp_path, capsys, arrays)
    assert_one_line_error(code, err, needle)


def test_unknown_task_agent_flag_and_value(tmp_path, capsys):
    assert_one_line_error(*run_cli(capsys, ["train", "--task", "cube-single-play-v0", *TINY])[::2], "single-task")
    code, _, err = run_cli(capsys, ["train", "--task", "cube-single-play-singletask-task99-v0", *TINY])
    assert_one_line_error(code, err, "unknown task")
    assert_one_line_error(*run_cli(capsys, ["train", "--agent", "nope", "--task", TASK])[::2], "unknown agent")
    assert_one_line_error(*run_cli(capsys, ["train", "--task", TASK, "--stepz", "3"])[::2], "--stepz")
    assert_one_line_error(*run_cli(capsys, ["train", "--task", TASK, "--steps", "many"])[::2], "steps")
    assert_one_line_error(*run_cli(capsys, ["frobnicate"])[::2], "unknown command")
    assert_one_line_error(*run_cli(capsys, ["train", "--task", TASK, "--preset", "huge"])[::2], "preset")


def test_missing_ogbench_file_names_the_generate_command(tmp_path, capsys):
    code, _, err = run_cli(capsys, ["train", "--task", TASK, "--dataset-dir", str(tmp_path), *TINY])
    assert_one_line_error(code, err, "rql data generate cube-single-play-v0")


def test_existing_run_is_not_overwritten_and_eval_errors(tmp_path, capsys):
    code, _, err = train_on(tmp_path, capsys, good_arrays())
    assert code == 0, err
    before = (tmp_path / "run" / "metrics.csv").read_text()
    code, _, err = train_on(tmp_path, capsys, good_arrays())
    assert_one_line_error(code, err, "--resume")
    assert (tmp_path / "run" / "metrics.csv").read_text() == before
    assert_one_line_error(*run_cli(capsys, ["eval", str(tmp_path / "nothing")])[::2], "config.json")
    code, _, err = run_cli(capsys, ["eval", str(tmp_path / "run"), "--checkpoint", "7"])
    assert_one_line_error(code, err, "no checkpoint at step 7")
    assert_one_line_error(*run_cli(capsys, ["eval", str(tmp_path / "run")])[::2], "no --task")
