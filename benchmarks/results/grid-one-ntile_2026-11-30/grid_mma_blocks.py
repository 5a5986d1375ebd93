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

from test_persistent_build import branch_segments  # tests/: the CI gate's segmenter

ELEMS = {"fp16": "6__half", "bf16": "13__nv_bfloat16", "tf32": "f"}
KERNELS = {"fwd": ("persist_fwd_kernel", "16PersistFwdLaunchE"),
           "bwd": ("persist_bwd_kernel", "16PersistBwdLaunchE")}


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for arch in ("sm_80", "sm_90"):
        for short, (kernel, launch) in KERNELS.items():
            for kind, elem in ELEMS.items():
                for cell, c in (("LSTM", 0), ("GRU", 1)):
                    name = f"_ZN7rnnfuse7persist{len(kernel)}{kernel}I{elem}LNS0_4CellE{c}EEEvNS0_{launch}"
                    sass = subprocess.run([cuobjdump, "-sass", "-arch", arch, "-fun", name, so],
                                          capture_output=True, text=True, check=True).stdout
                    by_hmma = collections.defaultdict(list)
                    for seg in branch_segments(sass):
                        n = sum(op.startswith("HMMA") for _, op in seg)
                        if n:
                            by_hmma[n].append(len(seg))
                    if not by_hmma:
                        raise SystemExit(f"{arch} {short} {kind} {cell}: no HMMA found")
                    desc = "; ".join(
                        f"{n} HMMA: {len(v)} x " + ",".join(
                            f"{length}" for length, _ in collections.Counter(v).most_common(2))
                        for n, v in sorted(by_hmma.items()) if len(v) >= 4)
                    print(f"{label} {arch} {short} {kind} {cell}: {desc}")


if __name__ == "__main__":
    main(sys.argv[1:])
