"""Plans for both directions in one launch (directions=2) against one
direction per launch, at the standard preset's bidirectional points (H=512,
B=64, T=128) and a few others, on an H100/H200 as the host reports it (132
SMs). Run from the repository root:
python benchmarks/results/persistent-bidir_2026-11-28/plans.py"""
import json

import torch

import rnnfuse.ops  # noqa: F401

H100 = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]
DTYPES = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
          "bf16": (torch.bfloat16, True)}
KEYS = ("tier", "P", "J", "R", "grid", "hbuf_rows", "us_per_step")

for cell in ("LSTM", "GRU"):
    for name, (dtype, tf32) in DTYPES.items():
        for H, B in ((512, 64), (256, 16), (768, 16)):
            for backward in (False, True):
                row = []
                # one direction (cluster tier allowed), one direction on the grid
                # tier (strided column blocks), both directions in one launch
                for dirs, cluster in ((1, True), (1, False), (2, False)):
                    p = json.loads(torch.ops.rnnfuse.persistent_plan(
                        cell, dtype, H, B, 128, 0, 1, tf32, H100, True, cluster, backward, dirs))
                    row.append({k: p.get(k) for k in KEYS} if p["tier"] != "per-step"
                               else {"tier": "per-step", "reason": p["reason"][:60]})
                print(f"{cell:4s} {name} H={H:3d} B={B:3d} {'bwd' if backward else 'fwd'}: "
                      f"one direction {json.dumps(row[0])}  |  one, grid {json.dumps(row[1])}  |  "
                      f"both {json.dumps(row[2])}")
