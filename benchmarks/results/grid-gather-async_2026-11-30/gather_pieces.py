"""The grid tier's 16-byte gather per step, before and after its pieces
became cp.async copies (exchange.cuh gather_rows), at the planner's grid
plans (the H100 cluster device of the tests): the pieces a thread copies per
gather, which before were one dependent L2 round trip each (a 16-byte load
into registers, its shared store, then the next load), and the model's
gather term (plan.cpp gather_us: one round trip per gather plus the bytes
at the L2 bandwidth), which the code now has the shape of.

A gather of g rows of K elements: pieces per row K * eb / 16 padded to a
power of two (the shift-and-mask index), g << bits slots over 256 threads;
counted: the most real (not padding) pieces of any thread, summed over the
step's gathers.

usage: PYTHONPATH=.:tests python gather_pieces.py   (with a build)
"""
from __future__ import annotations

import math

import torch

from test_persistent_plan import H100_CLUSTERS, plan

ROUND_TRIP_US = 0.25  # plan.cpp kRoundTripUs
L2_BW, SM_BW = 5.5e12, 64 * 1.75e9  # kL2Bandwidth, kSmL2Bandwidth


def pieces_per_thread(rows, K, eb):
    """The most real pieces (not padding) any thread copies in one gather."""
    per_row = K * eb // 16
    bits = math.ceil(math.log2(per_row))
    return max(sum(1 for i in range(t, rows << bits, 256) if i & ((1 << bits) - 1) < per_row)
               for t in range(256))


def main():
    print("| cell | math | H | B | pass | plan | rows a replica | gathers | pieces a thread a step "
          "(before: round trips) | before, >= us | model gather us |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    points = [(H, B, dt, tf) for H, Bs in ((512, (8, 64, 256)), (1024, (8, 16, 64)))
              for B in Bs for dt, tf in ((torch.float32, False), (torch.bfloat16, True))]
    for cell in ("LSTM", "GRU"):
        G = 4 if cell == "LSTM" else 3
        for H, B, dt, tf in points:
            for bwd in (False, True):
                p = plan(cell, dt, H, B, 100, tf32=tf, dev=H100_CLUSTERS, cluster=True,
                         backward=bwd)
                if p["tier"] != "grid":
                    continue
                eb = p["elem_bytes"]
                S = p.get("ksplit") or 1
                K = H if not bwd else math.ceil(G * H / S / p["kk"]) * p["kk"]
                if (K * eb) % 16:
                    continue  # the element-wise gather: unchanged
                rows = math.ceil(B / p["R"])
                hb = p["hbuf_rows"]
                gathers = math.ceil(rows / hb)
                pieces = sum(pieces_per_thread(min(hb, rows - g0), K, eb)
                             for g0 in range(0, rows, hb))
                bytes_cta = rows * K * eb
                model = gathers * ROUND_TRIP_US + max(bytes_cta * p["grid"] / L2_BW,
                                                      bytes_cta / SM_BW) * 1e6
                math_ = "fma" if dt == torch.float32 and not tf else ("tf32" if eb == 4 else "bf16")
                part = f"J{p['J']} R{p['R']}" + (f" S{S}" if bwd else "")
                print(f"| {cell} | {math_} | {H} | {B} | {'bwd' if bwd else 'fwd'} | {part} | "
                      f"{rows} | {gathers} | {pieces} | {pieces * ROUND_TRIP_US:.2f} | {model:.2f} |")


if __name__ == "__main__":
    main()
