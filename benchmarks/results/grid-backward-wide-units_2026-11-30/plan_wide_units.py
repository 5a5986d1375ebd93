"""Which training points' backward the planner now runs with more than 16
units per grid-tier CTA (J = 32 or 64 with K split 2 or 4: BwdPartition's
m-tiles), on an H100/H200's properties as the host reports them with both
tiers built (tests/test_persistent_plan.py H100_CLUSTERS). Beside it, the
plan with J <= 16 (the planner before this change): the grid tier's best of
the pins J=16 and J=8 (each with every K split and replica count), unless
the cluster backward's candidate models no slower (plan_backward's rule).
Times are the latency model's ([I], to be measured); the gather
column is the model's bytes a step gathers from L2, all CTAs together.

Run from the repository root, after the build:
    PYTHONPATH=. python benchmarks/results/grid-backward-wide-units_2026-11-30/plan_wide_units.py
"""
import json
from collections import Counter

import torch

import rnnfuse.ops  # noqa: F401
from benchmarks import grid

OPS = torch.ops.rnnfuse
H100C = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]
DTYPES = {"fp32": (torch.float32, False), "tf32": (torch.float32, True),
          "fp16": (torch.float16, False), "bf16": (torch.bfloat16, False)}


def bwd_plan(cell, dtype, H, B, T, pin="", cluster=True):
    d, tf32 = DTYPES[dtype]
    return json.loads(OPS.persistent_plan(cell, d, H, B, T, 0, 1, tf32, H100C, True, cluster,
                                          True, 1, True, pin))


def plan_before(cell, dtype, H, B, T):
    """The backward the planner chose with J <= 16 on the grid tier."""
    narrow = [q for q in (bwd_plan(cell, dtype, H, B, T, f"J={j}", cluster=False)
                          for j in (16, 8)) if q["tier"] != "per-step"]
    d, tf32 = DTYPES[dtype]
    c = json.loads(OPS.persistent_cluster_bwd_plan(cell, d, H, B, T, tf32, H100C, 1))
    if not narrow:
        return c if c["tier"] == "cluster" else bwd_plan(cell, dtype, H, B, T, "J=16", False)
    g = min(narrow, key=lambda q: q["us_per_step"])
    return c if c["tier"] == "cluster" and c["us_per_step"] <= g["us_per_step"] else g


def gather_mb(p, cell, H, B):
    """Bytes a grid-tier step gathers: (H / J) x S groups' parts x B rows x
    G*H / S columns (the cluster tier: '-')."""
    if p["tier"] != "grid":
        return "-"
    G = 4 if cell == "LSTM" else 3
    groups = -(-H // p["J"])
    return f"{groups * B * G * H * p['elem_bytes'] / 1e6:.1f}"


def describe(p, cell, H, B):
    if p["tier"] == "per-step":
        return "per-step -"
    if p["tier"] == "cluster":
        return f"cluster {p['us_per_step']:.3f} (P{p['P']} J{p['J']} R{p['R']})"
    return (f"grid {p['us_per_step']:.3f} (J{p['J']} S{p['ksplit']} R{p['R']} MT{p['MT']}, "
            f"{gather_mb(p, cell, H, B)} MB)")


points = [p for p in grid.preset("quick", "cuda") + grid.preset("standard", "cuda")
          if p.mode == "training" and not p.is_cell]
seen, tally = set(), Counter()
print("cell dtype H B | J <= 16: plan us (J S R MT, gather) | now | modelled speed-up")
for p in points:
    cell = p.cell.upper()
    key = (cell, p.dtype, p.H, p.B)
    if key in seen:
        continue
    seen.add(key)
    now = bwd_plan(cell, p.dtype, p.H, p.B, p.T)
    old = plan_before(cell, p.dtype, p.H, p.B, p.T)
    if now["tier"] == "grid" and now["J"] > 16:
        tally["J > 16 (grid)"] += 1
        gain = f"{old['us_per_step'] / now['us_per_step']:.2f}x" if old["tier"] != "per-step" else "-"
    else:
        tally[f"unchanged: {now['tier']}"] += 1
        gain = ""
    print(f"{cell} {p.dtype} {p.H} {p.B} | {describe(old, cell, p.H, p.B)} | "
          f"{describe(now, cell, p.H, p.B)} | {gain}")
print()
print(f"{len(seen)} distinct one-direction training points (cell, dtype, H, B):")
for k, n in sorted(tally.items()):
    print(f"  {k}: {n}")
