"""The backward planner's choice for the GPU standard preset's 32-bit shapes
(T=128, B in {1, 8, 16, 64, 256}, H in {256, 512, 768, 1024}; exact fp32 and
TF32) on an H100/H200 as the host reports it (132 SMs, 227 KB shared memory
opt-in): tier, K split (S CTAs per unit group), CTAs, replicas, h-buffer rows
and the latency model's microseconds per step. Before the split every shape
with G*H above 2048 (LSTM H >= 768, GRU H >= 768) ran the backward per step.
Run from the repository root:
python benchmarks/results/persistent-splitk_2026-11-28/plans.py"""
import json

import torch

import rnnfuse.ops  # noqa: F401

H100 = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]

for cell in ("LSTM", "GRU"):
    for tf32 in (False, True):
        for H in (256, 512, 768, 1024):
            cols = []
            for B in (1, 8, 16, 64, 256):
                p = json.loads(torch.ops.rnnfuse.persistent_plan(
                    cell, torch.float32, H, B, 128, 0, 1, tf32, H100, True, True, True))
                cols.append(f"B={B:<3d} " + (f"S{p['ksplit']} P{p['P']:<3d} R{p['R']} hb{p['hbuf_rows']:<2d} "
                                             f"{p['us_per_step']:7.2f}us" if p["tier"] == "grid"
                                             else "per-step" + " " * 19))
            print(f"{cell:4s} {'tf32' if tf32 else 'fp32'} H={H:<4d} " + " | ".join(cols))
# Beyond one CTA per SM even split 4 ways: still per step, with the reason.
for cell, dtype, H in (("LSTM", torch.float32, 1536), ("LSTM", torch.bfloat16, 1280)):
    p = json.loads(torch.ops.rnnfuse.persistent_plan(cell, dtype, H, 16, 128, 0, 1, True, H100,
                                                     True, True, True))
    print(f"{cell} {dtype} H={H}: {p['tier']}: {p['reason']}")
