import numpy as np

from rql.agents import build_config
from rql.data.dataset import validate
from rql.data.shards import ShardedData, shard_index
from rql.training import RunConfig, train


def write_shards(folder, n_shards=4, rows=(60, 80, 70, 90), seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for i in range(n_shards):
        n = rows[i]
        t = np.zeros(n, bool)
        t[n // 2 - 1] = t[-1] = True
        obs = np.full((n, 3), i, np.float32) + rng.normal(0, .1, (n, 3)).astype(np.float32)
        np.savez(folder / f"part-{i:03d}.npz", observations=obs, next_observations=obs + 100.0,
                 actions=rng.uniform(-1, 1, (n, 2)).astype(np.float32), rewards=-np.ones(n, np.float32), terminals=t)
    np.savez(folder / "part-000-val.npz", observations=np.zeros((1, 3)))  # skipped


def test_shard_order_is_a_seeded_permutation_per_pass():
    order = [shard_index(s, 5, 10, seed=3) for s in range(0, 100, 10)]
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:]) == list(range(5))
    assert order == [shard_index(s, 5, 10, seed=3) for s in range(0, 100, 10)]
    assert order != [shard_index(s, 5, 10, seed=4) for s in range(0, 100, 10)]


def test_sharded_folder_trains_with_at_most_two_shards_resident(tmp_path):
    folder = tmp_path / "shards"
    write_shards(folder)
    loaded = []

    def load(path):
        loaded.append(path.name)
        from rql.data.info import read_npz

        return validate(read_npz(path), str(path), horizon=2)

    sd = ShardedData(folder, load, seed=0, shard_every=10)
    assert len(sd.files) == 4 and sd.capacity == 90
    seen = set()
    for step in range(0, 80, 10):
        d = sd.data(step)
        assert d.observations.shape == (90, 3)  # one padded shape for every shard
        shard = int(round(float(np.asarray(d.observations)[0, 0])))
        assert shard == shard_index(step, 4, 10, 0)
        # Each shard keeps its own episodes' successor rows (the suite's windows bootstrap from them).
        n = int(d.size)
        ends = np.asarray(d.end_steps)[:2]
        assert n == (60, 80, 70, 90)[shard] and ends.tolist() == [n // 2 - 1, n - 1]
        np.testing.assert_allclose(np.asarray(d.end_next_observations)[:2], np.asarray(d.observations)[ends] + 100.0)
        seen.add(shard)
        assert len(sd._held) <= 2
    sd.close()
    assert seen == {0, 1, 2, 3}
    assert sd.peak_resident <= 2

    cfg = build_config("rql", None, None, dict(actor_hidden_dims=(8,), value_hidden_dims=(8,), ensemble=2,
                                               batch_size=8, horizon=2))
    run = RunConfig(dataset_path=str(folder), run_dir=str(tmp_path / "run"), steps=40, shard_every=10,
                    log_every=10, eval_episodes=0, progress=False, tensorboard=False)
    summary = train(run, "rql", cfg, log=lambda *a: None)
    assert summary["steps"] == 40
    assert np.isfinite(summary["final_metrics"]["loss/total"])
