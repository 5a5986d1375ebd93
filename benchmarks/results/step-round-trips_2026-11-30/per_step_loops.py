"""The per-step tier's kernels (csrc/cuda/*_step.cuh, not the persistent
ones): per inner loop that loads through global memory, its instructions,
global loads, the round trips one pass serializes (tests'
global_round_trips: address order, branches fall through) and its HMMA /
FFMA count. A tile loop whose passes serialize about as many round trips as
they issue loads waits out each load before the next (no prefetch).

usage: PYTHONPATH=.:tests python per_step_loops.py EXTENSION CUOBJDUMP LABEL [ARCH]
"""
from __future__ import annotations

import sys

from test_persistent_build import (all_sass, global_round_trips, is_global_load, loop_ranges,
                                   scoreboard_insns)


def main(so, cuo, label, arch="sm_90"):
    for (a, name), body in sorted(all_sass(so, cuo).items()):
        if a != arch or "_step_kernel" not in name:
            continue
        insns = scoreboard_insns(body)
        for lo, hi in sorted(set(loop_ranges(body))):
            sub = [i for i in insns if lo <= i[0] <= hi]
            loads = sum(is_global_load(op) for _, op, _, _ in sub)
            if loads:
                math = sum(op.startswith(("HMMA", "FFMA")) for _, op, _, _ in sub)
                print(f"{label} {a} {name[16:100]} loop {lo:#x}: {len(sub)} instructions, "
                      f"{loads} global loads, {global_round_trips(sub)} round trips a pass, "
                      f"{math} HMMA/FFMA")


if __name__ == "__main__":
    main(*sys.argv[1:5])
