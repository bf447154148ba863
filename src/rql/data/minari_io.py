"""Read a locally stored Minari dataset (the maintained successor of D4RL) into flat arrays.

Nothing is downloaded: the dataset must already be under the Minari data path
(``$MINARI_DATASETS_PATH``, default ``~/.minari/datasets``), or under ``data_path`` when given.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import numpy as np

from rql.errors import RQLError


@contextlib.contextmanager
def _datasets_path(data_path: str | os.PathLike | None) -> Iterator[str]:
    """Point Minari at ``data_path`` for the duration of the block; yield the path in effect."""
    key = "MINARI_DATASETS_PATH"
    if data_path is None:
        yield os.environ.get(key) or os.path.join(os.path.expanduser("~"), ".minari", "datasets")
        return
    old = os.environ.get(key)
    path = os.path.abspath(os.path.expanduser(os.fspath(data_path)))
    os.environ[key] = path
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def _short(e: BaseException) -> str:
    return (" ".join(str(e).split()) or type(e).__name__)[:160]


def load_minari(dataset_id: str, data_path: str | None = None) -> dict[str, np.ndarray]:
    """Flatten the episodes of a local Minari dataset into our arrays.

    Returns ``observations`` (N, obs_dim) float32 (each step's observation; the final observation
    of an episode is left out), ``actions`` (N, action_dim) float32, ``rewards`` float32,
    ``terminals`` float32 (1.0 on the last step of every episode, whether it terminated or was
    truncated), ``masks`` float32 (0.0 only where the episode truly terminated) and
    ``end_next_observations`` (one row per episode: its final observation). The result
    is meant for :func:`rql.data.dataset.validate`.
    """
    try:
        import minari
        from minari.storage.local import get_dataset_path
    except ImportError as e:
        raise RQLError(f"Minari is not installed ({_short(e)}); install it with: pip install 'minari[hdf5]'") from e

    if not isinstance(dataset_id, str) or not dataset_id.strip():
        raise RQLError("give a Minari dataset id, e.g. D4RL/door/human-v2")
    dataset_id = dataset_id.strip()
    if data_path is not None and not os.path.isdir(os.path.expanduser(os.fspath(data_path))):
        raise RQLError(f"Minari data path {data_path} is not a folder; point it at the folder holding your datasets")

    with _datasets_path(data_path) as root:
        location = get_dataset_path(dataset_id)
        if not os.path.isdir(os.path.join(location, "data")):
            raise RQLError(
                f"Minari dataset '{dataset_id}' was not found under the Minari data path {root}; download it with "
                f"'minari download {dataset_id}' or point at its folder (data_path or MINARI_DATASETS_PATH)"
            )
        try:
            ds = minari.load_dataset(dataset_id, download=False)
        except ImportError as e:
            raise RQLError(
                f"reading Minari dataset '{dataset_id}' needs a storage backend ({_short(e)}); "
                f"install it with: pip install 'minari[hdf5]'"
            ) from e
        except FileNotFoundError as e:
            raise RQLError(
                f"Minari dataset '{dataset_id}' was not found under the Minari data path {root}; download it with "
                f"'minari download {dataset_id}' or point at its folder (data_path or MINARI_DATASETS_PATH)"
            ) from e
        except Exception as e:  # metadata/version problems inside Minari
            raise RQLError(f"cannot open Minari dataset '{dataset_id}' at {location}: {_short(e)}") from e
        return _flatten(ds, dataset_id)


def _flatten(ds, dataset_id: str) -> dict[str, np.ndarray]:
    import gymnasium

    obs_space, act_space = ds.observation_space, ds.action_space
    if not isinstance(obs_space, gymnasium.spaces.Box):
        raise RQLError(
            f"Minari dataset '{dataset_id}' has {type(obs_space).__name__} observations, which are not supported; "
            f"only flat Box observations are (flatten them into one array first)"
        )
    if not isinstance(act_space, gymnasium.spaces.Box):
        raise RQLError(
            f"Minari dataset '{dataset_id}' has {type(act_space).__name__} actions, which are not supported; "
            f"only continuous Box actions are"
        )
    obs_parts, act_parts, rew_parts, term_parts, mask_parts, succ_parts = [], [], [], [], [], []
    try:
        for ep in ds.iterate_episodes():
            n = len(ep.rewards)
            if n == 0:
                continue
            obs = np.asarray(ep.observations)
            if not isinstance(ep.observations, np.ndarray) or obs.shape[0] != n + 1:
                raise RQLError(
                    f"Minari dataset '{dataset_id}': episode {ep.id} has observations of shape "
                    f"{getattr(obs, 'shape', None)} for {n} steps; expected {n + 1} rows"
                )
            obs_parts.append(obs[:n].reshape(n, -1).astype(np.float32))
            succ_parts.append(obs[n:].reshape(1, -1).astype(np.float32))
            act_parts.append(np.asarray(ep.actions).reshape(n, -1).astype(np.float32))
            rew_parts.append(np.asarray(ep.rewards, dtype=np.float32).reshape(n))
            terminals = np.zeros(n, dtype=np.float32)
            terminals[-1] = 1.0
            term_parts.append(terminals)
            terminated = np.asarray(ep.terminations, dtype=bool).reshape(n)
            mask_parts.append(np.where(terminated, 0.0, 1.0).astype(np.float32))
    except RQLError:
        raise
    except Exception as e:
        raise RQLError(f"cannot read the episodes of Minari dataset '{dataset_id}': {_short(e)}") from e
    if not obs_parts:
        raise RQLError(f"Minari dataset '{dataset_id}' holds no steps")
    return {
        "observations": np.concatenate(obs_parts),
        "actions": np.concatenate(act_parts),
        "rewards": np.concatenate(rew_parts),
        "terminals": np.concatenate(term_parts),
        "masks": np.concatenate(mask_parts),
        "end_next_observations": np.concatenate(succ_parts),
    }
