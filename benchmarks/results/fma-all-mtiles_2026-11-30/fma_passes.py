"""Every FFMA loop of the exact-fp32 grid kernels, read from a built
extension's SASS (sm_80 and sm_90): its instructions, FFMA, shared-memory
loads (LDS.128 of h), FFMA per load and FFMA share. slice.cuh fma_mtiles
compiles to one such loop per m-tile grouping it instantiates; a loop's FFMA
count is k-tiles x columns x m-tiles x 4, with k-tiles = 32 // MT (the
register budget), which identifies the grouping: a loop whose loads feed
nm = FFMA / (4 LDS) m-tiles sums 8 columns a trip if nm <= 2, else 4 (both
builds), so k-tiles = LDS / columns and MT = 32 // k-tiles. The summary line
adds, per MT, the instructions the loops run for 8 columns (one n-tile):
what a warp issues per n-tile and k-tile pass of its chunk.

    PYTHONPATH=.:tests python fma_passes.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import subprocess
import sys
from collections import Counter

from test_persistent_build import FMA_KERNELS, innermost_loops  # tests/: the CI gates' helpers


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for arch in ("sm_80", "sm_90"):
        for name in FMA_KERNELS:
            short = ("fwd " if "_fwd_" in name else "bwd ") + ("LSTM" if "CellE0" in name else "GRU")
            sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            per_ntile = {}  # MT -> (instructions, FFMA) per 8 columns
            for body in innermost_loops(sass):
                mix = Counter(body)
                ffma = mix["FFMA"]
                if not ffma:
                    continue
                lds = sum(n for o, n in mix.items() if o.startswith("LDS"))
                print(f"{label} {arch} {short}: loop of {len(body)} instructions, FFMA {ffma} "
                      f"({ffma / len(body):.0%}), LDS {lds}, FFMA per LDS {ffma / max(lds, 1):.1f}")
                nm = ffma // (4 * lds)
                cols = 8 if nm <= 2 else 4
                mt = 32 // (lds // cols)
                n, f = per_ntile.get(mt, (0, 0))
                per_ntile[mt] = (n + len(body) * 8 // cols, f + ffma * 8 // cols)
            print(f"{label} {arch} {short}: per n-tile, by MT: " + "; ".join(
                f"MT {mt}: {n} instructions, {f / n:.0%} FFMA" for mt, (n, f) in sorted(per_ntile.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
