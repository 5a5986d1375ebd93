"""The grid backward's K-split partial-sum loads (sm_80 and sm_90 SASS,
static): the longest run, in each backward kernel's step loop, of 32-bit
exchanged loads (ld_cg: LDG.E.STRONG.GPU) with no FADD, FFMA or shared store
among them, as tests/test_persistent_build.py's gate counts it. 4 where each
part's sum was added before the next was loaded; 11 (the 8 predicated loads
of both item slots and all parts, after the 3 flag waits' loads) where all
are issued first.

usage: PYTHONPATH=.:tests python partial_loads.py EXTENSION CUOBJDUMP LABEL
"""
from __future__ import annotations

import sys

from test_persistent_build import (FMA_KERNELS, KERNELS, all_sass, grid_step_loop,
                                   longest_exchanged_load_run)


def main(so, cuo, label):
    code = all_sass(so, cuo)
    for (arch, name), body in sorted(code.items()):
        if name not in list(KERNELS) + FMA_KERNELS or "persist_bwd" not in name:
            continue
        step, _ = grid_step_loop(body)
        best = longest_exchanged_load_run(step)
        print(f"{label} {arch} {name[24:64]}: {best} exchanged 32-bit loads before an add")


if __name__ == "__main__":
    main(*sys.argv[1:4])
