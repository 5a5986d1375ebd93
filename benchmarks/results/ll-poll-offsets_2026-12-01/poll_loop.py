"""The LL forward kernel's poll loop and the stores after it, counted in
SASS, at each git revision given (default: 5bf5c55 and the work tree).

For each: csrc/ at that revision is compiled for sm_90 (persist_f16.cu, the
LSTM fp16 LL forward kernel), and in its SASS
- the re-poll loop: the instructions from the target of the backward branch
  that closes the loop holding the 16-byte strong polls (LDG.E.128.STRONG.SYS)
  to that branch; each spin of a stale round runs them once;
- the stores: from the end of that loop to the gather's barrier
  (BAR.SYNC): a round's pairs into shared memory, on the step's path once
  the words have landed (the first gather's, up to 8 pairs).
Run from the repository root: python benchmarks/results/ll-poll-offsets_2026-12-01/poll_loop.py
Needs /usr/local/cuda/bin/nvcc and cuobjdump (CUOBJDUMP, default the venv's).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

NVCC = "/usr/local/cuda/bin/nvcc"
CUOBJDUMP = os.environ.get("CUOBJDUMP",
                           ".venv/lib/python3.11/site-packages/nvidia/cu13/bin/cuobjdump")
KERNEL = "_ZN7rnnfuse7persist21persist_fwd_ll_kernelI6__halfLNS0_4CellE0EEEvNS0_16PersistFwdLaunchE"
FLAGS = ["-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
         "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
         "--expt-relaxed-constexpr", "-O3", "-std=c++20", "-gencode=arch=compute_90,code=sm_90"]
INSN = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)([^;]*);")


def sass_of(rev: str | None) -> list[tuple[int, str, str]]:
    with tempfile.TemporaryDirectory() as d:
        if rev is None:
            root = "."
        else:
            archive = subprocess.run(["git", "archive", rev, "csrc"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", d], input=archive, check=True)
            root = d
        cubin = os.path.join(d, "k.cubin")
        subprocess.run([NVCC, "-cubin", f"{root}/csrc/cuda/persistent/persist_f16.cu", "-o", cubin,
                        "-I/usr/local/cuda/include", *FLAGS], check=True)
        out = subprocess.run([CUOBJDUMP, "-sass", "-fun", KERNEL, cubin], check=True,
                             capture_output=True, text=True).stdout
    return [(int(a, 16), op, rest) for a, _, op, rest in INSN.findall(out)]


def measure(insns):
    addr = [a for a, _, _ in insns]
    polls = [a for a, op, _ in insns if op.startswith("LDG.E.128.STRONG")]
    for i, (a, op, rest) in enumerate(insns):
        m = re.search(r"0x([0-9a-f]+)", rest)
        if op == "BRA" and m and int(m.group(1), 16) < a:
            head = int(m.group(1), 16)
            inside = [p for p in polls if head <= p <= a]
            # the loop's back edge, then the watchdog's trap
            if len(inside) >= 4 and any(o == "BPT.TRAP" for _, o, _ in insns[i:i + 3]):
                loop = addr.index(a) - addr.index(head) + 1
                j = i + 1
                while not insns[j][1].startswith("BAR.SYNC"):
                    j += 1
                stores = sum(1 for _, o, _ in insns[i + 1:j] if o.startswith("STS"))
                return loop, len(inside), j - i - 1, stores
    raise SystemExit("no re-poll loop found")


def main(revs):
    for rev in revs:
        loop, polls, after, sts = measure(sass_of(None if rev == "tree" else rev))
        print(f"{rev:>8}: re-poll loop {loop} instructions ({polls} polls); "
              f"loop end to the gather's barrier {after} instructions ({sts} STS)")


if __name__ == "__main__":
    main(sys.argv[1:] or ["5bf5c55", "tree"])
