import json

from rql.cli import main


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    args = ["demo", "--out", str(tmp_path / "demo"), "--data-dir", str(tmp_path / "data"), "--episodes", "2",
            "--max-steps", "60", "--workers", "1", "--steps", "20", "--eval-every", "10", "--eval-episodes", "2",
            "--final-episodes", "3"]
    assert main(args) == 0
    out = tmp_path / "demo"
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 20 and report["rql"]["episodes"] == 3 and report["flow_bc"]["episodes"] == 3
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RQL final success" in (out / "report.md").read_text()
    r, b = report["rql"], report["flow_bc"]
    assert report["rql_above_flow_bc"] == (r["success_ci_low"] > b["success_ci_high"])
    assert report["lab"] == "lab/index.html" and (out / "lab" / "index.html").stat().st_size > 1000
    assert "lab/index.html" in (out / "report.md").read_text()
    assert list((tmp_path / "data").glob("*/cube-single-play-v0.npz"))
    capsys.readouterr()
    # A second run reuses the cached data and the finished runs.
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "using cached" in text and "finished earlier" in text
