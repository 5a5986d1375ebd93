"""The cluster backward's design candidate (csrc/persistent/cluster_bwd_layout.h,
plan.cpp plan_cluster_backward; no kernel yet) beside the grid tier's backward
plan, at the GPU check's training points, on an H100/H200's properties as the
host reports them with the cluster kernels. All times are the latency model's
([I], to be measured). The forward plan and its in-order reading are printed
too, for a training step's recurrent total (forward + backward; the GEMMs
around the loop are not in it).

Run from the repository root, after the build:
    PYTHONPATH=. python benchmarks/results/cluster-backward-design_2026-11-29/design_model.py
"""
import json

import torch

import rnnfuse.ops  # noqa: F401
from benchmarks import grid
from benchmarks.gpu_check_report import in_order_us

OPS = torch.ops.rnnfuse
# An H100/H200 with the cluster kernels (tests/test_persistent_plan.py H100_CLUSTERS).
H100C = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]
DTYPES = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
          "fp16": (torch.float16, False), "bf16": (torch.bfloat16, False)}


def plan(cell, dtype, H, B, T, backward, directions):
    # The backward without the cluster tier: the grid tier's plan, as
    # make_bwd_plan gave it when this was written (it now compares the two).
    d, tf32 = DTYPES[dtype]
    return json.loads(OPS.persistent_plan(cell, d, H, B, T, 0, 1, tf32, H100C, True, not backward,
                                          backward, directions, True, ""))


def fmt(us):
    return "-" if us is None else f"{us:.3f}"


points = [p for p in grid.preset("quick", "cuda") + grid.preset("standard", "cuda")
          if p.mode == "training" and not p.is_cell]
seen = set()
print("cell dtype H B dir | fwd tier us (in-order) | bwd grid us | cluster bwd: P J R smem_KB "
      "us [mma chain w_smem epilogue push] | bwd grid/cluster | fwd+bwd us: grid bwd, cluster bwd")
for p in points:
    cell = p.cell.upper()
    dirs = 2 if p.bidirectional else 1
    key = (cell, p.dtype, p.H, p.B, dirs)
    if key in seen:
        continue
    seen.add(key)
    f = plan(cell, p.dtype, p.H, p.B, p.T, False, dirs)
    g = plan(cell, p.dtype, p.H, p.B, p.T, True, dirs)
    d, tf32 = DTYPES[p.dtype]
    c = json.loads(OPS.persistent_cluster_bwd_plan(cell, d, p.H, p.B, p.T, tf32, H100C, dirs))
    f_us = f.get("us_per_step")
    f_in = in_order_us(f) or f_us
    g_us = g.get("us_per_step")
    c_us = c.get("us_per_step")
    head = f"{cell} {p.dtype} {p.H} {p.B} {dirs} | {f['tier']} {fmt(f_us)} ({fmt(f_in)}) | " \
           f"{g['tier']} {fmt(g_us)} | "
    if c["tier"] != "cluster":
        print(head + f"none: {c['reason']}")
        continue
    t = c["terms_us"]
    ratio = f"{g_us / c_us:.2f}" if g_us else "-"
    tot = (f"{f_in + g_us:.3f}" if f_in and g_us else "-") + ", " + \
          (f"{f_in + c_us:.3f}" if f_in else "-")
    print(head + f"{c['P']} {c['J']} {c['R']} {c['smem_bytes'] / 1024:.0f} {c_us:.3f} "
          f"[{t['mma']:.2f} {t['chain']:.2f} {t['w_smem']:.2f} {t['epilogue']:.2f} "
          f"{t['push']:.2f}] | {ratio} | {tot}")
