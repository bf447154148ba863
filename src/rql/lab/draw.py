"""The lab's pictures: matplotlib figures rendered to PNG bytes."""

from __future__ import annotations

import io

import numpy as np

GREY = "#b0b0b0"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig, dpi: int = 90) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    _plt().close(fig)
    return buf.getvalue()


def _lines(ax, paths, colors, lw=0.6, alpha=0.45):
    """Many polylines at once: ``paths`` (T, N, 2), one colour per path."""
    from matplotlib.collections import LineCollection

    segs = np.transpose(np.asarray(paths), (1, 0, 2))
    ax.add_collection(LineCollection(list(segs), colors=colors, linewidths=lw, alpha=alpha))


def mode_colors(n: int) -> list:
    cmap = _plt().get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def _colors_of(modes: np.ndarray, n: int) -> list:
    cols = mode_colors(n)
    return [cols[m] if m >= 0 else GREY for m in np.asarray(modes)]


def _landscape(ax, landscape, lim, alpha=0.55):
    """Reward (or value) heat map ``(grid, values)`` behind a 2-D action plot."""
    if landscape is None:
        return None
    g, r = landscape
    return ax.imshow(r, extent=(g[0], g[-1], g[0], g[-1]), origin="lower", cmap="Greens", alpha=alpha,
                     vmin=0.0, vmax=max(float(np.max(r)), 1e-6))


def _ring(ax, centres, best, radius):
    for k, c in enumerate(centres):
        circ = _plt().Circle(c, radius, fill=False, lw=0.8, ls="--", color="k" if k == best else "0.5")
        ax.add_patch(circ)
    ax.plot(*centres[best], marker="*", color="gold", ms=14, mec="k", zorder=5)


# ----------------------------------------------------------------------------- 2. gradient through the chain


def chain_gradient(cj, hop) -> bytes:
    plt = _plt()
    Fs = np.asarray(cj["F"])
    lc = np.log10(cj["chain"])
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    ax.fill_between(Fs, np.percentile(lc, 10, 1), np.percentile(lc, 90, 1), color="C3", alpha=0.2,
                    label="product of F step Jacobians: 10-90%")
    ax.plot(Fs, np.median(lc, 1), color="C3", lw=2, label="product: median")
    ax.plot(Fs, lc.min(1), color="C3", lw=0.8, ls=":", label="product: min / max")
    ax.plot(Fs, lc.max(1), color="C3", lw=0.8, ls=":")
    ax.plot(Fs, np.log10(np.median(cj["step_mean"], 1)), color="C0", lw=2, label="one step: median of mean")
    ax.plot(Fs, np.log10(np.median(cj["step_max"], 1)), color="C0", lw=1, ls="--", label="one step: median of max")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xlabel("flow steps F")
    ax.set_ylabel("log10 spectral norm")
    ax.set_title("what backpropagation multiplies vs one step", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)

    ax = axes[1]
    dev = Fs * (1.0 - np.median(cj["step_mean"], 1))
    ax.plot(Fs, dev, "o-", color="C0", ms=3, label="F x (1 - |one-step Jacobian|)")
    ax.set_ylabel("F x (1 - |J|)")
    ax.set_xlabel("flow steps F")
    ax2 = ax.twinx()
    ax2.plot(Fs, np.median(lc, 1), color="C3", label="log10 |product| (median)")
    ax2.plot(Fs, np.median(cj["step_logsum"], 1), color="C2", ls="--", label="sum of log10 one-step norms (median)")
    ax2.set_ylabel("log10 norm")
    ax.set_title("each step is I + O(1/F); the product follows the sum of its steps", fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="center right")
    ax.grid(alpha=0.3)

    ax = axes[2]
    steps = np.arange(hop["cos"].shape[0])
    ax.plot(steps, np.median(hop["cos"], 1), "o-", color="C2", label="cosine(RQL one-hop, BPTT) median")
    ax.fill_between(steps, np.percentile(hop["cos"], 10, 1), np.percentile(hop["cos"], 90, 1), color="C2", alpha=0.2)
    ax2 = ax.twinx()
    ax2.plot(steps, np.median(hop["bptt_norm"], 1), color="C3", ls="--", label="|BPTT grad| median")
    ax2.plot(steps, np.median(hop["hop_norm"], 1), color="C0", ls="--", label="|one-hop grad| median")
    ax2.set_ylabel("gradient norm")
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel(f"flow step i (F={hop['F']})")
    ax.set_ylabel("cosine similarity")
    ax.set_title("grad wrt x_i: one hop through V vs the whole chain", fontsize=10)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- 4. reversal


def reversal(path, modes, centres, best, success_radius, rt, reference_F: int) -> bytes:
    plt = _plt()
    cols = _colors_of(modes, len(centres))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
    ax = axes[0]
    th = np.linspace(0, 2 * np.pi, 200)
    for r in (1, 2):
        ax.plot(r * np.cos(th), r * np.sin(th), color="0.6", lw=0.8, ls=":")
    _lines(ax, path, cols, alpha=0.5)
    ax.scatter(path[-1, :, 0], path[-1, :, 1], s=7, c=cols, edgecolors="k", linewidths=0.2, zorder=4,
               label="dataset action (t=1)")
    ax.scatter(path[0, :, 0], path[0, :, 1], s=6, c=cols, marker="x", zorder=4, label="reversed noise (t=0)")
    _ring(ax, centres, best, success_radius)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_title(f"flow reversal of dataset actions (F={path.shape[0] - 1}); dotted: 1 and 2 std of N(0, I)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    ax = axes[1]
    Fs = np.asarray(rt["F"], float)
    err = np.asarray(rt["error"])
    ax.fill_between(Fs, np.percentile(err, 10, 1), np.percentile(err, 90, 1), color="C1", alpha=0.25, label="10-90%")
    ax.plot(Fs, np.median(err, 1), "o-", color="C1", label="median round-trip error")
    i_ref = list(rt["F"]).index(reference_F) if reference_F in rt["F"] else 0
    ref = np.median(err[i_ref]) * Fs[i_ref] / Fs
    ax.plot(Fs, ref, "k--", lw=0.8, label="~ 1/F")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("flow steps F (reversal and sampling)")
    ax.set_ylabel("|forward(reverse(a)) - a| (RMS per dim)")
    ax.set_title("reversal then forward sampling: round-trip error", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- 5. value along reversed chains


def value_lines(vals, grads, modes, n_modes: int, best: int | None = None) -> bytes:
    plt = _plt()
    F = vals.shape[0] - 1
    t = np.arange(F + 1) / F
    cols = _colors_of(modes, n_modes) if n_modes else ["C0"] * vals.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    _lines(axes[0], np.stack([np.broadcast_to(t[:, None], vals.shape), vals], -1), cols, lw=0.7, alpha=0.6)
    _lines(axes[1], np.stack([np.broadcast_to(t[:, None], grads.shape), grads], -1), cols, lw=0.5, alpha=0.35)
    for ax, y in ((axes[0], vals), (axes[1], grads)):
        pad = 0.05 * (float(y.max()) - float(y.min()) + 1e-9)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(float(y.min()) - pad, float(y.max()) + pad)
    axes[1].plot(t, np.median(grads, 1), color="k", lw=2.5, label="median over chains")
    axes[0].set_xlabel("flow time t of the partial action x_t")
    axes[0].set_ylabel("V(s, x_t, t)")
    axes[0].set_title("value along reversed chains: flat in t", fontsize=10)
    axes[1].set_xlabel("flow time t")
    axes[1].set_ylabel("|grad_x V(s, x_t, t)|")
    axes[1].set_title("its slope: changes with t", fontsize=10)
    axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- 6. estimators


def estimators(ge, clouds) -> bytes:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    s = np.asarray(ge["sigma"])
    ax.plot(s, ge["score"], "o-", color="C3", label="score function (REINFORCE)")
    ax.plot(s, ge["score_baseline"], "o--", color="C1", label="score function, leave-one-out baseline")
    ax.plot(s, ge["pathwise"], "o-", color="C0", label="pathwise (reparameterised)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(s, [f"{v:g}" for v in s], minor=False)
    ax.xaxis.set_minor_formatter(_plt().NullFormatter())
    ax.set_xlabel("exploration noise sigma")
    ax.set_ylabel(f"variance of the estimate ({ge['batch']} samples)")
    ax.set_title("same gradient, two estimators", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax = axes[1]
    for name, col in (("score", "C3"), ("score_baseline", "C1"), ("pathwise", "C0")):
        c = clouds[name]
        ax.scatter(c[:, 0], c[:, 1], s=5, color=col, alpha=0.5, label=name.replace("_", " + "))
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    lim = float(np.percentile(np.abs(clouds["score_baseline"]), 99)) * 1.2
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_title(f"repeated estimates at sigma={clouds['sigma']}", fontsize=10)
    ax.legend(fontsize=7, markerscale=2)
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- 7. policies


def policies(panels, centres, best, success_radius, landscape) -> bytes:
    """One panel per (title, actions (N, 2), fraction in the rewarded mode)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.7))
    axes = np.atleast_1d(axes)
    for ax, (title, acts, frac) in zip(axes, panels):
        _landscape(ax, landscape, 1.05, alpha=0.8)
        ax.scatter(acts[:, 0], acts[:, 1], s=3, color="C3", alpha=0.35)
        _ring(ax, centres, best, success_radius)
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        ax.set_title(f"{title}\n{100 * frac:.1f}% in the rewarded mode", fontsize=9)
    fig.tight_layout()
    return png(fig)


# ----------------------------------------------------------------------------- real runs


def run_roundtrip(rt, label) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    Fs = np.asarray(rt["F"], float)
    err = np.asarray(rt["error"])
    ax.fill_between(Fs, np.percentile(err, 10, 1), np.percentile(err, 90, 1), color="C1", alpha=0.25, label="10-90%")
    ax.plot(Fs, np.median(err, 1), "o-", color="C1", label="median")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("flow steps F")
    ax.set_ylabel("round-trip error (RMS per action dim)")
    ax.set_title(f"{label}: reverse then sample", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return png(fig)


def run_spread(groups, title) -> bytes:
    """Policy samples of a few states projected on the dataset chunks' first two principal axes.

    ``groups``: list of (label, samples (S, K, 2), colour); plus the dataset chunks (S, 2) as the
    first group with K = 1."""
    plt = _plt()
    S = groups[0][1].shape[0]
    cols = min(S, 4)
    fig, axes = plt.subplots(1, cols, figsize=(3.3 * cols, 3.4))
    axes = np.atleast_1d(axes)
    for j, ax in enumerate(axes):
        for label, pts, col in groups:
            p = pts[j]
            ax.scatter(p[:, 0], p[:, 1], s=8 if p.shape[0] > 1 else 60, color=col, alpha=0.6 if p.shape[0] > 1 else 1,
                       marker="o" if p.shape[0] > 1 else "*", label=label, edgecolors="k" if p.shape[0] == 1 else "none")
        ax.set_title(f"state {j}", fontsize=9)
        ax.set_xlabel("PC 1")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PC 2")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)
