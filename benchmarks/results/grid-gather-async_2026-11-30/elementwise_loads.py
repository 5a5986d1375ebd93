"""The grid kernels' element-wise gather (exchange.cuh gather_rows without
vec16), sm_80 and sm_90 SASS, static: per element-wise gather loop, the
exchanged loads (ld_cg) issued before its first shared store, as
tests/test_persistent_build.py's gate counts them. 1 where each element's
store followed its load; 4 (kGatherBatch) where a trip loads 4 first.

usage: PYTHONPATH=.:tests python elementwise_loads.py EXTENSION CUOBJDUMP LABEL
"""
from __future__ import annotations

import sys

from test_persistent_build import EXCHANGE, FMA_KERNELS, KERNELS, all_sass, elementwise_gather_loads


def main(so, cuo, label):
    for (arch, name), body in sorted(all_sass(so, cuo).items()):
        if name in list(KERNELS) + FMA_KERNELS + [EXCHANGE]:
            print(f"{label} {arch} {name[24:64]}: loads before the first store "
                  f"{elementwise_gather_loads(body)}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
