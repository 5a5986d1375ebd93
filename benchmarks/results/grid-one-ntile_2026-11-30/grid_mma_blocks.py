"""The grid kernels' MMA code, read from a built extension's SASS (sm_80,
sm_90): the function cut into straight-line segments after every branch and
reconvergence instruction (the CI gate's branch_segments), and the
segments holding HMMA grouped by their HMMA count: how many segments, and
their most common lengths in instructions. A segment issues all of its
instructions, predicated-off ones included. Static issue slots, not a
timing.

    PYTHONPATH=.:tests python grid_mma_blocks.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import collections
import subprocess
import sys

# tests/: the CI gate's segmenter and its grid kernel names (mangled)
from test_persistent_build import KERNELS, branch_segments

ELEMS = {"6__half": "fp16", "13__nv_bfloat16": "bf16", "If": "tf32"}


def label_of(name):
    """fwd/bwd, dtype, cell of a grid kernel's mangled name."""
    kind = "fwd" if "_fwd_" in name else "bwd"
    elem = next(v for k, v in ELEMS.items() if k in name)
    return f"{kind} {elem} {'LSTM' if 'CellE0' in name else 'GRU'}"


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for arch in ("sm_80", "sm_90"):
        for name in KERNELS:  # fwd then bwd; fp16, bf16, TF32; LSTM, GRU
            sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            by_hmma = collections.defaultdict(list)
            for seg in branch_segments(sass):
                n = sum(op.startswith("HMMA") for _, op in seg)
                if n:
                    by_hmma[n].append(len(seg))
            if not by_hmma:
                raise SystemExit(f"{arch} {label_of(name)}: no HMMA found")
            desc = "; ".join(
                f"{n} HMMA: {len(v)} x " + ",".join(
                    f"{length}" for length, _ in collections.Counter(v).most_common(2))
                for n, v in sorted(by_hmma.items()) if len(v) >= 4)
            print(f"{label} {arch} {label_of(name)}: {desc}")


if __name__ == "__main__":
    main(sys.argv[1:])
