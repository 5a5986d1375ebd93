"""Static SASS counts of the tensor-core step kernels' operand staging, for a
source tree (sm_90, nvcc as setup.py calls it):

  python sass_counts.py /path/to/tree [more trees ...]

Compiles the tree's csrc/cuda/{lstm,gru}_{bf16,f32}.cu to a cubin and counts,
per MmaGemm step kernel, its global loads by width (LDG.E.U16 / LDG.E /
LDG.E.128), shared stores by width and all instructions. Static counts: the
code size of each path, not how often it runs (the k loop runs once per
chunk; the element-by-element fallback only for unaligned rows and k's tail).
"""
import collections
import os
import re
import subprocess
import sys
import tempfile

import torch.utils.cpp_extension as ext

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                "tests"))
from test_persistent_build import find_cuobjdump  # noqa: E402

CUDA = os.environ.get("CUDA_HOME", "/usr/local/cuda")
FLAGS = ["-O3", "--expt-relaxed-constexpr", "-std=c++20", "-DRNNFUSE_WITH_CUDA",
         "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
         "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
         "-DTORCH_API_INCLUDE_EXTENSION_H", "-DTORCH_EXTENSION_NAME=_C", "-arch=sm_90", "-cubin"]
KERNEL = re.compile(r"Function : (\S*(lstm|gru)_(fwd|bwd)_step_kernel\S*MmaGemm\S*)")
OPS = {"LDG.U16": r"LDG\.E\.U16", "LDG.32": r"LDG\.E(?:\.CONSTANT)? ", "LDG.128": r"LDG\.E\.128",
       "STS.U16": r"STS\.U16", "STS.32": r"STS ", "STS.128": r"STS\.128"}


def counts(tree):
    incs = [f"-I{p}" for p in ext.include_paths()] + [f"-I{CUDA}/include"]
    out = collections.OrderedDict()
    for unit in ("lstm_bf16", "gru_bf16", "lstm_f32", "gru_f32"):
        with tempfile.TemporaryDirectory() as tmp:
            cubin = os.path.join(tmp, "k.cubin")
            subprocess.run([f"{CUDA}/bin/nvcc", *FLAGS, *incs, f"{tree}/csrc/cuda/{unit}.cu",
                            "-o", cubin], check=True)
            sass = subprocess.run([find_cuobjdump(), "-sass", cubin], check=True,
                                  capture_output=True, text=True).stdout
        for chunk in re.split(r"\n\s*\.{5,}\n|(?=\n\s*Function : )", sass):
            m = KERNEL.search(chunk)
            if not m:
                continue
            # MmaGemm<scalar, BM, BN, BK, warps>: its first integer arguments.
            tile = re.findall(r"Li(\d+)E", m.group(1).split("MmaGemmI", 1)[1])[:3]
            name = f"{m.group(2)}_{m.group(3)} {unit.split('_')[1]} BMxBNxBK {'x'.join(tile)}"
            row = {k: len(re.findall(r"\b" + p, chunk)) for k, p in OPS.items()}
            row["instructions"] = len(re.findall(r"/\*[0-9a-f]{4,}\*/", chunk))
            out[name] = row
    return out


for tree in sys.argv[1:]:
    print(f"== {tree}")
    for name, row in counts(tree).items():
        print(f"  {name:34s} " + " ".join(f"{k} {v:4d}" for k, v in row.items()))
