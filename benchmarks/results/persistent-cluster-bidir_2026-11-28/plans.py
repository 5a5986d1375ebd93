"""A bidirectional layer's forward plans on an H100/H200 as the host reports
it with the cluster kernels built (132 SMs, 16 co-resident 8-CTA clusters,
7 of 16 CTAs): the plan for both directions in one launch (directions=2,
now either tier) against one direction's plan, and the launches the host
takes (loops_persistent.cpp bidir_launches: one launch where its modelled
step is no slower than two single-direction steps). The standard preset's
bidirectional points are T=128, B=64, H=512; the other sizes show where the
cluster tier's two-direction launch stops fitting. Run from the repository
root: python benchmarks/results/persistent-cluster-bidir_2026-11-28/plans.py"""
import json

import torch

import rnnfuse.ops  # noqa: F401

H100_CLUSTERS = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]


def plan(cell, dtype, H, B, tf32, directions):
    return json.loads(torch.ops.rnnfuse.persistent_plan(cell, dtype, H, B, 128, 0, 1, tf32,
                                                        H100_CLUSTERS, True, True, False,
                                                        directions))


def brief(p):
    if p["tier"] == "per-step":
        return "per-step"
    return f"{p['tier']:7s} P{p['P']:<3d} R{p['R']} {p['us_per_step']:6.2f}us"


for cell in ("LSTM", "GRU"):
    for name, dtype, tf32 in (("bf16", torch.bfloat16, True), ("fp16", torch.float16, True),
                              ("tf32", torch.float32, True), ("fp32", torch.float32, False)):
        for H, B in ((512, 64), (256, 16), (512, 256), (768, 16), (1024, 64)):
            one, both = plan(cell, dtype, H, B, tf32, 1), plan(cell, dtype, H, B, tf32, 2)
            ok = one["tier"] != "per-step"
            launches = (1 if both["tier"] != "per-step" and
                        (not ok or both["us_per_step"] <= 2 * one["us_per_step"]) else 2 if ok else 0)
            print(f"{cell:4s} {name} H={H:<4d} B={B:<3d} both: {brief(both):28s} one: {brief(one):28s}"
                  f" -> {launches} launch(es)")
