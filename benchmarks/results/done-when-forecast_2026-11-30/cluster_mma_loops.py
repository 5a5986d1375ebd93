"""The cluster forward kernels' MMA loops on sm_90 (innermost loops with
HMMA: mma_group's shared-memory W loop, one per group size 1, 2, 4), read
from a built extension's SASS: instructions, HMMA, and the I2F.RP of an
integer division. Static issue slots, not a timing.

    PYTHONPATH=.:tests python cluster_mma_loops.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import subprocess
import sys

from test_persistent_build import innermost_loops  # tests/: the CI gate's loop finder

ELEMS = {"fp16": "6__half", "bf16": "13__nv_bfloat16", "tf32": "f"}


def main(argv):
    cuobjdump, so = argv[:2]
    label = argv[2] if len(argv) > 2 else ""
    for kind, elem in ELEMS.items():
        for cell, c in (("LSTM", 0), ("GRU", 1)):
            name = (f"_ZN7rnnfuse7persist22persist_cluster_kernelI{elem}LNS0_4CellE{c}EEEvNS0_"
                    "20PersistClusterLaunchE")
            sass = subprocess.run([cuobjdump, "-sass", "-arch", "sm_90", "-fun", name, so],
                                  capture_output=True, text=True, check=True).stdout
            loops = [ops for ops in innermost_loops(sass) if any(o.startswith("HMMA") for o in ops)]
            desc = ", ".join(f"{len(ops)} ({sum(o.startswith('HMMA') for o in ops)} HMMA, "
                             f"{ops.count('I2F.RP')} I2F.RP)" for ops in loops)
            print(f"{label} sm_90 {kind} {cell}: MMA loops: {desc}")


if __name__ == "__main__":
    main(sys.argv[1:])
