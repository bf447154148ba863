"""A trial: what runs on a Ray worker. It trains up to ``--seeds-per-run`` seeds of one cell with
:func:`rql.training.train_group`, in the sweep folder when the worker sees it, else in a temporary
folder whose runs go back to the driver as a tar archive; a thread reports the runs' steps."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import time

from rql.errors import RQLError
from rql.sweep.plan import agent_config
from rql.sweep.rundirs import finished, last_step, pack, summary_steps, unpack, write_label

TOKEN_FILE = ".rql-sweep-token"


class Progress:
    """A small Ray actor: trials say when they start and the step each of their runs reached."""

    def __init__(self):
        self.started: dict[int, float] = {}
        self.steps: dict[tuple[int, int], int] = {}

    def start(self, trial: int) -> None:
        self.started[trial] = time.time()

    def report(self, trial: int, seed: int, step: int) -> None:
        self.steps[(trial, seed)] = step

    def snapshot(self) -> tuple[dict, dict]:
        return self.started, self.steps


class _Monitor(threading.Thread):
    """Once a second: label new run directories and report their steps to the progress actor."""

    def __init__(self, progress, trial: int, runs: list[tuple[int, pathlib.Path, str]], label: str, every=1.0):
        super().__init__(daemon=True)
        self.progress, self.trial, self.runs, self.label, self.every = progress, trial, runs, label, every
        self.halt = threading.Event()
        self.last: dict[int, int] = {}
        self.labelled: set[int] = set()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            self.poll()

    def poll(self) -> None:
        for seed, d, final in self.runs:
            try:
                if seed not in self.labelled and write_label(d, self.label, final):
                    self.labelled.add(seed)
                step = last_step(d / "metrics.csv")
                if step is not None and step != self.last.get(seed) and self.progress is not None:
                    self.last[seed] = step
                    self.progress.report.remote(self.trial, seed, step)
            except Exception:  # progress is best effort; training goes on
                pass

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=5)
        self.poll()


def worker_env(cpus: float, gpus: float, compile_cache: str | None = None) -> None:
    """The command line's environment, and JAX limited to this trial's CPUs / share of a GPU."""
    from rql.cli import _quiet_env

    _quiet_env()
    if compile_cache:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = str(pathlib.Path(compile_cache).expanduser())
    n = max(1, int(cpus))
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(n)
    if "jax" in sys.modules:  # too late to change how JAX starts in this process
        return
    if gpus <= 0:
        os.environ["JAX_PLATFORMS"] = "cpu"
        if n == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            if "xla_cpu_multi_thread_eigen" not in flags:
                os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    elif gpus < 1:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{max(0.05, 0.9 * gpus):.2f}")


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if not isinstance(e, RQLError):
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text[:600]


def _node() -> tuple[str | None, str]:
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:
        pass
    return node, socket.gethostname()


def _workspace(spec: dict) -> tuple[bool, pathlib.Path | None, pathlib.Path]:
    """(shared, tmp, base): train in the sweep folder when this worker sees the driver's token in it,
    else in a fresh temporary folder ``tmp`` (``base`` is where the runs are written)."""
    out = pathlib.Path(spec["out"])
    shared = False
    if not spec.get("copy"):
        try:
            shared = (out / TOKEN_FILE).read_text().strip() == spec["token"]
        except OSError:
            shared = False
    if shared:
        return True, None, out
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="rql-sweep-"))
    return False, tmp, tmp


def _train_seeds(spec: dict, cfg, run, seeds: list[int], dirs: list[pathlib.Path]) -> tuple[dict, set]:
    """Train the unfinished seeds: interrupted ones (with a config.json) resume, as one group, then the new
    ones; returns each failed seed's one-line error and the seeds that resumed."""
    from rql.training import train_group

    todo = [(s, d) for s, d in zip(seeds, dirs) if not finished(d, run.steps)]
    old = [(s, d) for s, d in todo if (d / "config.json").exists()]  # interrupted: continue
    new = [(s, d) for s, d in todo if not (d / "config.json").exists()]
    errors = {}
    for group, resume in ((old, True), (new, False)):
        if group:
            try:
                train_group(run, spec["agent"], cfg, [s for s, _ in group], [str(d) for _, d in group],
                            resume=resume, log=lambda *a, **k: None)
            except Exception as e:
                errors.update({s: one_line(e) for s, _ in group})
    return errors, {s for s, _ in old}


def _seed_results(spec: dict, runs: list, errors: dict, error: str | None, resumed: set) -> dict:
    """Each seed's status, error, steps reached and whether it resumed, from its run directory."""
    results = {}
    for seed, d, final in runs:
        write_label(d, spec["label"], final)
        done = finished(d, int(spec["steps"]))
        why = errors.get(seed) or error or "the run stopped before its last step"
        results[seed] = {"status": "done" if done else "failed", "error": None if done else why,
                         "steps": summary_steps(d) or last_step(d / "metrics.csv"), "resumed": seed in resumed}
    return results


def run_trial(spec: dict) -> dict:
    """Train the seeds of one cell; never raises for an error of the run itself (that is reported)."""
    t0 = time.time()
    node, host = _node()
    worker_env(spec["cpus"], spec["gpus"], spec.get("compile_cache"))
    progress = spec.get("progress")
    if progress is not None:
        progress.start.remote(spec["trial"])
    shared, tmp, base = _workspace(spec)
    seeds, rels = list(spec["seeds"]), list(spec["rels"])
    dirs = [base / rel for rel in rels]
    runs = list(zip(seeds, dirs, [None if shared else str(pathlib.Path(spec["out"]) / rel) for rel in rels]))
    error, errors, resumed, monitor = None, {}, set(), None
    try:
        if not shared and spec.get("archive"):
            unpack(spec["archive"], base)
        if spec.get("agent_source"):  # a plugin agent: its file travels with the trial, a module is imported here
            from rql.agents import plugins

            plugins.ensure(spec["agent"], spec["agent_source"], f"trial {spec['trial']}")
        cfg = agent_config(spec["agent"], spec["task"], spec["preset"], spec["overrides"])
        from rql.training import RunConfig

        # trials run side by side, each on its reserved CPUs: evaluation workers only where it has several
        opts = {"eval_workers": max(0, int(spec["cpus"] or 1) - 1), **spec["run"]}
        run = RunConfig(task=spec["task"], preset=spec["preset"], progress=False, **opts)
        run = dataclasses.replace(run, steps=int(spec["steps"]))
        monitor = _Monitor(progress, spec["trial"], runs, spec["label"])
        monitor.start()
        errors, resumed = _train_seeds(spec, cfg, run, seeds, dirs)
    except Exception as e:
        error = one_line(e)
    finally:
        if monitor is not None:
            monitor.stop()
    result = {"trial": spec["trial"], "node_id": node, "hostname": host, "shared": shared,
              "seeds": _seed_results(spec, runs, errors, error, resumed), "archive": None}
    if tmp is not None:
        result["archive"] = pack(base, rels)
        shutil.rmtree(tmp, ignore_errors=True)
    result["wall_time_s"] = time.time() - t0
    return result
