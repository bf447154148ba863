"""The run directories of a sweep: finished or not, the step reached, the variant label, and their
transport as tar archives (a trial trained away from the sweep folder sends its runs back this way)."""

from __future__ import annotations

import io
import json
import os
import pathlib
import secrets
import shutil
import tarfile

from rql.errors import RQLError


def summary_steps(run_dir: pathlib.Path) -> int | None:
    try:
        return int(json.loads((run_dir / "summary.json").read_text())["steps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def finished(run_dir: pathlib.Path, steps: int) -> bool:
    s = summary_steps(run_dir)
    return s is not None and s >= steps


def last_step(metrics: pathlib.Path) -> int | None:
    """The step of metrics.csv's last row (reads its header and its last few kilobytes only)."""
    try:
        with metrics.open("rb") as f:
            header = f.readline().decode().strip().split(",")
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    if "step" not in header:
        return None
    i = header.index("step")
    for line in reversed(lines):
        parts = line.split(",")
        if len(parts) == len(header):
            try:
                return int(float(parts[i]))
            except ValueError:
                continue
    return None


def write_label(run_dir: pathlib.Path, label: str, final_dir: str | None = None) -> bool:
    """Add the sweep's variant name to the run's config.json (read, modify, atomic replace);
    ``final_dir`` corrects ``run.run_dir`` for runs trained elsewhere and copied back."""
    path = run_dir / "config.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict):
        return False
    changed = False
    if doc.get("label") != label:
        doc["label"] = label
        changed = True
    run = doc.get("run")
    if final_dir and isinstance(run, dict) and run.get("run_dir") != final_dir:
        run["run_dir"] = final_dir
        changed = True
    if changed:
        tmp = path.with_name(f"config.json.label-{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, path)
    return True


# ----------------------------------------------------------------------------- archives


def pack(base: pathlib.Path, rels: list[str]) -> bytes:
    """The run directories ``base/rel`` (those that exist) as an uncompressed tar archive in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in rels:
            if (base / rel).is_dir():
                tar.add(base / rel, arcname=rel)
    return buf.getvalue()


def unpack(data: bytes, dest: pathlib.Path) -> None:
    """Extract an archive of :func:`pack` under ``dest``, refusing entries that would land outside it."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            p = pathlib.PurePosixPath(m.name)
            if p.is_absolute() or ".." in p.parts or not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                raise RQLError(f"refusing a run archive with the entry '{m.name}'")
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # pragma: no cover - Python before 3.11.4 has no extraction filters; entries were checked above
            tar.extractall(dest)


def install_runs(data: bytes, out: pathlib.Path, rels: list[str]) -> None:
    """Unpack a trial's returned run directories and move each into place under ``out``."""
    staging = out / ".incoming" / secrets.token_hex(6)
    staging.mkdir(parents=True)
    try:
        unpack(data, staging)
        for rel in rels:
            src = staging / rel
            if not src.is_dir():
                continue
            dst = out / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            old = None
            if dst.exists():
                old = staging.with_name(staging.name + "-old")
                os.replace(dst, old)
            os.replace(src, dst)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        try:
            (out / ".incoming").rmdir()
        except OSError:
            pass
