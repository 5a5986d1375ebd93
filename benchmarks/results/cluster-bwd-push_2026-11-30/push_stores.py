"""The cluster backward kernels' push, statically (sm_90 SASS): per kernel,
the st.async stores (STAS) of one MMA pass's partial sums and the
instructions from the pass's last HMMA to its last STAS (the push's index
math, remote addresses and stores), per store.

usage: PYTHONPATH=.:tests python push_stores.py CUOBJDUMP EXTENSION LABEL
"""
from __future__ import annotations

import re
import sys

from test_persistent_build import CLUSTER_BWD_KERNELS, SASS_INSN, all_sass


def main():
    cuobjdump, extension, label = sys.argv[1:4]
    for (arch, name), code in sorted(all_sass(extension, cuobjdump).items()):
        if name not in CLUSTER_BWD_KERNELS or int(arch[3:]) < 90:
            continue
        ops = [op for _, op, _ in SASS_INSN.findall(code)]
        stores = [i for i, op in enumerate(ops) if op.startswith("STAS")]
        last_mma = max(i for i, op in enumerate(ops) if op.startswith("HMMA") and i < stores[0])
        span = stores[-1] - last_mma
        short = re.sub(r"^_ZN7rnnfuse7persist\d+persist_cluster_bwd_kernelI", "", name)[:40]
        print(f"{label} {arch} {short:<40}: {len(stores)} STAS, {span} instructions from the "
              f"last HMMA to the last STAS, {span / len(stores):.1f} per store")


if __name__ == "__main__":
    main()
