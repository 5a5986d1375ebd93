"""Global-memory sectors of the grid forward's epilogue, per warp
instruction, from the kernel's item map (layout.h Partition::item_unit /
item_row, replica_row) and the planner's partition at each point.

Item e = jj << bits | nn (bits = ceil_log2(chunk rows)) sits on thread
e % 256: a warp's 32 lanes are the chunk's rows of 32 >> bits units. Every
lane's x_proj gate, c_state, y and workspace address is in another batch
row, so each warp instruction touches one 32-byte sector per row where a
unit-minor map (a warp's lanes over 16 or 32 units of one or two rows)
touches 2 (16-bit) or 4 (fp32).

Checked against ncu at the published point (LSTM fp16 H=768 B=16, grid tier
R=2 J=16: 8 rows a chunk), benchmarks/results/nvidia-h200_2026-11-30_gpu-check
ncu_sass.csv.gz: the x_proj loads (LDG.E.U16) 196608 sectors over 24576
warp instructions = 8 each (ncu's ideal 2), c_state LDG.E 8 (ideal 4), the y
store STG.E.U16 8 (2), the c_state store STG.E 8 (4). This model gives the
same: python benchmarks/results/epilogue-coalescing_2026-12-01/sectors.py
(repository root, built tree; CPU only).
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
import rnnfuse.ops  # noqa: E402,F401
from test_persistent_plan import H100  # noqa: E402

OPS = torch.ops.rnnfuse
THREADS, WARP, CHUNK_ROWS, SECTOR = 256, 32, 32, 32


def plan(cell, dtype, H, B):
    return json.loads(OPS.persistent_plan(cell, dtype, H, B, 100, 0, 1, True, H100, True, False,
                                          False, 1, True, ""))


def sectors(addrs):
    return len({a // SECTOR for a in addrs})


def warp_items(J, n_rows):
    """[(warp, slot)] -> the (unit jj, chunk row nn) of its active lanes."""
    bits = math.ceil(math.log2(n_rows)) if n_rows > 1 else 0
    items = {}
    for e in range(J << bits):
        jj, nn = e >> bits, e & ((1 << bits) - 1)
        if nn < n_rows:
            items.setdefault((e % THREADS) // WARP + 8 * (e // THREADS), []).append((jj, nn))
    return items


def point(cell, dtype, H, B, training):
    G = 4 if cell == "LSTM" else 3
    eb = torch.tensor([], dtype=dtype).element_size()
    p = plan(cell, dtype, H, B)
    J, R, c = p["J"], p["R"], 0
    rows = math.ceil(B / R)  # replica 0's local rows
    ld_x, ld_y = G * H, H
    # per access kind: (bytes per lane, address of (unit j, batch row b))
    kinds = {f"x_proj[{g}]": (eb, lambda j, b, g=g: (b * ld_x + g * H + j) * eb) for g in range(G)}
    kinds["y"] = (eb, lambda j, b: (b * ld_y + j) * eb)
    if cell == "LSTM":
        kinds["c load"] = (4, lambda j, b: (b * H + j) * 4)
        kinds["c store"] = (4, lambda j, b: (b * H + j) * 4)
    if training:
        W = G + 1  # LSTM i f g o c, GRU r z n hn
        for k in range(W):
            kinds[f"ws[{k}]"] = (eb, lambda j, b, k=k: (b * W * H + k * H + j) * eb)
    got = ideal = instr = 0
    for n0 in range(0, rows, CHUNK_ROWS):
        n_rows = min(CHUNK_ROWS, rows - n0)
        for lanes in warp_items(J, n_rows).values():
            for nbytes, addr in kinds.values():
                a = [addr(c * J + jj, (n0 + nn) * R) for jj, nn in lanes]
                got += sectors(a)
                ideal += math.ceil(len(lanes) * nbytes / SECTOR)
                instr += 1
    return p, instr, got, ideal


def main():
    pts = [("LSTM", torch.float16, 768, 16), ("LSTM", torch.bfloat16, 512, 8),
           ("LSTM", torch.bfloat16, 512, 64), ("LSTM", torch.bfloat16, 512, 256),
           ("GRU", torch.bfloat16, 512, 64), ("GRU", torch.bfloat16, 512, 256),
           ("LSTM", torch.float32, 512, 256)]
    print("| point | plan (J, R) | mode | warp instr / CTA / step | sectors | unit-minor ideal | x |")
    print("|---|---|---|---|---|---|---|")
    for cell, dtype, H, B in pts:
        for training in (False, True):
            p, instr, got, ideal = point(cell, dtype, H, B, training)
            mode = "training" if training else "inference"
            name = f"{cell} {str(dtype)[6:]} H={H} B={B}"
            print(f"| {name} | J={p['J']} R={p['R']} | {mode} | {instr} | {got} | {ideal} | "
                  f"{got / ideal:.1f} |")


if __name__ == "__main__":
    main()
