"""Integer divisions in the cluster backward kernels' step loops (SASS of
every cluster arch in the build), static: the step loop and its code from
the mbarrier wait on are the CI gate's (tests/test_persistent_build.py
cluster_bwd_step_loop); also the divisions in the whole kernel (before:
most in the one-time W load, own_weight_row's kl / J per element).

A division by a runtime value opens I2F.RP (or I2F.U32.RP), then MUFU.RCP:
about 35 mostly dependent instructions. A quotient through divider.h is
IMAD.HI, IADD, SHF.

usage: PYTHONPATH=.:tests python bwd_divisions.py CUOBJDUMP EXTENSION LABEL
"""
from __future__ import annotations

import re
import sys

from test_persistent_build import (CLUSTER_BWD_KERNELS, INT_DIVISION, SASS_INSN, all_sass,
                                   cluster_bwd_step_loop)


def divisions(ops) -> int:
    return sum(bool(INT_DIVISION.match(op)) for op in ops)


def main():
    cuobjdump, extension, label = sys.argv[1:4]
    for (arch, name), code in sorted(all_sass(extension, cuobjdump).items()):
        if name not in CLUSTER_BWD_KERNELS or int(arch[3:]) < 90:
            continue
        loops = cluster_bwd_step_loop(code)
        kernel = [op for _, op, _ in SASS_INSN.findall(code)]
        short = re.sub(r"^_ZN7rnnfuse7persist\d+persist_cluster_bwd_kernelI", "", name)[:40]
        print(f"{label} {arch} {short:<40}: step loop {len(loops['step'])} instr, "
              f"{divisions(loops['step'])} divisions, {divisions(loops['after_wait'])} from the "
              f"wait on; kernel {len(kernel)} instr, {divisions(kernel)} divisions")


if __name__ == "__main__":
    main()
