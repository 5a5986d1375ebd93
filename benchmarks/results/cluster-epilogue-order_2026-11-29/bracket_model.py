"""The cluster tier's modelled step (plan.cpp, cluster_step_us) beside two
readings of a bracket: the planner's "slowest of MMAs, chain, W stream,
epilogue" (overlap), and in-order issue, where a warp's epilogue follows its
MMA chain: before this change (the partial sums stored right after the
MMAs: chain + one MMA latency for the store's wait + epilogue) and after it
(sums stored after the epilogue: chain + epilogue). Every constant is
plan.cpp's ([I]); the per-point grid-tier model is printed beside.

Run from the repository root, after the build:
    python benchmarks/results/cluster-epilogue-order_2026-11-29/bracket_model.py
"""
import json
import math

import torch

import rnnfuse.ops  # noqa: F401

OPS = torch.ops.rnnfuse
CLOCK = 1.755e9
MMA_FLOPS16 = 4.5e12
SMEM_BW = 128 * CLOCK
MMA_LAT = 32 / CLOCK * 1e6
EPILOGUE, BARRIER = 0.08, 0.02
KROWS, WARPS, MTILES = 32, 8, 2
# An H100/H200 as the host reports it with the cluster kernels (test_persistent_plan.py).
H100C = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]


def plan(cell, dtype, H, B, T, tier):
    return json.loads(OPS.persistent_plan(cell, dtype, H, B, T, 0, 1, True, H100C, tier == "grid",
                                          tier == "cluster", False, 1, True, ""))


def brackets(p):
    eb, rows = p["elem_bytes"], p["hbuf_rows"]
    chunks = math.ceil(rows / p["chunk"]) if rows else 1
    n_tiles = math.ceil(min(rows, p["chunk"]) / 8)
    rate = MMA_FLOPS16 if eb == 2 else MMA_FLOPS16 / 2
    mma = 2.0 * KROWS * p["KT"] * p["kk"] * n_tiles * 8 / rate * 1e6
    chain = math.ceil(p["KT"] / WARPS) * MMA_LAT
    w_smem = WARPS * (p["w_smem_frags"] // MTILES) * MTILES * 512 / p["NG"] / SMEM_BW * 1e6
    overlap = max(mma, chain, w_smem, EPILOGUE) + BARRIER
    after = max(mma, chain, w_smem) + EPILOGUE + BARRIER
    before = after + MMA_LAT
    return chunks * (p["NG"] + 1), overlap, before, after


print("cell dtype H B | brackets | cluster model us/step | in-order before | in-order after "
      "| grid model")
for cell, dtype, H, B, T in [("LSTM", torch.float16, 768, 16, 1024),
                             ("LSTM", torch.bfloat16, 768, 16, 1024),
                             ("LSTM", torch.bfloat16, 512, 8, 100),
                             ("LSTM", torch.bfloat16, 512, 64, 100),
                             ("GRU", torch.bfloat16, 512, 64, 100),
                             ("GRU", torch.float16, 768, 16, 1024)]:
    c, g = plan(cell, dtype, H, B, T, "cluster"), plan(cell, dtype, H, B, T, "grid")
    if c["tier"] != "cluster":
        print(cell, dtype, H, B, "| no cluster plan:", c["reason"])
        continue
    n, overlap, before, after = brackets(c)
    rest = c["us_per_step"] - n * overlap  # handoff, fixed, exposed push
    print(f"{cell} {str(dtype)[6:]} {H} {B} | {n} x (P={c['P']} NG={c['NG']} R={c['R']}) | "
          f"{c['us_per_step']:.3f} | {rest + n * before:.3f} | {rest + n * after:.3f} | "
          f"{g['us_per_step']:.3f} (P={g['P']} R={g['R']})")
