import json

from rql.bench import throughput
from rql.cli import main


def test_throughput_reports_rate_and_memory():
    r = throughput("rql", 6, 2, 2, 16, (8,), 2, 3, steps=20, block=10, dataset_size=500)
    assert r["updates"] == 20 and r["updates_per_second"] > 0 and r["peak_rss_mb"] > 10
    assert r["config"]["hidden_dims"] == [8] and r["config"]["updates_per_dispatch"] == 10


def test_bench_cli_prints_one_json_line(capsys):
    assert main(["bench", "throughput", "--obs-dim", "4", "--action-dim", "2", "--horizon", "1",
                 "--batch-size", "8", "--hidden-dims", "8,8", "--ensemble", "2", "--flow-steps", "2",
                 "--steps", "10", "--updates-per-dispatch", "5", "--dataset-size", "200"]) == 0
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1 and json.loads(line[0])["updates"] == 10
    assert main(["bench", "throughput", "--hidden-dims", "a,b"]) == 2


def test_throughput_of_a_group_counts_every_seed():
    r = throughput("flow-bc", 6, 2, 2, 16, (8,), 2, 3, steps=20, block=10, dataset_size=500, seeds=3)
    assert r["seeds"] == 3 and r["grouped"] and r["updates"] == 20
    assert abs(r["updates_per_second"] - 3 * r["updates_per_second_per_seed"]) < 1e-6 * r["updates_per_second"]
