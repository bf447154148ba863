"""One place that turns a task name, a file or a folder into a validated :class:`Dataset`.

Sources, in order of precedence:
- ``dataset_path``: an OGBench file (``observations``, ``actions``, ``terminals`` and, for
  single-task reward relabelling, ``qpos``/``qvel``/``button_states``), a plain ``.npz`` with
  ``observations``, ``actions``, ``rewards``, ``terminals`` (and optionally ``masks``), or
  ``minari:<dataset id>`` for a Minari dataset present locally, or ``toy:<name>`` for a generated
  toy task with a 2-D action (:mod:`rql.data.toy`);
- ``dataset_dir``: a folder holding the OGBench file ``<dataset name>.npz``;
- otherwise OGBench's own folder (``~/.ogbench/data``), downloading there if the file is missing
  and the server is reachable.

Files are read with ``allow_pickle=False``: a data file is untrusted input.
"""

from __future__ import annotations

import pathlib

import numpy as np

from rql.data.dataset import Dataset, validate
from rql.data.info import read_npz  # the one safe .npz reader (never unpickles)
from rql.data.names import split_task
from rql.errors import RQLError

DEFAULT_OGBENCH_DIR = "~/.ogbench/data"


def make_env(task: str, frame_stack: int | None = None, **kwargs):
    """The OGBench single-task environment of ``task``, or one clear error. With ``frame_stack`` an
    environment of image observations returns them as the agent reads them: ``frame_stack`` frames
    stacked, flat, uint8 (:func:`rql.pixels.stack_env`); state environments are left as they are."""
    import ogbench  # noqa: F401  (registers the environments)
    import gymnasium

    env_name, _ = split_task(task)
    try:
        # Gymnasium's checker only warns, and it reads the observation space (below) twice more.
        env = gymnasium.make(env_name, **{"disable_env_checker": True, **kwargs})
    except gymnasium.error.Error as e:
        raise RQLError(f"unknown task '{task}' ({e}); see OGBench's list of single-task environments") from None
    pin_observation_space(env)
    if frame_stack is not None and len(env.observation_space.shape) == 3:
        from rql.pixels import stack_env

        env = stack_env(env, frame_stack)
    return env


def pin_observation_space(env) -> None:
    """OGBench computes an environment's observation space from an observation it makes each time the
    space is read (a visual task renders a frame, 0.2-0.3 s on a CPU, and the first read also resets).
    Each wrapper of ``env`` keeps the space read once, so later reads (ours, Gymnasium's) cost nothing."""
    import gymnasium

    space = env.observation_space
    w = env
    while isinstance(w, gymnasium.Wrapper):
        w.observation_space = space
        w = w.env


def ogbench_regular(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OGBench's 'regular' layout: drop each episode's final observation (it has no action that
    leads anywhere stored) so that every kept step has a next step; terminals mark the new last step."""
    term = np.asarray(arrays["terminals"]).astype(bool)
    keep = ~term
    new_term = np.concatenate([term[1:], [True]])[keep]
    out = {k: np.asarray(v)[keep] for k, v in arrays.items() if k != "terminals" and len(v) == len(term)}
    out["terminals"] = new_term.astype(np.float32)
    # The dropped final observations are the successors of the kept episodes' last steps (one row per
    # episode, what the QAM suite's windows bootstrap from at a time-out).
    obs = np.asarray(arrays["observations"])
    last = np.flatnonzero(keep)[new_term]  # raw index of every kept episode's last step
    nxt = np.minimum(last + 1, len(term) - 1)
    has = (last + 1 < len(term)) & term[nxt]
    out["end_next_observations"] = np.where(has.reshape(-1, *[1] * (obs.ndim - 1)), obs[nxt], obs[last])
    return out


def relabel_singletask(task: str, arrays: dict[str, np.ndarray], env=None) -> dict[str, np.ndarray]:
    """Single-task rewards and masks from ``qpos``/``qvel``/``button_states``, as OGBench computes them."""
    from ogbench.relabel_utils import relabel_dataset

    need = ["qpos", "qvel"]
    missing = [k for k in need if k not in arrays]
    if missing:
        raise RQLError(
            f"the dataset has no {', '.join(missing)}, which single-task rewards for '{task}' are computed from; "
            "give a file with rewards, or an OGBench file (rql data generate makes one)"
        )
    env_name, _ = split_task(task)
    env = env if env is not None else make_env(task)
    data = dict(arrays)
    try:
        relabel_dataset(env_name, env.unwrapped if hasattr(env, "unwrapped") else env, data)
    except (KeyError, IndexError, ValueError) as e:
        raise RQLError(f"could not compute single-task rewards for '{task}' from this file ({e}); is it the right dataset?") from None
    return data


def default_dataset_file(task: str, dataset_dir: str | None) -> pathlib.Path:
    _, dataset_name = split_task(task)
    return pathlib.Path(dataset_dir or DEFAULT_OGBENCH_DIR).expanduser() / f"{dataset_name}.npz"


def _download(task: str, dest: pathlib.Path) -> None:
    """OGBench's real download path; any failure becomes a message naming the offline ways."""
    import ogbench

    _, dataset_name = split_task(task)
    try:
        ogbench.download_datasets([dataset_name], str(dest.parent))
    except Exception as e:  # network errors come in many types
        for leftover in dest.parent.glob(f"{dataset_name}*.tmp"):
            leftover.unlink(missing_ok=True)
        raise RQLError(
            f"{dest} is missing and could not be downloaded ({type(e).__name__}); "
            f"make it with 'rql data generate {dataset_name} --out {dest.parent}' or point at a local copy with --dataset-path FILE"
        ) from None


def load_arrays(
    task: str | None,
    dataset_path: str | None = None,
    dataset_dir: str | None = None,
    download: bool = True,
    env=None,
) -> tuple[dict[str, np.ndarray], str]:
    """Raw arrays in our layout (before validation) and a description of where they came from."""
    if dataset_path and dataset_path.startswith("toy:"):  # generated toy tasks (rql.data.toy)
        from rql.data.toy import toy_arrays

        return toy_arrays(dataset_path), dataset_path
    if dataset_path and dataset_path.startswith("minari:"):
        from rql.data.minari_io import load_minari

        return load_minari(dataset_path[len("minari:") :]), dataset_path
    if dataset_path:
        path = pathlib.Path(dataset_path).expanduser()
    elif task:
        path = default_dataset_file(task, dataset_dir)
        if not path.exists():
            _, dataset_name = split_task(task)
            if dataset_dir or not download:
                raise RQLError(
                    f"{path} is missing; make it with 'rql data generate {dataset_name} --out {path.parent}' "
                    "or point at a local copy with --dataset-path FILE"
                )
            _download(task, path)
    else:
        raise RQLError("no data: give --task (an OGBench single-task name) or --dataset-path FILE")
    raw = read_npz(path)
    source = str(path)
    if "rewards" in raw:
        return raw, source
    if "observations" in raw and "terminals" in raw and task:
        regular = ogbench_regular(raw)
        return relabel_singletask(task, regular, env=env), source
    if "observations" in raw and "terminals" in raw:
        raise RQLError(f"{source}: has no rewards; give --task with an OGBench single-task name to compute them")
    return raw, source  # validation names what is missing


def load_dataset(
    task: str | None,
    dataset_path: str | None = None,
    dataset_dir: str | None = None,
    horizon: int = 1,
    sparse: bool = False,
    download: bool = True,
    env=None,
) -> Dataset:
    arrays, source = load_arrays(task, dataset_path, dataset_dir, download=download, env=env)
    return validate(arrays, source, horizon=horizon, sparse=sparse)
