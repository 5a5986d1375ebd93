"""Registers, stack and local memory of the grid tier's backward kernels
(persist_bwd_kernel, persist_bwd_fma_kernel) per arch, from cuobjdump
-res-usage of a built extension (ptxas's report), through
benchmarks/kernel_registers.py.

    PYTHONPATH=. python registers.py CUOBJDUMP EXTENSION.so [LABEL]
"""
import sys

from benchmarks import kernel_registers

sys.exit(kernel_registers.main([*sys.argv[1:3], "persist_bwd", *sys.argv[3:]]))
