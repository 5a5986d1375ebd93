"""Instruction mix of the exact-fp32 grid kernels' hottest loop, read from a
built extension's SASS: the innermost loop with the most FFMAs, which is the
loop over n-tiles in slice.cuh's fma_mtiles (per fragment: 8 LDS.128 of h,
each feeding 4 FFMA per m-tile, and their addresses). Its body unrolls all 32
fragment slots; a warp runs those of its k-tiles, each slot's body the same
mix. A static bound, not a timing: with one CTA of 8 warps per SM (2 per
scheduler), a scheduler issues at most one instruction per clock, so FFMA /
all instructions of the loop bounds the fraction of the FP32 peak it reaches.

    PYTHONPATH=.:tests python fma_loop_mix.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import subprocess
import sys
from collections import Counter

from test_persistent_build import innermost_loops  # tests/: the CI gate's loop finder

KERNELS = {
    f"{kind} {cell}": f"_ZN7rnnfuse7persist22persist_{kind}_fma_kernelILNS0_4CellE{c}EEEvNS0_"
                      f"16Persist{kind.capitalize()}LaunchE"
    for kind in ("fwd", "bwd") for c, cell in ((0, "LSTM"), (1, "GRU"))
}


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for arch in ("sm_80", "sm_90"):
        for short, name in KERNELS.items():
            sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            body = max(innermost_loops(sass), key=lambda ops: ops.count("FFMA"))
            mix = Counter(body)
            lds = sum(n for o, n in mix.items() if o.startswith("LDS"))
            print(f"{label} {arch} {short}: loop of {len(body)} instructions, "
                  f"FFMA {mix['FFMA']} ({mix['FFMA'] / len(body):.0%}), LDS {lds}, "
                  f"FFMA per LDS {mix['FFMA'] / max(lds, 1):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
