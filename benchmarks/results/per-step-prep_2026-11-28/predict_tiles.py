"""What the per-step tile planner (csrc/step_plan.h) will pick on an H100/H200
for benchmarks/step_check.py's points, from this build's sm_90 code, before
any GPU has run it (predictions for NOTES.md).

  python benchmarks/results/per-step-prep_2026-11-28/predict_tiles.py [--sms 132]

Each step kernel's tile comes from its mangled name, its registers from
`cuobjdump -res-usage` (sm_90), its dynamic shared memory from the GEMM's
smem_bytes formula (tile_gemm.cuh); residency per SM is computed as the
occupancy calculator does for sm_90 (64K registers allocated per warp in
units of 256, 2048 threads, 32 blocks, 228 KB shared memory with 1 KB
reserved per block). On the GPU the occupancy API answers instead. Then the
planner (rnnfuse::step_tile_plan, the C++ the launches call) picks a tile per
point, beside the rule before it (64-row tiles above 32 rows), with the
model's round trips per step for both.
"""
from __future__ import annotations

import argparse
import glob
import math
import os
import re
import subprocess
import sys

import torch

import rnnfuse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "tests"))
from test_persistent_build import find_cuobjdump, per_arch  # noqa: E402

NAME = re.compile(r"_ZN7rnnfuse4cuda\d+(lstm|gru)_(fwd|bwd)_step_kernelI(\w+?)NS0_\d+"
                  r"(MmaGemm|SimtGemm)I(?:S3_|[fd])?((?:Li\d+E)+)EELi(\d+)E")
ELEM = {"N3c104HalfE": 2, "N3c108BFloat16E": 2, "f": 4, "d": 8}
DTYPE = {"N3c108BFloat16E": "bfloat16", "f": "float32", "N3c104HalfE": "float16", "d": "float64"}


def smem_and_threads(gemm, scalar, p):
    if gemm == "MmaGemm":
        bm, bn, bk, warps = p
        elem = 4 if scalar == "f" else 2
        pad = 4 if scalar == "f" else 8
        tiles = (bm + bn) * (bk + pad) * elem
        split = 1 if (bm // 16) * (bn // 16) >= warps else warps // ((bm // 16) * (bn // 16))
        return max(tiles, split * bm * (bn + 4) * 4), 32 * warps
    bm, bn, bk, tm, tn = p
    acc = 8 if scalar == "d" else 4
    return max(bk * ((bm + 1) + (bn + 1)) * acc, bm * (bn + 1) * acc), (bm // tm) * (bn // tn)


def resident(regs, threads, smem):
    warps = math.ceil(threads / 32)
    per_warp = math.ceil(regs * 32 / 256) * 256
    by_regs = (65536 // per_warp) // warps
    return min(32, 2048 // threads, by_regs, (228 * 1024) // (smem + 1024))


def tiles_from_build():
    so = glob.glob(os.path.join(os.path.dirname(rnnfuse.__file__), "_C*.so"))[0]
    res = subprocess.run([find_cuobjdump(), "-res-usage", so], check=True, capture_output=True,
                         text=True).stdout
    out = {}
    for (arch, name), block in per_arch(res, re.compile(r"Function (\S+):")).items():
        m = NAME.match(name)
        if arch != "sm_90" or not m:
            continue
        cell, way, scalar, gemm, params, j = m.groups()
        p = [int(v) for v in re.findall(r"Li(\d+)E", params)]
        regs = int(re.search(r"REG:(\d+)", block).group(1))
        smem, threads = smem_and_threads(gemm, scalar, p)
        out.setdefault((cell, way, DTYPE[scalar], gemm), []).append(
            {"rows": p[0], "units": int(j), "k_chunk": p[2], "regs": regs, "threads": threads,
             "smem": smem, "blocks_per_sm": resident(regs, threads, smem)})
    for v in out.values():
        v.sort(key=lambda t: t["rows"])  # [small, large]
    return out


def cost(t, rows, units, k, dirs, sms):
    blocks = math.ceil(units / t["units"]) * math.ceil(rows / t["rows"]) * dirs
    return math.ceil(blocks / (sms * t["blocks_per_sm"])) * (math.ceil(k / t["k_chunk"]) if k else 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sms", type=int, default=132)
    args = ap.parse_args()
    table = tiles_from_build()
    print("tiles (sm_90 build): rows x units, k_chunk, registers, threads, smem B, resident/SM")
    for key in sorted(table):
        print(" ", *key, " | ".join(f"{t['rows']}x{t['units']} k{t['k_chunk']} r{t['regs']} "
                                   f"t{t['threads']} s{t['smem']} b{t['blocks_per_sm']}"
                                   for t in table[key]))
    H = 512
    print(f"\nplanner vs threshold at H={H} on {args.sms} SMs (round trips per step, model):")
    print("cell dtype way B dirs | threshold tile (trips) | planner tile (trips) | predicted ratio")
    for cell, dtype, gemm in (("lstm", "bfloat16", "MmaGemm"), ("gru", "bfloat16", "MmaGemm"),
                              ("lstm", "float32", "SimtGemm")):
        for way in ("fwd", "bwd"):
            tiles = table[(cell, way, dtype, gemm)]
            k = H if way == "fwd" else (4 if cell == "lstm" else 3) * H
            for B in (8, 16, 64, 256):
                for dirs in (1, 2):
                    flat = [v for t in tiles for v in (t["rows"], t["units"], t["k_chunk"],
                                                       t["blocks_per_sm"])]
                    pick = torch.ops.rnnfuse.step_tile_plan(flat, B, H, k, dirs, args.sms)
                    old = 1 if B > 32 else 0
                    c_old = cost(tiles[old], B, H, k, dirs, args.sms)
                    c_new = cost(tiles[pick], B, H, k, dirs, args.sms)
                    name = ("small", "large")
                    print(f"{cell} {dtype} {way} B={B} dirs={dirs} | {name[old]} ({c_old}) | "
                          f"{name[pick]} ({c_new}) | {c_old / c_new:.2f}")


if __name__ == "__main__":
    main()
