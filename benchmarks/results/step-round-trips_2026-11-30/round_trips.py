"""Dependent global-memory round trips on each persistent kernel's step
path, from the SASS's scoreboard bits (static; the walk and its helpers are
tests/test_persistent_build.py's: scoreboard_insns, global_round_trips,
persistent_step_loop).

Per kernel, over the loop over steps in address order (branches fall
through, each inner loop once, so paths a step rarely takes count too):
- before the wait: round trips that code before the step's wait waits out
  (loads issued there and awaited there);
- from the wait: those from the wait to the loop's end (the wait itself,
  gathers, later chunks' operand loads, K-split partial sums);
- each inner loop's own count per pass, where it is not 0.

usage: PYTHONPATH=.:tests python round_trips.py EXTENSION CUOBJDUMP LABEL
"""
from __future__ import annotations

import sys

from test_persistent_build import (all_sass, global_round_trips, loop_ranges,
                                   persistent_step_loop, scoreboard_insns)


def report(body: str, cluster: bool) -> str:
    found = persistent_step_loop(body, cluster)
    if found is None:
        return "no step loop (the sm_80 cluster stub)"
    step, wait = found
    lo, hi = step[0][0], step[-1][0]
    insns = scoreboard_insns(body)
    inner = []
    for a, b in sorted(set(loop_ranges(body))):
        if lo <= a and b <= hi and (a, b) != (lo, hi):
            trips = global_round_trips([i for i in insns if a <= i[0] <= b])
            if trips:
                inner.append(f"{a:#x}: {trips}")
    return (f"{global_round_trips(step[:wait])} before the wait, "
            f"{global_round_trips(step[wait:])} from it; inner loops per pass "
            f"[{', '.join(inner)}]")


def main(so, cuo, label):
    for (arch, name), body in sorted(all_sass(so, cuo).items()):
        if "7persist" not in name or "exchange" in name or "persist_" not in name:
            continue
        print(f"{label} {arch} {name[24:90]}: {report(body, 'cluster' in name)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
