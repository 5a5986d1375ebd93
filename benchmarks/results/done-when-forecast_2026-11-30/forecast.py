"""Issue 8's speed criteria forecast before any GPU has run the persistent
tiers: the planner's latency model ([I], never calibrated) for rnnfuse
against cuDNN as the H200 measured it on 2026-11-27 (torch 2.11, cuDNN
9.19; nvidia-h200_2026-11-27_gpu-check/: bench.json for the quick preset,
earlier_published_point_pre_pipelining.md for LSTM H=768 B=16 T=1024).

Per point, rnnfuse's time is forecast as T x (recurrence + GEMMs):
- recurrence: the plan's us per step (the forward's; training: forward +
  backward), on an H100/H200's properties as the host reports them with both
  tiers built (tests/test_persistent_plan.py H100_CLUSTERS);
- GEMMs at the GEMM ceiling the same H200 run measured (8192^3: bf16 798,
  exact fp32 51 TFLOP/s; fp16 taken as bf16): the input projection
  2 T B I G H; training adds dX and dW_ih (2 T B I G H each) and dW_hh
  (2 T B H G H).
Left out, so the forecast is optimistic: GEMMs below their ceiling at these
shapes, the elementwise kernels (bias gradients, casts), launch gaps.
"ratio" = cuDNN ms / forecast ms (above 1: rnnfuse faster); "rec only" the
same without the GEMMs (an upper bound on the ratio the model allows).

Run from the repository root, after the build:
    PYTHONPATH=.:tests python benchmarks/results/done-when-forecast_2026-11-30/forecast.py
"""
import json
import math
import re
from pathlib import Path

import torch

import rnnfuse.ops  # noqa: F401
from test_persistent_plan import H100_CLUSTERS

H200 = Path(__file__).resolve().parents[1] / "nvidia-h200_2026-11-27_gpu-check"
DTYPES = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
          "fp16": (torch.float16, False), "bf16": (torch.bfloat16, False)}
GATES = {"lstm": 4, "gru": 3}


def plan(cell, dtype, H, B, T, backward):
    torch_dtype, tf32 = DTYPES[dtype]
    return json.loads(torch.ops.rnnfuse.persistent_plan(
        cell.upper(), torch_dtype, H, B, T, 0, 1, tf32, H100_CLUSTERS, True, True, backward, 1,
        True, ""))


def gemm_flops(cell, T, B, I, H, training):
    gh = GATES[cell] * H
    return 2 * T * B * gh * ((3 * I + H) if training else I)


def forecast(pt, ceilings):
    """(label, us/step recurrence, us/step GEMMs) or None where a pass plans per step."""
    fwd = plan(pt["cell"], pt["dtype"], pt["H"], pt["B"], pt["T"], False)
    passes = [fwd]
    if pt["mode"] == "training":
        passes.append(plan(pt["cell"], pt["dtype"], pt["H"], pt["B"], pt["T"], True))
    if any(p["tier"] not in ("grid", "cluster") for p in passes):
        return None
    rec = sum(p["us_per_step"] for p in passes)
    tflops = ceilings["fp32" if pt["dtype"] == "fp32" else "bf16"]
    gemm = gemm_flops(pt["cell"], pt["T"], pt["B"], pt["I"], pt["H"],
                      pt["mode"] == "training") / (tflops * 1e12) / pt["T"] * 1e6
    label = "+".join(p["tier"] for p in passes)
    return label, rec, gemm


def headline_points():
    """The published point's four rows as the H200 measured cuDNN."""
    text = (H200 / "earlier_published_point_pre_pipelining.md").read_text()
    out = []
    for m in re.finditer(r"^\| lstm \| (fp16|bf16) \| (inference|training) \| 1024 \| 16 \| 768 "
                         r"\| 768 \| 1 \| uni \| (\w+) \| ([\d.]+) \|", text, re.M):
        out.append({"cell": "lstm", "dtype": m.group(1), "mode": m.group(2), "T": 1024, "B": 16,
                    "I": 768, "H": 768, "algo": m.group(3), "cudnn_ms": float(m.group(4))})
    assert len(out) == 4, out
    return out


def quick_points():
    bench = json.loads((H200 / "bench.json").read_text())
    out = []
    for p in bench["points"]:
        assert p["layers"] == 1 and not p["bidirectional"], p["id"]
        out.append({"cell": p["cell"], "dtype": p["dtype"], "mode": p["mode"], "T": p["T"],
                    "B": p["B"], "I": p["I"], "H": p["H"], "algo": p["cudnn_algo"]["forward"],
                    "cudnn_ms": p["baseline"]["median_ms"]})
    return out, bench["ceilings"]["gemm_tflops"]


def table(points, ceilings):
    print("| cell | dtype | mode | B | cuDNN algo | cuDNN ms | tiers | rec us/step | GEMM us/step "
          "| forecast ms | ratio | rec only |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for pt in points:
        f = forecast(pt, ceilings)
        if f is None:
            print(f"| {pt['cell']} | {pt['dtype']} | {pt['mode']} | {pt['B']} | {pt['algo']} | "
                  f"{pt['cudnn_ms']:.3f} | per-step | - | - | - | - | - |")
            continue
        label, rec, gemm = f
        ms = pt["T"] * (rec + gemm) / 1000
        ratio, bound = pt["cudnn_ms"] / ms, pt["cudnn_ms"] / (pt["T"] * rec / 1000)
        rows.append((pt, ratio))
        print(f"| {pt['cell']} | {pt['dtype']} | {pt['mode']} | {pt['B']} | {pt['algo']} | "
              f"{pt['cudnn_ms']:.3f} | {label} | {rec:.3f} | {gemm:.3f} | {ms:.3f} | "
              f"{ratio:.2f} | {bound:.2f} |")
    return rows


def geomean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def main():
    quick, ceilings = quick_points()
    print("## The published point (LSTM H=768 B=16 T=1024); criteria: fp16 forward and "
          "forward+backward >= 1.3x, bf16 >= 5x\n")
    table(headline_points(), ceilings)
    print("\n## Quick preset (H=512, T=100); criteria: every point >= 1.0x, geomean >= 1.5x "
          "inference, >= 1.3x training\n")
    rows = table(quick, ceilings)
    print()
    for mode in ("inference", "training"):
        ratios = [r for pt, r in rows if pt["mode"] == mode]
        print(f"{mode}: {len(ratios)} points forecast, geomean {geomean(ratios):.2f}, "
              f"min {min(ratios):.2f}")


main()
