"""The execution of a plan on Ray (the driver's side): skip finished cells, fail cells whose settings
cannot make an agent config, group the rest into trials, start or join Ray, submit each trial with
its resources and retries, copy back the runs of trials that trained elsewhere, show progress and
keep ``OUT/sweep.json`` current."""

from __future__ import annotations

import collections
import itertools
import os
import secrets
import shutil
import sys
import tarfile
import time

from rql.errors import RQLError
from rql.sweep.plan import Cell, Plan, agent_config, make_cells
from rql.sweep.rundirs import finished, install_runs, pack, summary_steps
from rql.sweep.status import SWEEP_FILE, previous_cells, write_comparison, write_sweep_file
from rql.sweep.trial import TOKEN_FILE, Progress, one_line, run_trial

COPY_ENV = "RQL_SWEEP_COPY"


def _ray():
    try:
        import ray
    except ImportError:
        raise RQLError("rql sweep runs on Ray, which is not installed: pip install ray") from None
    return ray


def _start_ray(plan: Plan, log) -> bool:
    """Connect to --address or start a local Ray; False when this process was already connected."""
    import logging

    ray = _ray()
    if ray.is_initialized():
        return False
    if plan.address:
        try:
            ray.init(address=plan.address, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as e:
            hint = "check --address, or leave it out to start a local Ray"
            if "auth" in str(e).lower() and not os.environ.get("RAY_AUTH_MODE"):
                hint = ("a cluster with token authentication needs RAY_AUTH_MODE=token here too (and its token in "
                        "~/.ray/auth_token or RAY_AUTH_TOKEN)")
            raise RQLError(f"cannot connect to the Ray cluster at {plan.address} ({one_line(e)[:300]}); "
                           f"{hint}") from None
    else:
        kw = {"num_cpus": plan.num_cpus or os.cpu_count() or 1}
        if plan.num_gpus is not None:
            kw["num_gpus"] = plan.num_gpus
        ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **kw)
    return True


def _check_fits(plan: Plan, log) -> None:
    """Say so when no node can ever hold one trial (Ray would queue it forever)."""
    ray = _ray()
    need = {"CPU": plan.cpus_per_run, "GPU": plan.gpus_per_run, **plan.resources_per_run}
    need = {k: v for k, v in need.items() if v > 0}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if any(all(n.get("Resources", {}).get(k, 0) >= v for k, v in need.items()) for n in nodes):
        return
    have = "; ".join(", ".join(f"{k} {v:g}" for k, v in sorted(n.get("Resources", {}).items())
                               if k in need) or "none" for n in nodes)
    msg = (f"no Ray node has the resources of one trial ({', '.join(f'{k} {v:g}' for k, v in need.items())}); "
           f"nodes have: {have or 'no nodes'}")
    if plan.address:
        log(f"warning: {msg}; trials wait until such a node joins")
    else:
        raise RQLError(msg + "; lower --cpus-per-run/--gpus-per-run or raise --num-cpus/--num-gpus")


# ----------------------------------------------------------------------------- cells into trials


def _cells_to_run(plan: Plan, cells: list[Cell]) -> list[Cell]:
    """Mark finished cells skipped (keeping where they ran) and cells with an invalid setting failed, before
    any trial starts; returns the cells left to train."""
    before = previous_cells(plan.out)
    todo = []
    for c in cells:
        if finished(plan.out / c.dir, plan.steps):
            c.status, c.steps = "skipped", summary_steps(plan.out / c.dir)
            prev = before.get(c.dir, {})
            for k in ("node_id", "hostname", "wall_time_s"):
                setattr(c, k, prev.get(k))
        else:
            todo.append(c)
    checked: dict[tuple, str | None] = {}
    for c in todo:
        key = (c.agent, c.task, c.label)
        if key not in checked:
            try:
                agent_config(c.agent, c.task, plan.preset, c.overrides)
                checked[key] = None
            except RQLError as e:
                checked[key] = one_line(e)
        if checked[key]:
            c.status, c.error = "failed", checked[key]
    return [c for c in todo if c.status != "failed"]


def _trials(plan: Plan, todo: list[Cell]) -> list[list[Cell]]:
    """Up to seeds_per_run seeds of one (task, variant) per trial, in the grid's order."""
    trials: list[list[Cell]] = []
    for _, group in itertools.groupby(todo, key=lambda c: (c.task, c.label)):
        group = list(group)
        for i in range(0, len(group), plan.seeds_per_run):
            trials.append(group[i : i + plan.seeds_per_run])
    for i, t in enumerate(trials):
        for c in t:
            c.trial = i
    return trials


def run_sweep(plan: Plan, log=print, show_progress: bool = True) -> int:
    """Run (or continue) the sweep; returns the exit status (0: every cell ok, 1: some failed)."""
    out = plan.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RQLError(f"{out}: cannot create the sweep folder ({e.strerror})") from None
    shutil.rmtree(out / ".incoming", ignore_errors=True)
    cells = make_cells(plan)
    todo = _cells_to_run(plan, cells)
    trials = _trials(plan, todo)
    write_sweep_file(out, plan, cells)
    skipped = sum(c.status == "skipped" for c in cells)
    invalid = sum(c.status == "failed" for c in cells)
    variants = len(cells) // max(1, len(plan.tasks) * len(plan.seeds))
    unfinished = [c.task for c in cells if c.status != "skipped"]
    if unfinished:
        from rql.sweep.paper import data_note

        note = data_note(unfinished, plan.run.get("dataset_dir"), plan.run.get("dataset_path"))
        if note:
            log(note)
    log(f"sweep: {len(cells)} cells ({len(plan.tasks)} task(s) x {variants} agent variant(s) x "
        f"{len(plan.seeds)} seed(s)); {skipped} finished earlier, "
        + (f"{invalid} with an invalid setting, " if invalid else "")
        + f"{len(todo)} to run" + (f" in {len(trials)} trial(s)" if todo else ""))
    if trials:
        _run_trials(plan, cells, trials, log, show_progress)
    failed = [c for c in cells if c.status == "failed"]
    if plan.compare:
        write_comparison(out, cells, log)
    if failed:
        for c in failed[:10]:
            log(f"failed: {c.dir}: {c.error}")
        print(f"sweep: {len(failed)} of {len(cells)} cells failed; each cell's error is in {out / SWEEP_FILE} "
              f"(rql sweep status {out})", file=sys.stderr)
        return 1
    log(f"sweep: all {len(cells)} cells done ({skipped} skipped as finished earlier); results in {out}")
    return 0


# ----------------------------------------------------------------------------- submitting


def _trial_spec(plan: Plan, i: int, trial: list[Cell], token: str, copy: bool, ship: bool, progress) -> dict:
    """What :func:`run_trial` gets: the cell, its seeds and run directories, resources, and the runs to
    continue from (as an archive) when the worker might not see the sweep folder."""
    from rql.agents import plugins

    out, c0 = plan.out, trial[0]
    rels = [c.dir for c in trial]
    archive = None
    if ship and any((out / r / "config.json").is_file() for r in rels):
        archive = pack(out, [r for r in rels if (out / r / "config.json").is_file()])
    return {"trial": i, "task": c0.task, "agent": c0.agent, "label": c0.label, "preset": plan.preset,
            "overrides": c0.overrides, "run": plan.run, "steps": plan.steps, "seeds": [c.seed for c in trial],
            "rels": rels, "out": str(out), "token": token, "copy": copy, "archive": archive, "progress": progress,
            "cpus": plan.cpus_per_run, "gpus": plan.gpus_per_run, "compile_cache": plan.compile_cache,
            "agent_source": plugins.shipped(c0.agent)}


def _run_trials(plan: Plan, cells: list[Cell], trials: list[list[Cell]], log, show_progress: bool) -> None:
    out = plan.out
    started_here = _start_ray(plan, log)
    ray = _ray()
    try:
        _check_fits(plan, log)
        token = secrets.token_hex(16)
        (out / TOKEN_FILE).write_text(token)
        copy = os.environ.get(COPY_ENV, "") not in ("", "0")
        # Runs that may continue elsewhere travel with their trial when the worker might not see `out`.
        ship = copy or bool(plan.address)
        progress = ray.remote(num_cpus=0)(Progress).remote()
        remote = ray.remote(
            num_cpus=plan.cpus_per_run, num_gpus=plan.gpus_per_run, resources=plan.resources_per_run or None,
            max_retries=plan.max_retries, retry_exceptions=False, max_calls=1,
        )(run_trial)
        pending = {remote.remote(_trial_spec(plan, i, t, token, copy, ship, progress)): i
                   for i, t in enumerate(trials)}
        _wait(plan, cells, trials, pending, progress, show_progress)
    finally:
        try:
            (out / TOKEN_FILE).unlink()
        except OSError:
            pass
        if started_here:
            ray.shutdown()


# ----------------------------------------------------------------------------- waiting


class _Watch:
    """The driver's view while trials run: their results applied to the cells, the progress bar (cells
    done / running / failed / queued and the total updates/s) and sweep.json kept current."""

    def __init__(self, plan: Plan, cells: list[Cell], trials: list[list[Cell]], show_progress: bool):
        from tqdm.auto import tqdm

        self.plan, self.cells, self.trials = plan, cells, trials
        self.tty = sys.stderr.isatty()
        self.bar = tqdm(total=sum(len(t) for t in trials), desc="sweep", unit="cell", dynamic_ncols=True,
                        disable=not show_progress, file=sys.stderr, mininterval=0.5 if self.tty else 30.0)
        self.counted: dict[tuple[int, int], int] = {}
        self.updates = 0
        self.history: collections.deque = collections.deque(maxlen=64)
        self.dirty, self.shown = False, 0.0

    def finish(self, i: int, res: dict) -> None:
        """A trial's result: copy its runs back when they come as an archive, then update its cells."""
        if res.get("archive"):
            try:
                install_runs(res["archive"], self.plan.out, [c.dir for c in self.trials[i]])
            except (OSError, tarfile.TarError, RQLError) as e:
                for s in res["seeds"].values():
                    s.update(status="failed", error=f"copying the run back failed: {one_line(e)}")
        for c in self.trials[i]:
            r = res["seeds"].get(c.seed, {"status": "failed", "error": "no result"})
            c.status, c.error = r["status"], r.get("error")
            c.steps, c.resumed = r.get("steps"), bool(r.get("resumed"))
            c.node_id, c.hostname = res.get("node_id"), res.get("hostname")
            c.wall_time_s = res.get("wall_time_s")
        self.bar.update(len(self.trials[i]))
        self.dirty = True

    def progress(self, started: dict, steps: dict) -> float:
        """Count the updates reported since the last look and mark started trials running; returns updates/s
        over the last 15 seconds."""
        for key, step in steps.items():
            prev = self.counted.get(key)
            if prev is not None and step > prev:
                self.updates += step - prev
            self.counted[key] = step
        now = time.time()
        self.history.append((now, self.updates))
        while len(self.history) > 2 and now - self.history[0][0] > 15:
            self.history.popleft()
        for i, t in enumerate(self.trials):
            if i in started:
                for c in t:
                    if c.status == "queued":
                        c.status, self.dirty = "running", True
        (t0, u0), (t1, u1) = self.history[0], self.history[-1]
        return (u1 - u0) / max(1e-9, t1 - t0)

    def show(self, rate: float, ready: bool) -> None:
        n = collections.Counter(c.status for c in self.cells if c.trial is not None)
        self.bar.set_postfix_str(f"done {n['done']} running {n['running']} failed {n['failed']} queued {n['queued']}"
                                 f" | {rate:,.0f} upd/s", refresh=False)
        now = time.time()
        if ready or now - self.shown >= (1.0 if self.tty else 30.0):  # a log file gets a line every 30 s
            self.bar.refresh()
            self.shown = now
        if self.dirty:
            write_sweep_file(self.plan.out, self.plan, self.cells)
            self.dirty = False


def _interrupted(ray, plan: Plan, cells: list[Cell], pending: dict) -> RQLError:
    for ref in pending:
        try:
            ray.cancel(ref, force=True)
        except Exception:
            pass
    for c in cells:
        if c.status in ("queued", "running"):
            c.status, c.error = "interrupted", "the sweep was interrupted"
    write_sweep_file(plan.out, plan, cells)
    return RQLError("interrupted; run the same command again to continue (finished cells are skipped, "
                    "interrupted ones resume from their last checkpoint)")


def _wait(plan, cells, trials, pending, progress, show_progress) -> None:
    ray = _ray()
    watch = _Watch(plan, cells, trials, show_progress)
    started: dict = {}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            if ready:
                ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    res = ray.get(ref)
                except Exception as e:  # the worker or node died more often than --max-retries
                    res = {"seeds": {c.seed: {"status": "failed", "error": one_line(e)} for c in trials[i]},
                           "archive": None}
                watch.finish(i, res)
            try:
                started, steps = ray.get(progress.snapshot.remote(), timeout=10)
            except Exception:
                steps = {}
            watch.show(watch.progress(started, steps), bool(ready))
    except KeyboardInterrupt:
        raise _interrupted(ray, plan, cells, pending) from None
    finally:
        watch.bar.close()
    write_sweep_file(plan.out, plan, cells)
