"""rnnfuse benchmark suite: ``python -m benchmarks.run``.

On a CUDA machine it races rnnfuse against torch.nn.LSTM/GRU on cuDNN; on a
CPU-only machine against torch.nn on the CPU. No flags needed.

Examples:
  python -m benchmarks.run                      # preset "standard" for this device
  python -m benchmarks.run --preset quick       # a few points, under 2 minutes
  python -m benchmarks.run --cell lstm --dtype bf16 --T 1024 --B 16 --H 768 --mode training
  python -m benchmarks.run --preset standard --cell gru --dtype fp16   # filter a preset
  python -m benchmarks.run --preset quick --list                       # show points only
  python -m benchmarks.run --preset standard --shard 1/3 --deadline-s 420   # a third, capped
  python -m benchmarks.run --cell lstmcell,grucell --B 1,64 --H 128,512  # per-call cell points

Point flags take comma lists (``--B 1,16,64``); given without --preset they
form a cross product with the defaults of PyTorch's fastrnns point (LSTM,
fp32, T=100, B=64, I=H, 1 layer, unidirectional, both modes); given with
--preset they filter it. Cells: lstm, gru (sequence modules), lstmcell,
grucell (per call; their T is the chained calls per repeat, default 10, so
`--preset standard --T 100` keeps only sequence points).

A preset too long for one sitting runs in shards: ``--shard K/N`` keeps
points K, K + N, K + 2N, ... (1-based, so every shard mixes cells, dtypes
and sizes), ``--deadline-s S`` starts no point after S seconds (the rest
are SKIPPED, listed, not counted), and ``python -m benchmarks.merge`` joins
the shards' results.json into one report.

Both implementations are timed alternately, repeat by repeat; each point
reports its spread, and a point whose spread is too wide is NOISY: shown,
not counted (benchmarks/noise.py).

A point that breaks the process's CUDA context (a kernel that traps or
faults: every later CUDA call in the process fails) is an ERROR and the
points after it are SKIPPED; ``--resume-from OUT/results.json`` measures the
SKIPPED points of a run in a fresh process and writes the union (with
``--out OUT``: in place).

Results: results.json, report.md and speedup_*.png in
benchmarks/results/<card>_<YYYY-MM-DD>[_<preset>]/ unless --out is given.
Exit status: 3 when points were SKIPPED after a broken CUDA context (resume
them); else 0 when no point is WRONG or ERROR (OK, NOISY and torch.nn
UNSUPPORTED points pass), 1 when any is, 2 on a usage or set-up error
(e.g. rnnfuse does not import).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import torch

from . import ceilings as ceilings_mod
from . import env, grid, measure, merge, plots, report, timing
from .cuda_health import cuda_context_error

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# Measuring time per implementation and point (the two alternate, so a point
# takes about twice this). The GPU quick preset must finish in under 2
# minutes including start-up; a 2-core CPU needs fewer repeats, but at least
# noise.MIN_PAIRS to judge the spread.
BUDGETS = {
    ("cuda", "quick"): timing.Budget(seconds=0.2, warmup=3, min_repeats=10, max_repeats=100),
    ("cuda", "standard"): timing.Budget(seconds=0.5, warmup=3, min_repeats=20, max_repeats=200),
    ("cpu", "quick"): timing.Budget(seconds=0.3, warmup=1, min_repeats=5, max_repeats=50),
    ("cpu", "standard"): timing.Budget(seconds=2.0, warmup=2, min_repeats=10, max_repeats=100),
}

POINT_FLAGS = {  # flag -> (Point field, parser, default for a custom grid)
    "cell": ("cell", str, ("lstm",)),
    "dtype": ("dtype", str, ("fp32",)),
    "T": ("T", int, (100,)),  # cell points: grid.CELL_CALLS
    "B": ("B", int, (64,)),
    "I": ("I", int, None),  # None: I = H
    "H": ("H", int, (512,)),
    "layers": ("layers", int, (1,)),
    "bidirectional": ("bidirectional", bool, (False,)),
    "mode": ("mode", str, grid.MODES),
}


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=grid.PRESETS, help="named grid (default: standard, "
                    "unless point flags are given)")
    ap.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto")
    for flag in POINT_FLAGS:
        ap.add_argument(f"--{flag}", metavar="LIST", help=f"comma list of {flag} values")
    ap.add_argument("--out", type=Path, help="output folder (default: benchmarks/results/...)")
    ap.add_argument("--candidate", choices=("rnnfuse", "torch"), default="rnnfuse",
                    help="implementation raced against torch.nn; 'torch' races torch.nn "
                    "against itself to check the harness (ratios near 1)")
    ap.add_argument("--budget", type=float, help="seconds of timed repeats per implementation "
                    "and point (default depends on device and preset)")
    ap.add_argument("--ceilings", choices=("full", "small", "off"), default="full",
                    help="measure the card's GEMM/copy ceilings (small: tiny sizes, for tests)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--list", action="store_true", help="print the points and exit")
    ap.add_argument("--shard", metavar="K/N", help="keep points K, K+N, K+2N, ... (1-based) of "
                    "the selection")
    ap.add_argument("--deadline-s", type=float, help="start no point after this many seconds; "
                    "the rest are SKIPPED")
    ap.add_argument("--resume-from", type=Path, metavar="RESULTS_JSON",
                    help="measure the points that run left SKIPPED (same preset, budget and "
                    "ceilings) and write the union of both runs")
    return ap.parse_args(argv)


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes K/N (e.g. 2/3), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard(points: list, k: int, n: int) -> list:
    return points[k - 1::n]


def select_points(args, device_type: str) -> tuple[list[grid.Point], str | None]:
    given = {f: grid.parse_list(getattr(args, f), POINT_FLAGS[f][1])
             for f in POINT_FLAGS if getattr(args, f) is not None}
    if "cell" in given:
        given["cell"] = tuple(c.lower() for c in given["cell"])
    preset = args.preset or (None if given else "standard")
    if preset:
        pts = grid.preset(preset, device_type)
        for f, values in given.items():
            pts = [p for p in pts if getattr(p, POINT_FLAGS[f][0]) in values]
        return pts, preset
    vals = {f: given.get(f, POINT_FLAGS[f][2]) for f in POINT_FLAGS}
    for c in vals["cell"]:
        if c not in grid.CELLS:
            raise ValueError(f"unknown cell {c!r}; cells: {', '.join(grid.CELLS)}")
    pts = grid.cross(cells=vals["cell"], dtypes=vals["dtype"], T=vals["T"], B=vals["B"],
                     H=vals["H"], I=vals["I"], layers=vals["layers"],
                     bidirectional=vals["bidirectional"], modes=vals["mode"],
                     cell_T=given.get("T", (grid.CELL_CALLS,)))
    return pts, None


def load_candidates(name: str) -> dict:
    if name == "torch":
        return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
                "lstmcell": torch.nn.LSTMCell, "grucell": torch.nn.GRUCell}
    import rnnfuse  # fails loudly if the extension did not build
    return {"lstm": rnnfuse.LSTM, "gru": rnnfuse.GRU,
            "lstmcell": rnnfuse.LSTMCell, "grucell": rnnfuse.GRUCell}


def default_out_dir(info: dict, preset: str | None) -> Path:
    name = f"{env.card_slug(info)}_{datetime.date.today().isoformat()}"
    return RESULTS_DIR / (f"{name}_{preset}" if preset else name)


def _progress(points):
    try:
        from tqdm import tqdm
    except ImportError:  # still usable without tqdm: one line per point
        return None
    return tqdm(points, desc="benchmark", unit="pt", dynamic_ncols=True, file=sys.stderr)


# A skipped point's error when an earlier point broke the process's CUDA
# context (main exits 3; --resume-from measures them in a fresh process).
BROKEN = "not started: the CUDA context was broken by "


def run(points, device, candidates, budget, ceilings, info, require_namespace=None,
        deadline_s=None, clock=time.perf_counter, health=None) -> list[dict]:
    """Every point measured in order; once ``deadline_s`` seconds have passed
    the remaining points are recorded SKIPPED without running, and so are
    they after a point that broke the CUDA context (a trapped or faulting
    kernel: every later CUDA call in this process fails), which is an ERROR."""
    bar = _progress(points)
    results = []
    t0 = clock()
    broken_by = None
    for i, point in enumerate(bar if bar is not None else points):
        if broken_by is not None or (deadline_s is not None and clock() - t0 >= deadline_s):
            res = measure.empty_result(point)
            res["status"] = "SKIPPED"
            res["error"] = (BROKEN + broken_by if broken_by is not None
                            else f"not started: --deadline-s {deadline_s:g} passed")
            results.append(res)
            continue
        if bar is not None:
            bar.set_postfix_str(point.id)
        else:
            print(f"[{i + 1}/{len(points)}] {point.id}", file=sys.stderr, flush=True)
        res = measure.run_point(point, device, candidates, budget, ceilings, info,
                                require_namespace)
        broken = (health or cuda_context_error)()
        if broken:
            broken_by = point.id
            res["status"] = "ERROR"
            res["error"] = "; ".join(e for e in (res.get("error"),
                                                 f"broke the CUDA context: {broken}") if e)
        results.append(res)
    if bar is not None:
        bar.close()
    return results


def main(argv=None, candidates: dict | None = None) -> int:
    """CLI entry. ``candidates`` ({"lstm": cls, "gru": cls, ...}) overrides --candidate (tests)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
            return 2
    previous = None
    try:
        if args.resume_from is not None:
            previous = json.loads(args.resume_from.read_text())
            points, preset = resumed_points(previous), previous["preset"]
        else:
            points, preset = select_points(args, device.type)
    except (ValueError, OSError, KeyError, TypeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    if args.shard:
        try:
            points = shard(points, *parse_shard(args.shard))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if not points:
        print("error: no points selected", file=sys.stderr)
        return 2
    if args.list:
        for p in points:
            print(p.id)
        print(f"{len(points)} points", file=sys.stderr)
        return 0
    if device.type == "cpu":
        points = [p for p in points if p.dtype != "tf32"]  # TF32 is a CUDA mode

    candidate_name = "custom" if candidates is not None else args.candidate
    if candidates is None:
        try:
            candidates = load_candidates(args.candidate)
        except Exception as e:  # noqa: BLE001
            print(f"error: cannot import the candidate {args.candidate!r}: "
                  f"{type(e).__name__}: {e}", file=sys.stderr)
            return 2

    t_start = time.perf_counter()
    environment = env.collect(device, candidate_name)
    info = environment["device"]
    budget = dataclasses.replace(BUDGETS[(device.type, preset or "standard")])
    if previous is not None:
        budget = timing.Budget(**previous["config"]["budget"])
    if args.budget is not None:
        budget.seconds = args.budget
    if previous is not None:
        ceil = previous["ceilings"]
    elif args.ceilings == "off":
        ceil = {"gemm_tflops": {}, "copy_gbps": None}
    else:
        ceil = ceilings_mod.measure(device, {p.dtype for p in points}, small=args.ceilings == "small")

    # The real candidate must run its own ops; stand-ins (torch, injected) have none.
    namespace = "rnnfuse" if candidate_name == "rnnfuse" else None
    points_out = run(points, device, candidates, budget, ceil, info, namespace, args.deadline_s)

    config = {"argv": list(sys.argv[1:] if argv is None else argv), "device": str(device),
              "budget": dataclasses.asdict(budget), "wall_s": None, "shard": args.shard}
    config["wall_s"] = round(time.perf_counter() - t_start, 2)
    results = report.build(points_out, environment, ceil, config, preset)
    if previous is not None:
        try:
            results = merge.merge([previous, results])
        except merge.MergeError as e:
            print(f"error: --resume-from: {e}", file=sys.stderr)
            return 2
    out = args.out or default_out_dir(info, preset)
    out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, out / "results.json")
    report.write_markdown(results, out / "report.md")
    pngs = [] if args.no_plots else plots.write(results, out)

    print(report.console(results))
    print(f"\nwrote {out / 'results.json'}, {out / 'report.md'}"
          + "".join(f", {p.name}" for p in pngs) + f"  ({config['wall_s']:.0f} s)")
    if any(p["status"] == "SKIPPED" and (p["error"] or "").startswith(BROKEN) for p in points_out):
        return 3  # first: the caller resumes (the point that broke it is an ERROR)
    return 1 if any(p["status"] in report.FAILED for p in results["points"]) else 0


def resumed_points(previous: dict) -> list[grid.Point]:
    """The points a run's results.json lists as SKIPPED, in its order."""
    fields = [f.name for f in dataclasses.fields(grid.Point)]
    points = [grid.Point(**{k: p[k] for k in fields}) for p in previous["points"]
              if p["status"] == "SKIPPED"]
    if not points:
        raise ValueError("--resume-from: that run left no point SKIPPED")
    return points


if __name__ == "__main__":
    sys.exit(main())
