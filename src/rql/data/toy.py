"""Toy offline tasks with a 2-D action, for seeing what the methods do (``rql lab``).

``--dataset-path toy:NAME`` (optionally ``toy:NAME,field=value,...``) trains on one of them like on
any other dataset. The behaviour data picks one of ``modes`` Gaussian blobs on a ring uniformly at
random; the reward prefers one mode (value 1) and gives the others less, graded by their distance
around the ring. Every step is a decision of its own (``masks`` are 0 everywhere, so a value is the
discounted reward of one action chunk, with no bootstrapping); episodes of ``length`` steps only
bound the windows, so chunks of up to ``length - 1`` actions work.

Tasks:

- ``ring``: one state; mode 0 (at angle 0) is rewarded.
- ``ring-context``: the observation ``(cos, sin)`` of an angle names the rewarded mode, drawn
  uniformly per episode; the behaviour ignores it.

There is no environment: train with ``--eval-episodes 0`` (no task); :func:`success` scores
actions by the reward function itself.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rql.errors import RQLError

PREFIX = "toy:"


@dataclasses.dataclass(frozen=True)
class ToyTask:
    name: str = "ring"
    modes: int = 6
    """Gaussian blobs on the ring."""
    radius: float = 0.7
    """Radius of the ring of mode centres (actions live in [-1, 1]^2)."""
    spread: float = 0.07
    """Standard deviation of each blob."""
    width: float = 0.2
    """Width of the reward bump around each mode centre."""
    context: bool = False
    """The observation names the rewarded mode (drawn per episode); otherwise mode 0 always."""
    episodes: int = 500
    """Episodes in the dataset."""
    length: int = 8
    """Steps per episode (chunks of up to length - 1 actions fit)."""
    success_radius: float = 0.25
    """An action 'lands in' a mode when it is this close to the mode's centre."""
    seed: int = 0
    """Seed of the data."""

    @property
    def centres(self) -> np.ndarray:
        ang = 2 * np.pi * np.arange(self.modes) / self.modes
        return (self.radius * np.stack([np.cos(ang), np.sin(ang)], -1)).astype(np.float32)

    def mode_values(self, best: np.ndarray) -> np.ndarray:
        """(N, modes) value of each mode when mode ``best`` (N,) is rewarded: 1 for it, then
        0.4 down to 0 for the modes further around the ring."""
        k = np.arange(self.modes)[None, :]
        d = np.abs(k - np.asarray(best)[:, None])
        d = np.minimum(d, self.modes - d)
        half = max(self.modes // 2, 1)
        v = np.where(d == 0, 1.0, 0.4 * (1.0 - (d - 1) / max(half - 1, 1)))
        return np.clip(v, 0.0, 1.0).astype(np.float32)


TASKS = {
    "ring": ToyTask("ring"),
    "ring-context": ToyTask("ring-context", context=True, episodes=1000),
}


def parse(spec: str) -> ToyTask:
    """``toy:NAME[,field=value,...]`` (the prefix is optional) -> :class:`ToyTask`."""
    text = spec[len(PREFIX):] if spec.startswith(PREFIX) else spec
    name, *pairs = [p.strip() for p in text.split(",")]
    if name not in TASKS:
        raise RQLError(f"unknown toy task '{name}'; choose one of: {', '.join(TASKS)}")
    task = TASKS[name]
    types = {f.name: f.type for f in dataclasses.fields(ToyTask)}
    changes = {}
    for p in pairs:
        key, _, value = p.partition("=")
        key = key.strip().replace("-", "_")
        if key not in types or key == "name" or not value:
            raise RQLError(f"toy:{name}: bad option '{p}'; give field=value with a field among "
                           f"{', '.join(k for k in types if k != 'name')}")
        kind = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}[types[key]]
        try:
            changes[key] = kind(value)
        except ValueError:
            raise RQLError(f"toy:{name}: '{key}' expects {'an' if types[key] == 'int' else 'a'} {types[key]}, got '{value}'") from None
    task = dataclasses.replace(task, **changes)
    if task.modes < 2 or task.episodes < 1 or task.length < 2 or task.spread <= 0 or task.width <= 0:
        raise RQLError(f"toy:{name}: needs modes >= 2, episodes >= 1, length >= 2 and positive spread/width")
    return task


def best_mode(task: ToyTask, obs: np.ndarray) -> np.ndarray:
    """The rewarded mode in each observation (N, 2)."""
    obs = np.asarray(obs, np.float32).reshape(-1, 2)
    if not task.context:
        return np.zeros(len(obs), np.int64)
    ang = np.arctan2(obs[:, 1], obs[:, 0])
    return np.round(ang / (2 * np.pi / task.modes)).astype(np.int64) % task.modes


def observation(task: ToyTask, best: np.ndarray) -> np.ndarray:
    ang = 2 * np.pi * np.asarray(best) / task.modes
    return np.stack([np.cos(ang), np.sin(ang)], -1).astype(np.float32)


def reward(task: ToyTask, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """Reward of actions (N, 2) in observations (N, 2) (or one observation for all)."""
    actions = np.asarray(actions, np.float32).reshape(-1, 2)
    obs = np.broadcast_to(np.asarray(obs, np.float32).reshape(-1, 2), actions.shape)
    values = task.mode_values(best_mode(task, obs))
    d2 = np.sum(np.square(actions[:, None, :] - task.centres[None]), -1)
    return np.sum(values * np.exp(-d2 / (2 * task.width**2)), -1).astype(np.float32)


def nearest_mode(task: ToyTask, actions: np.ndarray) -> np.ndarray:
    """Index of the mode each action (N, 2) landed in, or -1 when it is in none."""
    actions = np.asarray(actions, np.float32).reshape(-1, 2)
    d = np.linalg.norm(actions[:, None, :] - task.centres[None], axis=-1)
    k = np.argmin(d, -1)
    return np.where(d[np.arange(len(k)), k] <= task.success_radius, k, -1)


def success(task: ToyTask, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """1.0 where the action landed in the rewarded mode of its observation."""
    actions = np.asarray(actions, np.float32).reshape(-1, 2)
    obs = np.broadcast_to(np.asarray(obs, np.float32).reshape(-1, 2), actions.shape)
    return (nearest_mode(task, actions) == best_mode(task, obs)).astype(np.float32)


def generate(task: ToyTask) -> dict[str, np.ndarray]:
    """The dataset arrays (observations, actions, rewards, terminals, masks), episode after episode."""
    rng = np.random.default_rng(task.seed)
    n = task.episodes * task.length
    best = rng.integers(0, task.modes, task.episodes) if task.context else np.zeros(task.episodes, np.int64)
    obs = np.repeat(observation(task, best), task.length, axis=0)
    mode = rng.integers(0, task.modes, n)
    actions = task.centres[mode] + task.spread * rng.standard_normal((n, 2)).astype(np.float32)
    actions = np.clip(actions, -1.0, 1.0).astype(np.float32)
    terminals = np.zeros(n, np.float32)
    terminals[task.length - 1 :: task.length] = 1.0
    return {
        "observations": obs,
        "actions": actions,
        "rewards": reward(task, obs, actions),
        "terminals": terminals,
        "masks": np.zeros(n, np.float32),  # every step is its own decision: never bootstrap
    }


def toy_arrays(spec: str) -> dict[str, np.ndarray]:
    return generate(parse(spec))
