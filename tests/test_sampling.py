import jax
import numpy as np

from rql.data.dataset import validate
from rql.data.device import sample_windows, to_device, window_indices


def episodes_dataset(lengths, obs_dim=2):
    n = sum(lengths)
    ep_id = np.concatenate([np.full(L, i) for i, L in enumerate(lengths)])
    step = np.concatenate([np.arange(L) for L in lengths])
    terminals = np.concatenate([np.eye(L)[-1] for L in lengths])
    obs = np.stack([ep_id, step], 1).astype(np.float32)
    arrays = dict(observations=obs, actions=np.zeros((n, 1), np.float32), rewards=-np.ones(n, np.float32),
                  terminals=terminals)
    return validate(arrays, "synthetic", horizon=1), ep_id, step


def test_windows_stay_in_one_episode_and_clamp_at_the_end():
    lengths = [5, 1, 9, 3]
    ds, ep_id, step = episodes_dataset(lengths)
    data = to_device(ds)
    idx = np.asarray(window_indices(data, jax.random.PRNGKey(0), 4000, 4))
    eps = ep_id[idx]
    assert (eps == eps[:, :1]).all(), "a window mixed two episodes"
    assert 1 not in set(eps[:, 0]), "a one-step episode has no transition to start from"
    last = {i: sum(lengths[: i + 1]) - 1 for i in range(len(lengths))}
    for row, e in zip(idx, eps[:, 0]):
        assert row[0] < last[e], "a window started on an episode's last step"
        expected = np.minimum(row[0] + np.arange(5), last[e])
        np.testing.assert_array_equal(row, expected)
    # Episodes drawn uniformly, starts uniform inside an episode.
    counts = np.bincount(eps[:, 0], minlength=4)[[0, 2, 3]] / len(idx)
    np.testing.assert_allclose(counts, 1 / 3, atol=0.04)
    starts_ep2 = step[idx[eps[:, 0] == 2, 0]]
    assert set(starts_ep2) == set(range(8))


def test_window_terminals_and_masks_follow_clamping():
    ds, ep_id, step = episodes_dataset([3, 3])
    b = sample_windows(to_device(ds), jax.random.PRNGKey(1), 500, 3)
    obs = np.asarray(b.observations)
    term = np.asarray(b.terminals)
    # Once a window reaches an episode's last step it stays there, flagged terminal.
    for o, t in zip(obs, term):
        first_end = np.argmax(t > 0) if (t > 0).any() else None
        assert first_end is not None  # windows of 4 in episodes of 3 always reach the end
        assert (t[first_end:] == 1).all() and (t[:first_end] == 0).all()
        assert (o[first_end:] == o[first_end]).all()
        assert o[first_end, 1] == 2  # the episode's last step
    np.testing.assert_array_equal(np.asarray(b.masks), 1.0 - term)  # default masks: every end is an end
