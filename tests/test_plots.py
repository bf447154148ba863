import matplotlib.image as mpimg

from rql.plots import plot_runs, read_metrics


def test_plot_runs_writes_a_png_from_metrics(tmp_path):
    for name, succ in (("a", [0.1, 0.3]), ("b", [0.0, 0.1])):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.csv").write_text(
            "step,loss/total,loss/bc,eval/success,eval/success_ci_low,eval/success_ci_high\n"
            f"10,1.0,0.5,{succ[0]},0.0,0.5\n15,0.9,0.4,,,\n20,0.8,0.3,{succ[1]},0.1,0.6\n")
    rows = read_metrics(tmp_path / "a")
    assert rows[1] == {"step": 15.0, "loss/total": 0.9, "loss/bc": 0.4}
    out = plot_runs({"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "curves.png", title="t")
    img = mpimg.imread(out)
    assert img.shape[0] > 200 and img.shape[1] > 500
    assert img.std() > 0.01  # something was drawn
    # A separate final evaluation adds a marker with its interval: the picture changes.
    final = {"checkpoint": 20, "success": 0.25, "success_ci_low": 0.2, "success_ci_high": 0.3, "episodes": 200}
    with_final = mpimg.imread(plot_runs({"A": tmp_path / "a", "B": tmp_path / "b"}, tmp_path / "f.png", title="t",
                                        finals={"A": final}))
    assert with_final.shape == img.shape and (with_final != img).any()
