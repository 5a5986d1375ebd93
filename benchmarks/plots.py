"""Speed-up plots: ratio against batch size, one line per hidden size.

One PNG per cell type (lstm, gru, lstmcell, grucell); in it one panel per
(dtype, mode). Only single-layer unidirectional points are drawn (the
stacked ones are single shapes, in the table). A series is (H, T): the
grid's main T is drawn solid, other T dashed. Each marker is the median
paired ratio with an error bar from its p10 to its p90; OK points are joined
by the series' line, NOISY points are drawn hollow and apart from it (their
ratio is not a result). matplotlib is optional: without it, plotting is
skipped with a note.

Re-plot from a results file: python -m benchmarks.plots results.json [outdir]
"""
from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

DTYPE_ORDER = ("fp32", "tf32", "fp16", "bf16")
MODE_ORDER = ("inference", "training")


def _matplotlib():
    try:
        import matplotlib
        matplotlib.use("Agg")  # headless: no display on the GPU machine or in CI
        import matplotlib.pyplot as plt
        return plt
    except ImportError:
        return None


def _yerr(points):
    """Asymmetric error bars from each point's paired-ratio p10 and p90."""
    lo, hi = [], []
    for p in points:
        r = p.get("ratio_spread") or {}
        lo.append(max(0.0, p["ratio"] - r.get("p10", p["ratio"])))
        hi.append(max(0.0, r.get("p90", p["ratio"]) - p["ratio"]))
    return [lo, hi]


def _ylim(points):
    """Fit the OK points' bars, every marker and 1.0; a NOISY bar may run off the
    panel rather than squash the trusted points into a line."""
    ys = [1.0] + [p["ratio"] for p in points]
    for p in points:
        r = p.get("ratio_spread") or {}
        if p["status"] == "OK":
            ys += [r.get("p10", p["ratio"]), r.get("p90", p["ratio"])]
    lo, hi = min(ys), max(ys)
    pad = 0.08 * (hi - lo) or 0.1
    return max(0.0, lo - pad), hi + pad


def write(results: dict, out_dir: Path) -> list[Path]:
    """Write speedup_<cell>.png files; returns their paths ([] if nothing to plot)."""
    plt = _matplotlib()
    if plt is None:
        print("plots: matplotlib not installed, skipping plots", file=sys.stderr)
        return []
    ok = [p for p in results["points"]
          if p["status"] in ("OK", "NOISY") and p["layers"] == 1 and not p["bidirectional"]]
    written = []
    device = results["environment"]["device"]["name"]
    baseline = "cuDNN" if results["environment"]["device"]["type"] == "cuda" else "torch.nn"
    for cell in ("lstm", "gru", "lstmcell", "grucell"):
        pts = [p for p in ok if p["cell"] == cell]
        if not pts:
            continue
        panels = [(d, m) for d in DTYPE_ORDER for m in MODE_ORDER
                  if any(p["dtype"] == d and p["mode"] == m for p in pts)]
        main_t = Counter(p["T"] for p in pts).most_common(1)[0][0]
        ncols = min(4, len(panels))
        nrows = -(-len(panels) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows),
                                 squeeze=False, sharey=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (dtype, mode) in zip(axes.flat, panels):
            series = defaultdict(list)
            for p in pts:
                if p["dtype"] == dtype and p["mode"] == mode:
                    series[(p["H"], p["T"])].append(p)
            for k, ((h, t), sp) in enumerate(sorted(series.items())):
                sp.sort(key=lambda p: p["B"])
                label = f"H={h}, T={t}" + (" calls" if cell.endswith("cell") else "")
                good = [p for p in sp if p["status"] == "OK"]
                noisy = [p for p in sp if p["status"] == "NOISY"]
                color = f"C{k % 10}"
                if good:
                    ax.errorbar([p["B"] for p in good], [p["ratio"] for p in good],
                                yerr=_yerr(good), marker="o", capsize=3, color=color,
                                linestyle="-" if t == main_t else "--", label=label)
                if noisy:
                    ax.errorbar([p["B"] for p in noisy], [p["ratio"] for p in noisy],
                                yerr=_yerr(noisy), marker="o", markerfacecolor="none",
                                color=color, linestyle="none", capsize=3, alpha=0.6,
                                label=f"{label}: NOISY")
            ax.axhline(1.0, color="gray", linewidth=0.8)
            ax.set_ylim(*_ylim([p for p in pts if p["dtype"] == dtype and p["mode"] == mode]))
            ax.set_xscale("log", base=2)
            batches = sorted({p["B"] for p in pts})
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
            name = {"lstmcell": "LSTMCell", "grucell": "GRUCell"}.get(cell, cell.upper())
            ax.set_title(f"{name} {dtype} {mode}" + (" (per call)" if cell.endswith("cell") else ""),
                         fontsize=10)
            ax.set_xlabel("batch size")
            ax.set_ylabel(f"{baseline} time / rnnfuse time")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"rnnfuse speed-up over torch.nn, {device} (above 1: rnnfuse faster; "
                     "bars: paired-ratio p10-p90)", fontsize=11)
        fig.tight_layout()
        path = Path(out_dir) / f"speedup_{cell}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    src = Path(argv[0])
    out = Path(argv[1]) if len(argv) > 1 else src.parent
    out.mkdir(parents=True, exist_ok=True)
    for p in write(json.loads(src.read_text()), out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
