"""Instruction mix of the exact-fp32 grid kernels' hottest loop, read from a
built extension's SASS: the innermost loop with the most FFMAs, which is the
loop over n-tiles in slice.cuh's fma_mtiles (per fragment: 8 LDS.128 of h,
each feeding 4 FFMA per m-tile, and their addresses). Its body unrolls all 32
fragment slots; a warp runs those of its k-tiles, each slot's body the same
mix. A static bound, not a timing: with one CTA of 8 warps per SM (2 per
scheduler), a scheduler issues at most one instruction per clock, so FFMA /
all instructions of the loop bounds the fraction of the FP32 peak it reaches.

    python fma_loop_mix.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import re
import subprocess
import sys
from collections import Counter

KERNELS = {
    f"{kind} {cell}": f"_ZN7rnnfuse7persist22persist_{kind}_fma_kernelILNS0_4CellE{c}EEEvNS0_"
                      f"16Persist{kind.capitalize()}LaunchE"
    for kind in ("fwd", "bwd") for c, cell in ((0, "LSTM"), (1, "GRU"))
}
INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+((?:@!?U?P\w+\s+)?[A-Z][A-Z0-9_.]*)([^;]*);")


def loops(sass: str):
    """(first, last address, ops) of each backward branch's body."""
    ops = [(int(a, 16), op.split()[-1], args) for a, op, args in INSN.findall(sass)]
    for addr, op, args in ops:
        m = re.search(r"0x([0-9a-f]+)", args)
        if op == "BRA" and m and int(m.group(1), 16) < addr:
            lo = int(m.group(1), 16)
            yield lo, addr, [o for a, o, _ in ops if lo <= a <= addr]


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for arch in ("sm_80", "sm_90"):
        for short, name in KERNELS.items():
            sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            found = list(loops(sass))
            inner = [l for l in found  # loops with no other loop inside them
                     if not any(l[0] <= o[0] and o[1] <= l[1] and o[:2] != l[:2] for o in found)]
            lo, hi, body = max(inner, key=lambda l: sum(o == "FFMA" for o in l[2]))
            mix = Counter(body)
            lds = sum(n for o, n in mix.items() if o.startswith("LDS"))
            print(f"{label} {arch} {short}: loop {lo:#x}-{hi:#x}: {len(body)} instructions, "
                  f"FFMA {mix['FFMA']} ({mix['FFMA'] / len(body):.0%}), LDS {lds}, "
                  f"FFMA per LDS {mix['FFMA'] / max(lds, 1):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
