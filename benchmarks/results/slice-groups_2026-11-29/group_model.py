"""The cluster tier's step by slice group (1, 2, 4 slices per bracket): the
planner's model (plan.cpp, cluster_step_us: each bracket is the slowest of
MMAs, chain, W stream and epilogue, plus a barrier) beside the in-order
reading (a warp's epilogue follows its MMA chain: the slowest of MMAs,
chain and W stream, then the epilogue, then the barrier;
benchmarks/results/cluster-epilogue-order_2026-11-29/). Both from the
plan JSON's own terms ("brackets", "bracket_us"; all [I]); the grid tier's
model is printed beside.

Run from the repository root, after the build:
    PYTHONPATH=. python benchmarks/results/slice-groups_2026-11-29/group_model.py
"""
import json

import torch

import rnnfuse.ops  # noqa: F401
from benchmarks.gpu_check_report import in_order_us  # the report's reading of the same terms

OPS = torch.ops.rnnfuse
# An H100/H200 as the host reports it with the cluster kernels (test_persistent_plan.py).
H100C = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]


def plan(cell, dtype, H, B, T, tier, pin=""):
    return json.loads(OPS.persistent_plan(cell, dtype, H, B, T, 0, 1, True, H100C, tier == "grid",
                                          tier == "cluster", False, 1, True, pin))


print("cell dtype H B | pin | group pad smem | brackets | model us/step | in-order us/step "
      "| grid model")
for cell, dtype, H, B, T, pins in [
        ("LSTM", torch.float16, 768, 16, 1024, ["R=2,J=8,group=1", "R=2,J=8,group=2"]),
        ("GRU", torch.float16, 768, 16, 1024, ["R=2,group=1", "R=2,group=2"]),
        ("LSTM", torch.bfloat16, 512, 8, 100, ["group=1", "group=2", "group=4"]),
        ("LSTM", torch.bfloat16, 512, 64, 100, ["R=4,group=1", "R=4,group=2", "R=8,group=4"]),
        ("GRU", torch.bfloat16, 512, 64, 100, ["R=4,group=1", "R=4,group=2", "R=8,group=2",
                                                "R=8,group=4"])]:
    g = plan(cell, dtype, H, B, T, "grid")
    free = plan(cell, dtype, H, B, T, "cluster")
    for pin in pins:
        c = plan(cell, dtype, H, B, T, "cluster", pin)
        if c["tier"] != "cluster":
            print(f"{cell} {str(dtype)[6:]} {H} {B} | {pin} | no cluster plan: {c['reason']}")
            continue
        star = " (planner's choice)" if all(c[k] == free[k] for k in ("P", "R", "J", "group")) else ""
        print(f"{cell} {str(dtype)[6:]} {H} {B} | {pin} P={c['P']} NG={c['NG']} R={c['R']} | "
              f"{c['group']} {c['red_pad']} {c['smem_bytes']} | {c['brackets']} | "
              f"{c['us_per_step']:.3f} | {in_order_us(c):.3f} | "
              f"{g['us_per_step']:.3f} (P={g['P']} R={g['R']}){star}")
