"""The cluster backward's global loads on a step's path (sm_90 SASS,
static): per kernel, the global loads (LDG, not the flags' STRONG ones)
from the step's first mbarrier wait (SYNCS.PHASECHK) to the first HMMA after
it: the reduction's operand loads. Before the carried dh/dc state moved into
the pre-wait loads of the first kItemSlots items, LSTM had 14 (fp16/bf16) or
13 (TF32), GRU 10 or 9.

usage: PYTHONPATH=.:tests python loads_after_wait.py EXTENSION CUOBJDUMP LABEL
"""
from __future__ import annotations

import sys

from test_persistent_build import CLUSTER_BWD_KERNELS, SASS_INSN, all_sass


def main(so, cuo, label):
    for (arch, name), body in sorted(all_sass(so, cuo).items()):
        if name not in CLUSTER_BWD_KERNELS:
            continue
        ops = [op for _, op, _ in SASS_INSN.findall(body)]
        waits = [i for i, op in enumerate(ops) if op.startswith("SYNCS.PHASECHK")]
        if not waits:
            continue  # sm_80: the cluster kernels are sm_90 only
        first_mma = next((i for i in range(waits[0], len(ops)) if ops[i].startswith("HMMA")),
                         len(ops))
        loads = sum(op.startswith("LDG") and "STRONG" not in op for op in ops[waits[0]:first_mma])
        print(f"{label} {arch} {name[24:80]}: {loads} global loads from the wait to the first HMMA")


if __name__ == "__main__":
    main(*sys.argv[1:4])
