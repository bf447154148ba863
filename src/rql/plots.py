"""Learning-curve plots (PNG) from run directories."""

from __future__ import annotations

import csv
import pathlib


def read_metrics(run_dir: str | pathlib.Path) -> list[dict[str, float]]:
    """Rows of a run's metrics.csv with numbers parsed (empty cells dropped)."""
    path = pathlib.Path(run_dir) / "metrics.csv"
    rows = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: float(v) for k, v in r.items() if v not in ("", None)})
    return rows


def plot_runs(runs: dict[str, str | pathlib.Path], path: str | pathlib.Path, title: str = "",
              finals: dict[str, dict] | None = None) -> pathlib.Path:
    """One figure: evaluation success (with its 95% interval) and training losses against updates,
    one line per labelled run. ``finals`` maps a label to a separate evaluation of its last
    checkpoint (``rql eval --json``: success, interval, episodes, checkpoint), drawn as a square
    with its interval as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_s, ax_l) = plt.subplots(1, 2, figsize=(11, 4))
    top = 0.0  # highest interval bound drawn: low success rates get an axis that shows them
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (label, run_dir) in enumerate(runs.items()):
        color = colors[i % len(colors)]
        rows = read_metrics(run_dir)
        ev = [r for r in rows if "eval/success" in r]
        if ev:
            steps = [r["step"] for r in ev]
            ax_s.plot(steps, [r["eval/success"] for r in ev], marker="o", label=label, color=color)
            ax_s.fill_between(steps, [r["eval/success_ci_low"] for r in ev], [r["eval/success_ci_high"] for r in ev],
                              color=color, alpha=0.2)
        final = (finals or {}).get(label)
        if final:
            ax_s.errorbar([final["checkpoint"]], [final["success"]], fmt="s", markersize=8, capsize=5, color=color,
                          yerr=[[final["success"] - final["success_ci_low"]], [final["success_ci_high"] - final["success"]]],
                          label=f"{label}, final: {final['episodes']} episodes")
            top = max(top, final["success_ci_high"])
        top = max([top] + [r["eval/success_ci_high"] for r in ev])
        tr = [r for r in rows if "loss/total" in r]
        for key, style in (("loss/bc", "-"), ("loss/critic", "--")):
            pts = [(r["step"], r[key]) for r in tr if key in r]
            if pts:
                ax_l.plot(*zip(*pts), style, color=color, label=f"{label} {key.split('/')[1]}")
    ax_s.set_xlabel("updates")
    ax_s.set_ylabel("success rate")
    ax_s.set_ylim(-0.02, min(1.02, max(0.25, top * 1.15)))
    ax_s.set_title("evaluation (95% interval shaded)")
    ax_s.grid(alpha=0.3)
    ax_s.legend()
    ax_l.set_xlabel("updates")
    ax_l.set_ylabel("loss")
    ax_l.set_yscale("log")
    ax_l.set_title("training losses")
    ax_l.grid(alpha=0.3)
    ax_l.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
