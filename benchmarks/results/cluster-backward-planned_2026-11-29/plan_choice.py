"""Which backward the planner now picks (make_bwd_plan with the cluster
tier built) at every training point of both GPU presets, on an H100/H200's
properties as the host reports them with the cluster kernels
(tests/test_persistent_plan.py H100_CLUSTERS), beside the grid-only plan it
picked before. Times are the latency model's ([I], to be measured).

A bidirectional layer's op: the host (loops_persistent.cpp bidir_launches)
runs both directions in one launch when that plan (directions=2: grid tier
only, the cluster backward runs one direction per launch) models no slower
than two one-direction steps, else one launch per direction on its own
tier; the rule is repeated here.

Run from the repository root, after the build:
    PYTHONPATH=. python benchmarks/results/cluster-backward-planned_2026-11-29/plan_choice.py
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


def bwd_plan(cell, dtype, H, B, T, directions, cluster):
    d, tf32 = DTYPES[dtype]
    return json.loads(OPS.persistent_plan(cell, d, H, B, T, 0, 1, tf32, H100C, True, cluster,
                                          True, directions, True, ""))


def bidir_path(both, one):
    """The host's choice for a bidirectional op (bidir_launches)."""
    if both["tier"] != "per-step" and (one["tier"] == "per-step"
                                       or both["us_per_step"] <= 2 * one["us_per_step"]):
        return f"{both['tier']} (one launch)"
    return f"{one['tier']} (per direction)" if one["tier"] != "per-step" else "per-step"


def fmt(p):
    return "-" if p["tier"] == "per-step" else f"{p['us_per_step']:.3f}"


points = [p for p in grid.preset("quick", "cuda") + grid.preset("standard", "cuda")
          if p.mode == "training" and not p.is_cell]
seen, tally = set(), Counter()
print("cell dtype H B dir | before: tier us | now: tier us (P J R) | changed")
for p in points:
    cell, dirs = p.cell.upper(), 2 if p.bidirectional else 1
    key = (cell, p.dtype, p.H, p.B, dirs)
    if key in seen:
        continue
    seen.add(key)
    old1, new1 = (bwd_plan(cell, p.dtype, p.H, p.B, p.T, 1, c) for c in (False, True))
    if dirs == 2:
        old2, new2 = (bwd_plan(cell, p.dtype, p.H, p.B, p.T, 2, c) for c in (False, True))
        before, now = bidir_path(old2, old1), bidir_path(new2, new1)
        pick = new2 if "one launch" in now else new1
        line = (f"{cell} {p.dtype} {p.H} {p.B} 2 | {before} | {now} "
                f"{fmt(pick)} ({pick.get('P', '-')} {pick.get('J', '-')} {pick.get('R', '-')})")
    else:
        before, now = old1["tier"], new1["tier"]
        line = (f"{cell} {p.dtype} {p.H} {p.B} 1 | {before} {fmt(old1)} | {now} {fmt(new1)} "
                f"({new1.get('P', '-')} {new1.get('J', '-')} {new1.get('R', '-')})")
    changed = before != now
    tally[(dirs, before, now)] += 1
    print(line + (" | CHANGED" if changed else " |"))
print()
print(f"{len(seen)} distinct training points (cell, dtype, H, B, directions):")
for (dirs, before, now), n in sorted(tally.items()):
    print(f"  directions={dirs}: {before} -> {now}: {n}")

# Why the one-direction points that stay on the grid tier do: the cluster
# backward's candidate alone (persistent_cluster_bwd_plan) at each.
why = Counter()
for cell, dtype, H, B, dirs in sorted(seen):
    if dirs != 1:
        continue
    T = next(p.T for p in points if (p.cell.upper(), p.dtype, p.H, p.B) == (cell, dtype, H, B))
    if bwd_plan(cell, dtype, H, B, T, 1, True)["tier"] == "cluster":
        continue
    d, tf32 = DTYPES[dtype]
    c = json.loads(OPS.persistent_cluster_bwd_plan(cell, d, H, B, T, tf32, H100C, 1))
    why["a candidate, modelled slower" if c["tier"] == "cluster" else c["reason"]] += 1
print()
print("one-direction points left on the grid tier, by reason:")
for reason, n in sorted(why.items(), key=lambda kv: -kv[1]):
    print(f"  {n}: {reason}")
