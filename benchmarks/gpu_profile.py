"""The workloads benchmarks/gpu_profile.sh runs under ncu, one per mode, at
the issue's published point (LSTM fp16 H=768 B=16) with T=64 (enough steps
to amortize the launch's prologue, few enough for ncu's replays):

  fwd  one inference forward on the cluster tier, then one on the grid tier,
       then one on the grid tier with h exchanged through LL words
       (RNNFUSE_PERSISTENT_EXCHANGE=ll)
  bwd  one training step with both passes on the grid tier, then one with
       both exchanging through LL words (ncu profiles the two backward
       kernels)
  xch  the grid tier's exchange alone (48 CTAs), the same with the flag in
       the data (LL), then the cluster tier's (16-CTA clusters, 2 replicas):
       no math, the floor a step sits on
  wide the quick preset's widest batch instead (LSTM bf16 H=512 B=256,
       T=16): one training step, both passes on the grid tier, where the
       epilogue's global accesses take one sector per batch row of a warp
       (benchmarks/results/epilogue-coalescing_2026-12-01: 12-14x the
       sectors a unit-minor map would; ncu's L1/L2 sector counts and
       throttle stalls say what that costs)

Each mode's kernels, in launch order, are the ones KERNELS[mode] matches.
"""
from __future__ import annotations

import os
import sys

import torch

H, B, T = 768, 16, 64
KERNELS = {"fwd": r"persist_(cluster|fwd|fwd_ll)_kernel", "bwd": r"persist_bwd_(ll_)?kernel",
           "xch": r"persist_(cluster_|ll_)?exchange_kernel", "wide": r"persist_(fwd|bwd)_kernel"}
LAUNCHES = {"fwd": 3, "bwd": 2, "xch": 3, "wide": 2}
WIDE_H, WIDE_B, WIDE_T = 512, 256, 16


def main(mode: str) -> int:
    import rnnfuse
    torch.manual_seed(0)
    os.environ["RNNFUSE_PERSISTENT"] = "1"
    if mode == "xch":
        y = torch.zeros(200 * B, H, device="cuda", dtype=torch.bfloat16)
        h0 = torch.randn(B, H, device="cuda", dtype=torch.bfloat16)
        print("grid exchange ns/step", torch.ops.rnnfuse.persistent_exchange_bench(y, h0, 48))
        print("LL exchange ns/step", torch.ops.rnnfuse.persistent_ll_exchange_bench(y, h0, 48))
        print("cluster exchange ns/step",
              torch.ops.rnnfuse.persistent_cluster_exchange_bench(y, h0, 16, 2))
        return 0
    if mode == "wide":
        os.environ["RNNFUSE_PERSISTENT_TIER"] = os.environ["RNNFUSE_PERSISTENT_BWD_TIER"] = "grid"
        m = rnnfuse.LSTM(WIDE_H, WIDE_H, device="cuda", dtype=torch.bfloat16)
        x = torch.randn(WIDE_T, WIDE_B, WIDE_H, device="cuda", dtype=torch.bfloat16,
                        requires_grad=True)
        y, _ = m(x)
        y.backward(torch.randn_like(y))
        torch.cuda.synchronize()
        print("wide training step on the grid tier", flush=True)
        return 0
    m = rnnfuse.LSTM(H, H, device="cuda", dtype=torch.float16)
    x = torch.randn(T, B, H, device="cuda", dtype=torch.float16)
    if mode == "fwd":
        for tier, exchange in (("cluster", "flags"), ("grid", "flags"), ("grid", "ll")):
            os.environ["RNNFUSE_PERSISTENT_TIER"] = tier
            os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = exchange
            with torch.no_grad():
                m(x)
            torch.cuda.synchronize()
            print(f"forward on the {tier} tier, exchange {exchange}", flush=True)
        os.environ.pop("RNNFUSE_PERSISTENT_EXCHANGE")
        return 0
    os.environ["RNNFUSE_PERSISTENT_TIER"] = os.environ["RNNFUSE_PERSISTENT_BWD_TIER"] = "grid"
    x.requires_grad_()
    for exchange in ("flags", "ll"):
        os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = exchange
        y, _ = m(x)
        y.backward(torch.randn_like(y))
        torch.cuda.synchronize()
        print(f"training step on the grid tier, exchange {exchange}", flush=True)
    os.environ.pop("RNNFUSE_PERSISTENT_EXCHANGE")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1] == "--kernels":
        print(" ".join(f"{m}={KERNELS[m]}:{LAUNCHES[m]}" for m in KERNELS))
        sys.exit(0)
    sys.exit(main(sys.argv[1]))
