#!/usr/bin/env bash
# Compiles persistent kernel objects at two revisions with setup.py's nvcc
# flags (sm_80 and sm_90 SASS) and compares their SASS instruction by
# instruction (addresses, encodings and register numbering of otherwise equal
# lines are not compared: a line-by-line diff, printed). Needs the built venv
# (torch's headers) and cuobjdump (CUDA toolkit or PyPI's nvidia-cuda-cuobjdump).
#
# Usage, from the repository root with the venv active:
#   bash benchmarks/results/slice-groups_2026-11-29/sass_compare.sh REV_A REV_B OBJ...
# e.g. (this session's claims; outputs in sass_compare.txt):
#   ... e19d550 HEAD persist_bf16 persist_tf32 persist_bwd_bf16 persist_fma
#   ... 240a81a HEAD persist_cluster_bf16
set -euo pipefail
A=$1 B=$2
shift 2
CUDA=${CUDA_HOME:-/usr/local/cuda}
CUO=$(command -v cuobjdump || ls "$CUDA/bin/cuobjdump" 2>/dev/null ||
      ls "$(python -c 'import sys; print(sys.prefix)')"/lib/python*/site-packages/nvidia/*/bin/cuobjdump | head -1)
TI=$(CUDA_HOME=$CUDA python -c 'import torch.utils.cpp_extension as c; print(" ".join("-I" + p for p in c.include_paths()))')
PYI=$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
for rev in "$A" "$B"; do
  mkdir -p "$WORK/$rev"
  git archive "$rev" csrc | tar -x -C "$WORK/$rev"
done
sass() {  # REV OBJ -> instruction text, one per line
  "$CUDA/bin/nvcc" $TI -I"$CUDA/include" -I"$PYI" -c "$WORK/$1/csrc/cuda/persistent/$2.cu" \
    -o "$WORK/$1/$2.o" -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
    -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr \
    -Xcompiler -fPIC -O3 -lineinfo -DRNNFUSE_WITH_CUDA -DTORCH_API_INCLUDE_EXTENSION_H \
    -DTORCH_EXTENSION_NAME=_C -gencode=arch=compute_80,code=sm_80 \
    -gencode=arch=compute_90,code=sm_90 -std=c++20
  "$CUO" -sass "$WORK/$1/$2.o" | grep -E '^\s+/\*[0-9a-f]+\*/' |
    sed -E 's@/\* 0x[0-9a-f]+ \*/@@; s@/\*[0-9a-f]+\*/@@; s/ +$//'
}
for obj in "$@"; do
  sass "$A" "$obj" >"$WORK/a.sass"
  sass "$B" "$obj" >"$WORK/b.sass"
  n=$(wc -l <"$WORK/a.sass")
  d=$(diff "$WORK/a.sass" "$WORK/b.sass" | grep -c '^[<>]' || true)
  echo "== $obj ($A -> $B): $n instructions, $d lines differ"
  diff "$WORK/a.sass" "$WORK/b.sass" | grep '^[<>]' | sed 's/  */ /g' | head -20 || true
done
