"""The cluster backward's reduction-item loads around a step's wait (sm_90
SASS, static), per kernel:
- before the wait: the global loads (LDG, not the flags' STRONG ones) from
  the prologue's cluster barrier (UCGABAR_WAIT) to the step's first mbarrier
  wait (SYNCS.PHASECHK): the items loaded while the wait runs;
- in the reduction: those from the barrier after the wait to the next one
  (the B operand complete): the loads of items past the pre-wait ones.

usage: PYTHONPATH=.:tests python item_loads.py EXTENSION CUOBJDUMP LABEL
"""
from __future__ import annotations

import sys

from test_persistent_build import CLUSTER_BWD_KERNELS, SASS_INSN, all_sass


def item_loads(ops):
    """(loads before the wait, loads in the reduction)."""
    wait = next(i for i, op in enumerate(ops) if op.startswith("SYNCS.PHASECHK"))
    start = max(i for i in range(wait) if op_is(ops[i], "UCGABAR_WAIT"))
    bars = [i for i in range(wait, len(ops)) if op_is(ops[i], "BAR.SYNC")]
    red0, red1 = bars[0], bars[1]

    def loads(lo, hi):
        return [i for i in range(lo, hi) if ops[i].startswith("LDG") and "STRONG" not in ops[i]]

    return len(loads(start, wait)), len(loads(red0, red1))


def op_is(op, name):
    return op.startswith(name)


def main(so, cuo, label):
    for (arch, name), body in sorted(all_sass(so, cuo).items()):
        if name not in CLUSTER_BWD_KERNELS:
            continue
        ops = [op for _, op, _ in SASS_INSN.findall(body)]
        if not any(op.startswith("SYNCS.PHASECHK") for op in ops):
            continue  # sm_80: the cluster kernels are sm_90 only
        pre, red = item_loads(ops)
        print(f"{label} {arch} {name[24:80]}: {pre} loads before the wait, {red} in the "
              f"reduction")


if __name__ == "__main__":
    main(*sys.argv[1:4])
