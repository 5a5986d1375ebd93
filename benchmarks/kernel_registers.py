"""Registers, stack and local memory of a built extension's kernels whose
mangled names contain PATTERN, per arch (sm_80, sm_90), from cuobjdump
-res-usage (ptxas's report). For results NOTES that compare builds.

    python -m benchmarks.kernel_registers CUOBJDUMP EXTENSION.so PATTERN [LABEL]
"""
from __future__ import annotations

import re
import subprocess
import sys


def rows(cuobjdump: str, so: str, pattern: str, arch: str) -> list[tuple[str, int, int, int]]:
    """(demangled name, REG, STACK, LOCAL) of each matching kernel, sorted."""
    out = subprocess.run([cuobjdump, "-res-usage", "-arch", arch, so], capture_output=True,
                         text=True, check=True).stdout
    found = set()
    for name, reg, stack, local in re.findall(
            r"Function (\S*" + re.escape(pattern) + r"\S*):\s*\n\s*REG:(\d+) STACK:(\d+) "
            r"SHARED:\d+ LOCAL:(\d+)", out):
        pretty = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
        pretty = re.sub(r"\(Persist\w*Launch\)$", "", pretty.replace("rnnfuse::persist::", ""))
        found.add((pretty, int(reg), int(stack), int(local)))
    return sorted(found)


def main(argv: list[str]) -> int:
    cuobjdump, so, pattern = argv[:3]
    label = argv[3] if len(argv) > 3 else so
    for arch in ("sm_80", "sm_90"):
        for name, reg, stack, local in rows(cuobjdump, so, pattern, arch):
            print(f"{label} {arch} {name}: REG {reg} STACK {stack} LOCAL {local}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
