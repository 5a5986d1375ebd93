"""The planner's choice at 768 points, to compare two builds: LSTM and GRU;
fp16, bf16 and TF32; H = 128..1024 (step 128); B = 1..256 (8 sizes);
forward and backward; the H100 cluster device of the tests. smem_bytes is
left out (the push spans add 16 B per group by design).

usage: PYTHONPATH=.:tests python plan_sweep.py dump OUT.json   (with a build)
       python plan_sweep.py compare BEFORE.json AFTER.json
"""
from __future__ import annotations

import json
import sys
from collections import Counter


def dump(path):
    import torch
    from test_persistent_plan import H100_CLUSTERS, plan
    out = {}
    for cell in ("LSTM", "GRU"):
        for dt in (torch.float16, torch.bfloat16, torch.float32):
            for H in range(128, 1025, 128):
                for B in (1, 4, 8, 16, 32, 64, 128, 256):
                    for bwd in (False, True):
                        p = plan(cell, dt, H, B, 1024, dev=H100_CLUSTERS, cluster=True,
                                 backward=bwd)
                        p.pop("smem_bytes", None)
                        out[f"{cell} {dt} {H} {B} {bwd}"] = p
    json.dump(out, open(path, "w"), sort_keys=True, indent=0, default=str)


def compare(before, after):
    a, b = json.load(open(before)), json.load(open(after))
    assert a.keys() == b.keys(), "different points"
    differ = [k for k in a if a[k] != b[k]]
    print(f"{len(a)} points, {len(differ)} plans differ (smem_bytes aside)")
    for k in differ:
        print(f"  {k}: {a[k]} -> {b[k]}")
    print("tiers after:", dict(Counter(v.get("tier") for v in b.values())))


if __name__ == "__main__":
    dump(sys.argv[2]) if sys.argv[1] == "dump" else compare(sys.argv[2], sys.argv[3])
