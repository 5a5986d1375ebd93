"""Which inference points' forward the planner now runs with 16 units per
grid-tier CTA (3 or 4 m-tiles: layout.h Partition::mtiles()), on an
H100/H200's properties as the host reports them with both tiers built
(tests/test_persistent_plan.py H100_CLUSTERS). Beside it, the plan with a
slice's units at most (the planner before this change): the grid tier's best
of the pins J = 8 and 4 (LSTM) or 10 and 5 (GRU), each with every replica
count, unless the cluster tier's candidate models no slower (plan_forward's
rule). Times are the latency model's ([I], to be measured); MB is the
model's bytes a step gathers from L2, all CTAs together: (H / J) CTAs per
replica each gather the replica's rows of h, so P x B x H elements.

Run from the repository root, after the build:
    PYTHONPATH=.:tests python benchmarks/results/grid-forward-wide-units_2026-11-30/plan_wide_units.py
"""
import json
from collections import Counter

import torch

from benchmarks import grid
from test_persistent_plan import H100_CLUSTERS
from test_persistent_plan_runs import DTYPES


def forward_plan(point, pin="", tiers=(True, True)):
    """The forward plan of a preset point; tiers: (grid built, cluster built)."""
    dtype, tf32 = DTYPES[point.dtype]
    return json.loads(torch.ops.rnnfuse.persistent_plan(
        point.cell.upper(), dtype, point.H, point.B, point.T, 0, 1, tf32, H100_CLUSTERS, *tiers,
        False, 1, True, pin))


def slice_units_plan(point):
    """What plan_forward chose before J = 16 was a candidate."""
    j = 8 if point.cell.upper() == "LSTM" else 10
    pinned = [forward_plan(point, f"J={u}", (True, False)) for u in (j, j // 2)]
    grid_best = min((q for q in pinned if q["tier"] == "grid"), default=None,
                    key=lambda q: q["us_per_step"])
    cluster = forward_plan(point, tiers=(False, True))
    if grid_best is None or (cluster["tier"] == "cluster"
                             and cluster["us_per_step"] <= grid_best["us_per_step"]):
        return cluster
    return grid_best


def label(q, point):
    if q["tier"] == "per-step":
        return "per-step -"
    if q["tier"] == "cluster":
        return f"cluster {q['us_per_step']:.3f} (P{q['P']} J{q['J']} R{q['R']})"
    mb = q["P"] * point.B * point.H * q["elem_bytes"] / 1e6
    return f"grid {q['us_per_step']:.3f} (J{q['J']} R{q['R']} MT{q['MT']}, {mb:.1f} MB)"


def main():
    presets = grid.preset("quick", "cuda") + grid.preset("standard", "cuda")
    distinct = {(p.cell.upper(), p.dtype, p.H, p.B): p for p in reversed(presets) if not p.is_cell}
    counts = Counter()
    print("cell dtype H B | J <= slice: plan us (J R MT, gather) | now | modelled speed-up")
    for key, point in sorted(distinct.items(), key=lambda kv: presets.index(kv[1])):
        now, before = forward_plan(point), slice_units_plan(point)
        wide = now["tier"] == "grid" and now["J"] == 16
        if not wide:
            assert label(now, point) == label(before, point), (key, now, before)
        counts["J = 16 (grid)" if wide else f"unchanged: {now['tier']}"] += 1
        gain = f"{before['us_per_step'] / now['us_per_step']:.2f}x" if wide else ""
        print(" ".join(map(str, key)), "|", label(before, point), "|", label(now, point), "|", gain)
    print(f"\n{len(distinct)} distinct one-direction forward points (cell, dtype, H, B):")
    for k, n in sorted(counts.items()):
        print(f"  {k}: {n}")


main()
