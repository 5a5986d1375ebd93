"""The planner's choice for the quick preset's fp32 points (H=512, T=100) on
an H100/H200 as the host reports it (132 SMs, 227 KB shared memory opt-in,
cluster kernels built: 16 co-resident 8-CTA clusters, 7 of 16 CTAs):
exact fp32 (TF32 off, the FMA kernels) against TF32, forward and backward,
with the latency model's microseconds per step. Run from the repository
root: python benchmarks/results/persistent-fma_2026-11-28/plans.py"""
import json

import torch

import rnnfuse.ops  # noqa: F401

H100 = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]
KEYS = ("tier", "P", "J", "R", "grid", "hbuf_rows", "math", "us_per_step")

for cell in ("LSTM", "GRU"):
    for B in (8, 64, 256):
        for backward in (False, True):
            for tf32 in (False, True):
                p = json.loads(torch.ops.rnnfuse.persistent_plan(
                    cell, torch.float32, 512, B, 100, 0, 1, tf32, H100, True, True, backward))
                pick = {k: p.get(k) for k in KEYS}
                print(f"{cell:4s} B={B:3d} {'bwd' if backward else 'fwd'} "
                      f"{'tf32 ' if tf32 else 'exact'}: {json.dumps(pick)}")
