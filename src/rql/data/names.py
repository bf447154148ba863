"""OGBench naming: single-task names, environment names and dataset names."""

from __future__ import annotations

from rql.errors import RQLError


def split_task(task: str) -> tuple[str, str]:
    """``cube-single-play-singletask-task2-v0`` -> (env name ``cube-single-singletask-task2-v0``,
    dataset name ``cube-single-play-v0``), following OGBench's naming."""
    splits = task.split("-")
    if "singletask" not in splits:
        raise RQLError(
            f"'{task}' is not an OGBench single-task name; use e.g. cube-single-play-singletask-task2-v0"
        )
    pos = splits.index("singletask")
    if pos < 2:
        raise RQLError(f"'{task}' is not an OGBench single-task name; use e.g. cube-single-play-singletask-task2-v0")
    env_name = "-".join(splits[: pos - 1] + splits[pos:])
    dataset_name = "-".join(splits[:pos] + splits[-1:])
    return env_name, dataset_name
