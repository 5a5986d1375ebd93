"""The grid tier's tensor-core kernels (fp16, bf16, TF32; forward and
backward), read from a built extension's SASS: per kernel, its instructions,
HMMA and shared-memory loads (LDS: the B fragments, 2 per n-tile and k-tile,
and the partial sums), and each loop that holds HMMA (a backward branch's
range with no other HMMA loop inside it): its instructions, HMMA, LDS.
slice.cuh mma_mtiles' k-tile loop is unrolled up to the register budget, so
a loop's HMMA per LDS shows how many m-tiles share each B fragment.

    PYTHONPATH=.:tests python mma_passes.py CUOBJDUMP EXTENSION.so [LABEL] [ARCH...]
"""
import subprocess
import sys

from test_persistent_build import KERNELS, SASS_INSN, loop_ranges  # tests/: the CI gates' helpers


def counts(ops):
    return (len(ops), sum(o.startswith("HMMA") for o in ops), sum(o.startswith("LDS") for o in ops))


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    archs = argv[3:] or ["sm_80", "sm_90"]
    for arch in archs:
        for name in KERNELS:
            short = (("fwd " if "_fwd_" in name else "bwd ")
                     + {"6__half": "fp16", "13__nv_bfloat16": "bf16", "f": "tf32"}[
                         name.split("_kernelI")[1].split("LNS0")[0]]
                     + (" LSTM" if "CellE0" in name else " GRU"))
            sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            ops = [(int(a, 16), op) for a, op, _ in SASS_INSN.findall(sass)]
            n, h, l = counts([op for _, op in ops])
            loops = []
            for lo, hi in sorted(set(loop_ranges(sass))):
                body = [op for a, op in ops if lo <= a <= hi]
                if any(o.startswith("HMMA") for o in body):
                    loops.append((lo, hi, counts(body)))
            inner = [c for lo, hi, c in loops
                     if not any(lo <= lo2 and hi2 <= hi and (lo2, hi2) != (lo, hi)
                                for lo2, hi2, _ in loops)]
            print(f"{label} {arch} {short}: {n} instructions, HMMA {h}, LDS {l}; HMMA loops "
                  + ", ".join(f"[{a} instr, HMMA {b}, LDS {c}]" for a, b, c in inner))


if __name__ == "__main__":
    main(sys.argv[1:])
