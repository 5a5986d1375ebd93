"""Who runs a grid chunk's epilogue, before and after the items were packed
(layout.h: Partition::item_bits / item_unit / item_row, BwdPartition::
part_item). Arithmetic on the maps, written out here (the kernels' are
layout.h's; the fibers prove the kernels cover every item once).

Before: item e = jj * 32 + nn whatever the chunk's rows. After: e = jj <<
bits | nn, bits = ceil(log2(n_rows)). Thread e % 256, slot e // 256; a
backward part s takes items [s * part_items, (s + 1) * part_items).

Per (J, ksplit, n_rows): the warps of a CTA with at least one item, the most
item slots a thread runs (the epilogue's length on its busiest warp), and
the busy lanes of those warps' item passes.

usage: python epilogue_items.py
"""
from __future__ import annotations

import math


def items(J, S, n_rows, bits, part=0):
    chunk = J << bits
    per_part = -(-chunk // S)
    out = []
    for slot in range(2):
        for tid in range(256):
            local = tid + slot * 256
            e = part * per_part + local
            if local < per_part and e < chunk:
                jj, nn = e >> bits, e & ((1 << bits) - 1)
                if nn < n_rows:  # units past H are the ragged CTA's; not counted
                    out.append((tid, slot))
    return out


def row(J, S, n_rows, bits):
    its = items(J, S, n_rows, bits)
    warps = {t // 32 for t, _ in its}
    slots = max((s for _, s in its), default=-1) + 1
    passes = {(t // 32, s) for t, s in its}
    lanes = len(its) / max(len(passes), 1)
    return len(warps), slots, lanes


def main():
    print("| pass | J | ksplit | rows | warps busy (before -> after) | slots a thread runs | busy lanes a warp pass |")
    print("|---|---|---|---|---|---|---|")
    cases = [("fwd", J, 1) for J in (8, 10, 16)] + [("bwd", J, S) for J, S in
                                                     ((16, 1), (16, 4), (32, 4), (64, 4))]
    for kind, J, S in cases:
        for n_rows in (1, 4, 8, 16, 32):
            b = row(J, S, n_rows, 5)
            a = row(J, S, n_rows, max(0, math.ceil(math.log2(n_rows))))
            print(f"| {kind} | {J} | {S} | {n_rows} | {b[0]} -> {a[0]} | {b[1]} -> {a[1]} | "
                  f"{b[2]:.0f} -> {a[2]:.0f} |")


if __name__ == "__main__":
    main()
