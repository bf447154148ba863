"""``rql eval --workers``: one evaluation of a run's checkpoint split into processes, each a
``rql eval`` of a consecutive range of episodes (``--first-episode``), run side by side and pooled
into one result (:func:`rql.evaluation.stats.pool_results`): the same episodes as one process would
play, in about the time of one range."""

from __future__ import annotations

from rql.evaluation.stats import pool_results


def evaluate_in_processes(run_dir, episodes: int, workers: int, seed: int = 0, checkpoint: int | None = None,
                          envs: int = 10, first_episode: int = 0) -> dict:
    """``rql eval`` of ``episodes`` episodes split into ``workers`` processes with consecutive
    episode ranges (``--first-episode``), run side by side and pooled (``rql eval --workers``).
    Stepping MuJoCo is single-threaded, so N processes share N cores in about the time of one.
    All processes end before a failure is raised, as one line naming the run."""
    import json
    import os
    import subprocess
    import sys

    from rql.errors import RQLError

    workers = max(1, min(workers, episodes))
    sizes = [episodes // workers + (i < episodes % workers) for i in range(workers)]
    starts = [first_episode + sum(sizes[:i]) for i in range(workers)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = []
    for n, start in zip(sizes, starts):
        cmd = [sys.executable, "-m", "rql.cli", "eval", str(run_dir), "--episodes", str(n), "--seed", str(seed),
               "--envs", str(max(1, min(envs, n))), "--env-workers", "0", "--first-episode", str(start), "--json"]
        cmd += ["--checkpoint", str(checkpoint)] if checkpoint is not None else []
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    done = [proc.communicate() for proc in procs]
    parts = []
    for proc, (out, err) in zip(procs, done):
        if proc.returncode != 0:
            last = (err.strip().splitlines() or ["no output"])[-1].removeprefix("error: ")
            raise RQLError(f"evaluation of {run_dir} failed: {last}")
        parts.append(json.loads(out.strip().splitlines()[-1]))
    if len({p["checkpoint"] for p in parts}) > 1:
        raise RQLError(f"{run_dir}: a new checkpoint appeared during the evaluation; give --checkpoint STEP")
    return pool_results(parts)
