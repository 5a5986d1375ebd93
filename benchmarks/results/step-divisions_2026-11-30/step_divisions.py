"""Integer divisions in the persistent kernels' step loops (sm_90 SASS),
static: the cluster forward's step and bracket loops, the grid kernels'
step and gather loops.

A division by a runtime value opens I2F.RP (or I2F.U32.RP), then MUFU.RCP:
about 35 mostly dependent instructions. The loops are the CI gates'
(tests/test_persistent_build.py):
- cluster_loops: the bracket loop is the shortest backward-branch range
  holding an HMMA, a MUFU (the epilogue's gate math) and a BAR.SYNC; the step
  loop the shortest one around it holding the mbarrier wait; "from the wait
  on" the step loop's code from its first wait instruction. Also printed:
  the static counts from the bracket loop's head to its first STAS (the
  push's set-up and first item, laid out first: close to the path of a
  thread with one item, as at the published point) and to its first HMMA
  (the push of group b - 2 in all, unrolled by the compiler), and the
  divisions in the whole kernel (most in the one-time W load);
- grid_step_loop: the step loop is the longest range holding the gather's
  exchange loads (LDG...STRONG.GPU, ld.global.cg), the gather loops the
  innermost such ranges.

usage: PYTHONPATH=.:tests python step_divisions.py CUOBJDUMP EXTENSION LABEL
"""
from __future__ import annotations

import re
import subprocess
import sys

from test_persistent_build import (CLUSTER_KERNELS, EXCHANGE, FMA_KERNELS, INT_DIVISION, KERNELS,
                                   SASS_INSN, cluster_loops, grid_step_loop)


def divisions(ops) -> int:
    return sum(bool(INT_DIVISION.match(op)) for op in ops)


def first(ops, prefix) -> int:
    return next(i for i, op in enumerate(ops) if op.startswith(prefix))


def short(name: str) -> str:
    return re.sub(r"^_ZN7rnnfuse7persist\d+", "", name)[:48]


def main():
    cuobjdump, extension, label = sys.argv[1:4]
    sass = subprocess.run([cuobjdump, "-sass", "-arch", "sm_90", extension], check=True,
                          capture_output=True, text=True).stdout
    blocks = re.split(r"\n(?=\s*Function\s*:\s)", sass)

    def body(name):
        return next(b for b in blocks if re.match(rf"\s*Function : {re.escape(name)}\s", b))

    for name in CLUSTER_KERNELS:
        code = body(name)
        loops = cluster_loops(code)
        step, bracket = loops["step"], loops["bracket"]
        kernel = [op for _, op, _ in SASS_INSN.findall(code)]
        print(f"{label} sm_90 {short(name):<48}: step loop {len(step)} instr, "
              f"{divisions(step)} divisions, {divisions(loops['after_wait'])} from the wait on; "
              f"bracket loop {len(bracket)} instr, "
              f"{divisions(bracket)} divisions, {first(bracket, 'STAS')} before its first STAS, "
              f"{first(bracket, 'HMMA')} before its first HMMA; kernel {divisions(kernel)} divisions")
    for name in list(KERNELS) + FMA_KERNELS + [EXCHANGE]:
        step, gathers = grid_step_loop(body(name))
        print(f"{label} sm_90 {short(name):<48}: step loop {len(step)} instr, {divisions(step)} "
              f"divisions, {sum(divisions(g) for g in gathers)} of them in its gather loops")


if __name__ == "__main__":
    main()
