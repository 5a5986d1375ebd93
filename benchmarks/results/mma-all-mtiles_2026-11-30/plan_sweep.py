"""The planner's choice and its modelled step at 768 points, to compare two
builds: the points and the dump of ../cluster-bracket-setup_2026-11-30/
plan_sweep.py (LSTM and GRU; fp16, bf16 and TF32; H = 128..1024; B = 1..256;
forward and backward; smem_bytes left out). `compare` lists the points whose
plan changed apart from its modelled time (tier, partition, ...), then the
modelled times that changed, by tier.

usage: PYTHONPATH=.:tests python plan_sweep.py dump OUT.json   (with a build)
       python plan_sweep.py compare BEFORE.json AFTER.json
"""
from __future__ import annotations

import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path


def dump(path):
    src = Path(__file__).resolve().parent.parent / "cluster-bracket-setup_2026-11-30" / "plan_sweep.py"
    spec = importlib.util.spec_from_file_location("bracket_plan_sweep", src)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    sweep.dump(path)


def compare(before, after):
    a, b = json.load(open(before)), json.load(open(after))
    assert a.keys() == b.keys(), "different points"
    timeless = lambda p: {k: v for k, v in p.items() if k not in ("us_per_step", "terms_us")}  # noqa: E731
    moved = [k for k in a if timeless(a[k]) != timeless(b[k])]
    print(f"{len(a)} points, {len(moved)} plans differ apart from their modelled time")
    for k in moved:
        print(f"  {k}: {a[k]} -> {b[k]}")
    by_tier = defaultdict(list)
    for k in a:
        if a[k].get("us_per_step") != b[k].get("us_per_step"):
            pass_ = "bwd" if k.endswith("True") else "fwd"
            by_tier[f"{b[k]['tier']} {pass_}"].append((k, a[k]["us_per_step"], b[k]["us_per_step"]))
    for tier, rows in sorted(by_tier.items()):
        ratios = [new / old for _, old, new in rows]
        print(f"{tier}: {len(rows)} modelled steps changed, after/before {min(ratios):.3f} .. "
              f"{max(ratios):.3f}")
        for k, old, new in rows:
            print(f"    {k}: {old} -> {new} us (MT {b[k].get('MT')})")


if __name__ == "__main__":
    {"dump": dump, "compare": compare}[sys.argv[1]](*sys.argv[2:])
