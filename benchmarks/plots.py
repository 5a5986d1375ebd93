"""Speed-up plots: ratio against batch size, one line per hidden size.

One PNG per cell type; in it one panel per (dtype, mode). Only single-layer
unidirectional points are drawn (the stacked ones are single shapes, in the
table). A series is (H, T): the grid's main T is drawn solid, other T dashed.
matplotlib is optional: without it, plotting is skipped with a note.

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


def write(results: dict, out_dir: Path) -> list[Path]:
    """Write speedup_<cell>.png files; returns their paths ([] if nothing to plot)."""
    plt = _matplotlib()
    if plt is None:
        print("plots: matplotlib not installed, skipping plots", file=sys.stderr)
        return []
    ok = [p for p in results["points"]
          if p["status"] == "OK" and p["layers"] == 1 and not p["bidirectional"]]
    written = []
    device = results["environment"]["device"]["name"]
    baseline = "cuDNN" if results["environment"]["device"]["type"] == "cuda" else "torch.nn"
    for cell in ("lstm", "gru"):
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
                    series[(p["H"], p["T"])].append((p["B"], p["ratio"]))
            for (h, t), xy in sorted(series.items()):
                xy.sort()
                ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o",
                        linestyle="-" if t == main_t else "--", label=f"H={h}, T={t}")
            ax.axhline(1.0, color="gray", linewidth=0.8)
            ax.set_xscale("log", base=2)
            batches = sorted({p["B"] for p in pts})
            ax.set_xticks(batches, [str(b) for b in batches])
            ax.minorticks_off()
            ax.set_title(f"{cell.upper()} {dtype} {mode}", fontsize=10)
            ax.set_xlabel("batch size")
            ax.set_ylabel(f"{baseline} time / rnnfuse time")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"rnnfuse speed-up over torch.nn, {device} (above 1: rnnfuse faster)",
                     fontsize=11)
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
