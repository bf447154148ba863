"""Shared pieces of the loss-level differential checks against the QAM suite's public code.

Each ``benchmarks/qam_fidelity/<module>.py`` builds the suite's agent and ours at the same small
sizes, copies the suite's parameters into ours, feeds both the same batch and the same random draws,
and compares every loss term and the gradients. Run them with a Python that imports both the suite
(``--suite PATH`` of a checkout) and ``rql`` (same jax/flax versions), e.g.::

    python benchmarks/qam_fidelity/fbrac.py --suite /path/to/qam

What lives here:

``load_suite(path)``          puts the checkout on ``sys.path`` and returns its ``agents`` package
``suite_config(module, **kw)`` the suite agent's ``get_config()`` with fields replaced
``windows(...)`` / ``to_suite_batch(batch, h, discount)``
                              one batch of our windows (``rql.agents.base.Batch``) and the same
                              windows in the suite's format (cumulative discounted rewards,
                              masks, valid, next observations per chunk step)
``batches(...)``              the pair of batches a check feeds, by ``--batches``: ``shared`` (the
                              two above: one batch, both formats), ``own`` (each side builds its
                              own batch from the same raw episodes and start indices: the suite's
                              ``Dataset.sample_sequence``, our ``suite`` windows), ``rql`` (the
                              same, our side on RQL's windows: what the suite methods trained on
                              before they had the suite's)
``raw_episodes(...)`` / ``suite_dataset(...)`` / ``our_dataset(...)``
                              raw OGBench-layout episodes with successes inside chunks, time-outs
                              and episode ends inside windows, loaded by each side's own code
``map_params(suite_tree, ours_tree)``
                              our tree with every Dense/LayerNorm leaf replaced by the suite's leaf
                              of the same layer (matched by layer names and order, shapes checked)
``Tape``                      records the suite's random draws, then replays them to ours in order
                              (per function and shape), so both sides see the same noise
``compare(...)`` / ``print_table(rows)``
                              the largest relative difference of the losses and the largest
                              absolute difference of the gradients
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

from rql.agents.base import Batch


BATCHES = "shared"  # set by parse_args from --batches


def parse_args(description: str) -> argparse.Namespace:
    global BATCHES
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--suite", required=True, help="path of a checkout of the QAM suite (its agents/ and utils/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batches", choices=("shared", "own", "rql"), default="shared",
                   help="shared: one batch given to both sides in both formats; own: each side builds its own "
                        "batch from the same raw episodes and starts (ours on the suite's windows); rql: the same "
                        "with ours on RQL's windows")
    args = p.parse_args()
    BATCHES = args.batches
    return args


def load_suite(path: str):
    """The suite's ``agents`` package from a checkout at ``path``."""
    if path not in sys.path:
        sys.path.insert(0, path)
    return importlib.import_module("agents")


def suite_config(module_name: str, **fields):
    """``agents.<module_name>.get_config()`` with ``fields`` set (must exist there unless new)."""
    cfg = importlib.import_module(f"agents.{module_name}").get_config()
    with cfg.unlocked():
        for k, v in fields.items():
            cfg[k] = v
    return cfg


SMALL = dict(actor_hidden_dims=(32, 32), value_hidden_dims=(32, 32))


# ----------------------------------------------------------------------------- batches


def windows(seed: int, batch_size: int, horizon: int, obs_dim: int, action_dim: int, terminal_every: int = 7) -> Batch:
    """A batch of ``h + 1``-step windows with some episode ends inside (clamped as our sampler does:
    steps past an episode's last step repeat it). Rewards are -1/0, masks ``1 - terminal``."""
    rng = np.random.default_rng(seed)
    L = horizon + 1
    obs = rng.normal(size=(batch_size, L, obs_dim)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(batch_size, L, action_dim)).astype(np.float32)
    rew = -(rng.uniform(size=(batch_size, L)) < 0.5).astype(np.float32)
    term = np.zeros((batch_size, L), np.float32)
    for b in range(batch_size):
        if b % terminal_every == 0:
            end = int(rng.integers(0, L))
            term[b, end:] = 1.0
            obs[b, end:] = obs[b, end]
            act[b, end:] = act[b, end]
            rew[b, end:] = rew[b, end]
    masks = 1.0 - term
    return Batch(*(jnp.asarray(x) for x in (obs, act, rew, term, masks)))


def to_suite_batch(batch: Batch, horizon: int, discount: float) -> dict:
    """The same windows in the suite's chunk format (its dataset's ``sample_sequence``): for chunk
    step ``i``, ``valid_i = 1 - T_{i-1}`` (T cumulative), ``rewards_i`` the discounted return of steps
    ``0..i``, ``masks_i`` the running minimum of masks over valid steps, ``next_observations_i`` the
    observation after step ``i`` (the previous one once invalid)."""
    obs = np.asarray(batch.observations)
    act = np.asarray(batch.actions)
    r = np.asarray(batch.rewards)
    t = np.asarray(batch.terminals)
    m = np.asarray(batch.masks)
    B, h = obs.shape[0], horizon
    rewards = np.zeros((B, h), np.float32)
    masks = np.ones((B, h), np.float32)
    valid = np.ones((B, h), np.float32)
    terminals = np.zeros((B, h), np.float32)
    next_obs = np.zeros((B, h, obs.shape[-1]), np.float32)
    for i in range(h):
        if i == 0:
            rewards[:, 0], masks[:, 0], terminals[:, 0] = r[:, 0], m[:, 0], t[:, 0]
            next_obs[:, 0] = obs[:, 1]
        else:
            valid[:, i] = 1.0 - terminals[:, i - 1]
            rewards[:, i] = rewards[:, i - 1] + r[:, i] * discount**i * valid[:, i]
            masks[:, i] = np.minimum(masks[:, i - 1], m[:, i]) * valid[:, i] + masks[:, i - 1] * (1 - valid[:, i])
            terminals[:, i] = np.maximum(terminals[:, i - 1], t[:, i])
            v = valid[:, i, None]
            next_obs[:, i] = obs[:, i + 1] * v + next_obs[:, i - 1] * (1 - v)
    return {
        "observations": jnp.asarray(obs[:, 0]),
        "actions": jnp.asarray(act[:, :h]),
        "rewards": jnp.asarray(rewards),
        "masks": jnp.asarray(masks),
        "valid": jnp.asarray(valid),
        "terminals": jnp.asarray(terminals),
        "next_observations": jnp.asarray(next_obs),
    }


def batches(seed: int, batch_size: int, horizon: int, obs_dim: int, action_dim: int, discount: float,
            mode: str | None = None) -> tuple[Batch, dict]:
    """``(our batch, the suite's batch)`` for one loss-level check, as ``--batches`` says."""
    mode = mode or BATCHES
    if mode == "shared":
        batch = windows(seed, batch_size, horizon, obs_dim, action_dim)
        return batch, to_suite_batch(batch, horizon, discount)
    raw = raw_episodes(seed, obs_dim, action_dim)
    suite_ds, ours = suite_dataset(raw), our_dataset(raw)
    starts = forced_starts(suite_ds, batch_size, horizon, seed)
    suite_batch = suite_sample(suite_ds, starts, horizon, discount)
    from rql.data.device import rql_batch_at, suite_batch_at

    at = suite_batch_at if mode == "own" else rql_batch_at
    return at(ours, jnp.asarray(starts, jnp.int32), horizon), suite_batch


def raw_episodes(seed: int, obs_dim: int, action_dim: int, episodes: int = 24) -> dict:
    """Raw episodes in OGBench's file layout (every episode's final observation stored as one more row
    with ``terminals = 1``), of 3 to 13 steps, about one in three with a success that starts at a
    random step and lasts one step or more (to the episode's end or not). The success flag
    rides in ``qpos`` (column 0) so that each side's own loader carries it into its layout."""
    rng = np.random.default_rng(seed + 101)
    obs, act, term, succ = [], [], [], []
    for _ in range(episodes):
        n = int(rng.integers(3, 14))
        obs.append(rng.normal(size=(n + 1, obs_dim)))
        act.append(rng.uniform(-0.99, 0.99, size=(n + 1, action_dim)))
        t = np.zeros(n + 1)
        t[-1] = 1.0
        term.append(t)
        s = np.zeros(n + 1)
        if rng.uniform() < 0.4:  # a success that may not last (a cube picked up again)
            a = int(rng.integers(0, n))
            s[a:int(rng.integers(a + 1, n + 2))] = 1.0
        succ.append(s)
    cat = lambda xs: np.concatenate(xs).astype(np.float32)  # noqa: E731
    return {"observations": cat(obs), "actions": cat(act), "terminals": cat(term), "qpos": cat(succ)[:, None]}


def suite_dataset(raw: dict):
    """The suite's ``Dataset`` of ``raw``: its own regular layout (``envs/ogbench_utils.load_dataset``, which
    reads a file), then single-task rewards and masks from the success flag as OGBench relabels them
    (``rewards = success - 1``, ``masks = 1 - success``)."""
    import os
    import tempfile

    from envs.ogbench_utils import load_dataset
    from utils.datasets import Dataset as SuiteDataset

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "raw.npz")
        np.savez(path, **raw)
        ds = load_dataset(path, compact_dataset=False, add_info=True)
    success = ds.pop("qpos")[:, 0]
    ds.pop("qvel", None)
    ds["rewards"] = (success - 1.0).astype(np.float32)
    ds["masks"] = (1.0 - success).astype(np.float32)
    return SuiteDataset.create(**ds)


def our_dataset(raw: dict):
    """Our device dataset of ``raw``: our loader's regular layout (:func:`rql.data.loading.ogbench_regular`,
    which keeps each episode's final observation as its successor), the same rewards and masks."""
    from rql.data.dataset import validate
    from rql.data.device import to_device
    from rql.data.loading import ogbench_regular

    arrays = ogbench_regular(raw)
    success = arrays.pop("qpos")[:, 0]
    arrays["rewards"] = success - 1.0
    arrays["masks"] = 1.0 - success
    return to_device(validate(arrays, "raw episodes"))


def forced_starts(suite_ds, batch_size: int, horizon: int, seed: int) -> np.ndarray:
    """Starts drawn as the suite draws them (``randint(size - h + 1)``), the first few replaced so that the
    batch surely holds a success inside a valid chunk that is gone by its last step, a valid chunk that ends on a
    time-out (the episode's last step, no success) and a chunk that crosses an episode end."""
    rng = np.random.RandomState(seed)
    size = suite_ds.size
    starts = rng.randint(size - horizon + 1, size=batch_size)
    term, masks = np.asarray(suite_ds["terminals"]), np.asarray(suite_ds["masks"])
    cases = {"success": None, "timeout": None, "crossing": None}
    for s in range(size - horizon + 1):
        w_t, w_m = term[s:s + horizon], masks[s:s + horizon]
        inside = w_t[:-1].sum() == 0
        if cases["success"] is None and inside and w_m.min() == 0 and w_m[-1] == 1:
            cases["success"] = s
        if cases["timeout"] is None and inside and w_t[-1] == 1 and w_m.min() == 1:
            cases["timeout"] = s
        if cases["crossing"] is None and w_t[:-1].sum() > 0:
            cases["crossing"] = s
    missing = [k for k, v in cases.items() if v is None]
    if missing:
        raise ValueError(f"the raw episodes hold no window of kind {missing}")
    starts[: len(cases)] = list(cases.values())
    return starts


@contextlib.contextmanager
def _fixed_randint(values: np.ndarray):
    """``np.random.randint`` returns ``values`` once (the suite draws its starts with it)."""
    orig = np.random.randint

    def fake(*args, **kwargs):
        np.random.randint = orig
        return np.array(values)

    np.random.randint = fake
    try:
        yield
    finally:
        np.random.randint = orig


def suite_sample(suite_ds, starts: np.ndarray, horizon: int, discount: float) -> dict:
    """The suite's ``sample_sequence`` batch at the given starts, as float32 device arrays."""
    with _fixed_randint(starts):
        out = suite_ds.sample_sequence(len(starts), sequence_length=horizon, discount=discount)
    return {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in out.items()}


# ----------------------------------------------------------------------------- parameters

_LAYER = re.compile(r"^(Dense|LayerNorm)_\d+$")


def _layer_key(path) -> tuple:
    names = [getattr(p, "key", getattr(p, "name", str(p))) for p in path]
    layers = tuple(n for n in names if isinstance(n, str) and _LAYER.match(n))
    return layers + (names[-1],)


def layer_leaves(tree) -> dict:
    """``{(layer names along the path..., leaf name): array}`` of a parameter tree."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = _layer_key(path)
        if key in out:
            raise ValueError(f"two leaves map to {key}; map this sub-tree by hand")
        out[key] = leaf
    return out


def map_params(suite_tree, ours_tree):
    """``ours_tree`` with each leaf replaced by the suite's leaf of the same layer (shapes must agree).

    Pass matching sub-trees (e.g. the suite's ``params['modules_critic']`` and our
    ``params['critic']``): wrapper module names are ignored, layer names (``Dense_k``,
    ``LayerNorm_k``) and leaf names must match."""
    src = layer_leaves(suite_tree)

    def take(path, leaf):
        key = _layer_key(path)
        if key not in src:
            raise KeyError(f"no suite leaf for {key}; suite has {sorted(src)}")
        val = src[key]
        if val.shape != leaf.shape:
            raise ValueError(f"shape of {key}: suite {val.shape}, ours {leaf.shape}")
        return jnp.asarray(val, leaf.dtype)

    return jax.tree_util.tree_map_with_path(take, ours_tree)


def map_tanh_gaussian(suite_tree, ours_tree):
    """The suite's ``TanhNormal`` actor (``MLP_0`` trunk, ``OutputDenseMean``, ``OutputDenseLogStd``; with or
    without its ``params`` level) into :class:`rql.agents.qam.TanhGaussian` (``Dense_0..n-1`` trunk,
    ``Dense_n`` mean, ``Dense_n+1`` log std)."""
    src = suite_tree["params"] if "params" in suite_tree else suite_tree
    trunk = dict(src["MLP_0"])
    n = len(trunk)
    return map_params({**trunk, f"Dense_{n}": src["OutputDenseMean"], f"Dense_{n + 1}": src["OutputDenseLogStd"]},
                      ours_tree)


# ----------------------------------------------------------------------------- random draws

_DRAWS = ("normal", "uniform", "randint", "bernoulli", "choice", "truncated_normal", "permutation")


class Tape:
    """Records the random draws of one computation and replays them into another.

    ``with tape.record(): suite_loss(...)`` stores every ``jax.random.<fn>`` result; then
    ``with tape.replay(): our_loss(...)`` returns the recorded values instead of drawing, matched per
    (function, shape) in the order they were recorded. ``reorder(fn, shape, order)`` permutes one
    queue where the two sides draw same-shaped values in a different order. Run both sides eagerly
    (``with jax.disable_jit():``) so recorded values are concrete arrays; draws made inside the
    suite's jitted code would not be seen."""

    def __init__(self):
        self.draws: list[tuple[str, tuple, jax.Array]] = []
        self._queues: dict | None = None
        self._depth = 0

    @contextlib.contextmanager
    def _patched(self, make):
        saved = {name: getattr(jax.random, name) for name in _DRAWS}
        try:
            for name, fn in saved.items():
                setattr(jax.random, name, make(name, fn))
            yield self
        finally:
            for name, fn in saved.items():
                setattr(jax.random, name, fn)

    def record(self):
        def make(name, fn):
            def wrapped(*args, **kwargs):
                self._depth += 1
                try:
                    out = fn(*args, **kwargs)
                finally:
                    self._depth -= 1
                if self._depth == 0:
                    self.draws.append((name, tuple(out.shape), out))
                return out

            return wrapped

        return self._patched(make)

    def reorder(self, name: str, shape: tuple, order: list[int]) -> None:
        idx = [i for i, (n, s, _) in enumerate(self.draws) if n == name and s == tuple(shape)]
        vals = [self.draws[i] for i in idx]
        for i, j in zip(idx, order):
            self.draws[i] = vals[j]

    def replay(self):
        queues = collections.defaultdict(collections.deque)
        for name, shape, val in self.draws:
            queues[(name, shape)].append(val)
        self._queues = queues

        def make(name, fn):
            def wrapped(key, *args, **kwargs):
                shape = kwargs.get("shape", args[0] if args else ())
                if name == "randint" and "shape" not in kwargs:
                    shape = args[0]
                q = queues.get((name, tuple(shape)))
                if not q:
                    raise LookupError(f"replay: no recorded {name} draw of shape {tuple(shape)} left")
                return q.popleft()

            return wrapped

        return self._patched(make)

    def unused(self) -> list[tuple[str, tuple]]:
        """Recorded draws that the replayed side did not take (should be empty)."""
        return [(k[0], k[1]) for k, q in (self._queues or {}).items() for _ in q]


def event_last(tape: Tape, event_dim: int) -> None:
    """Move tensorflow-probability's normal draws, event axis first ``(D, *batch)``, to our layout
    ``(*batch, D)`` (same values, same order) so the replay finds them. Only for draws whose first axis
    is ``event_dim`` and last is not."""
    for i, (name, shape, val) in enumerate(tape.draws):
        if name == "normal" and len(shape) >= 2 and shape[0] == event_dim and shape[-1] != event_dim:
            moved = jnp.moveaxis(val, 0, -1)
            tape.draws[i] = (name, tuple(moved.shape), moved)


# ----------------------------------------------------------------------------- comparison


def rel_diff(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


def max_abs_diff_tree(a, b) -> float:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    if len(la) != len(lb):
        raise ValueError(f"gradient trees differ: {len(la)} against {len(lb)} leaves")
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))) for x, y in zip(la, lb))


def compare(method: str, ours_terms: dict, suite_terms: dict, ours_grads=None, suite_grads=None) -> dict:
    """One table row: the terms compared (ours name = suite value), the largest relative difference of
    the losses, the largest absolute difference of the gradients (trees in the same layout)."""
    diffs = {k: rel_diff(ours_terms[k], suite_terms[k]) for k in ours_terms}
    row = {
        "method": method,
        "terms": ", ".join(sorted(diffs)),
        "max_rel_loss_diff": max(diffs.values()),
        "per_term": diffs,
        "max_abs_grad_diff": None if ours_grads is None else max_abs_diff_tree(ours_grads, suite_grads),
    }
    return row


def print_table(rows: list[dict]) -> None:
    print("| method | loss terms | largest relative loss difference | largest gradient difference |")
    print("|---|---|---|---|")
    for r in rows:
        g = "n/a" if r["max_abs_grad_diff"] is None else f"{r['max_abs_grad_diff']:.2e}"
        print(f"| {r['method']} | {r['terms']} | {r['max_rel_loss_diff']:.2e} | {g} |")
