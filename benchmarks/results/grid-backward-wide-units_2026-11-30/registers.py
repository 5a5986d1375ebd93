"""Registers, stack and local memory of the grid tier's backward kernels
(persist_bwd_kernel, persist_bwd_fma_kernel) per arch, from cuobjdump
-res-usage of a built extension (ptxas's report).

    python registers.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import re
import subprocess
import sys

cuobjdump, so = sys.argv[1], sys.argv[2]
label = sys.argv[3] if len(sys.argv) > 3 else so
for arch in ("sm_80", "sm_90"):
    out = subprocess.run([cuobjdump, "-res-usage", "-arch", arch, so], capture_output=True,
                         text=True, check=True).stdout
    rows = set()
    for name, reg, stack, local in re.findall(
            r"Function (\S*persist_bwd\S*):\s*\n\s*REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", out):
        rows.add((name, int(reg), int(stack), int(local)))
    for name, reg, stack, local in sorted(rows):
        pretty = subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
        pretty = pretty.replace("rnnfuse::persist::", "").replace("(PersistBwdLaunch)", "")
        print(f"{label} {arch} {pretty}: REG {reg} STACK {stack} LOCAL {local}")
