#!/usr/bin/env bash
# Reruns this folder's measurements (CPU, from the repository root, built tree):
#   bash benchmarks/results/cpu-2core_2026-11-28_cell-gemms/run.sh
# With THIN=1 it also builds commit 5a63a9d (the side-by-side GEMMs before the
# thin-product rule) in a temporary worktree, CPU-only, and times the bf16 batch-1
# cell training points with that build and with this tree, three runs each.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
echo "== GEMM rates (us per call, GFLOP/s)"; python gemm_rates.py
echo "== cell backward op: CPU implementation vs the composite body"; python cell_bwd_ab.py
echo "== LSTM loop parts"; python loop_parts.py
echo "== cell fuzz vs torch.nn"; python cell_fuzz.py
if [ "${THIN:-0}" = 1 ]; then
  root=$(git rev-parse --show-toplevel); wt=$(mktemp -d)
  git -C "$root" worktree add -q "$wt" 5a63a9d
  (cd "$wt" && RNNFUSE_CPU_ONLY=1 CUDA_HOME=/usr/local/cuda python setup.py build_ext --inplace > "$wt/build.log" 2>&1)
  point="--cell lstmcell,grucell --dtype bf16 --B 1 --H 512 --mode training --no-plots --ceilings off"
  for build in 5a63a9d this-tree; do
    for i in 1 2 3; do
      echo "== bf16 B=1 H=512 cell training, build $build, run $i"
      if [ $build = 5a63a9d ]; then dir=$wt; else dir=$root; fi
      (cd "$dir" && PYTHONPATH="$dir" python -m benchmarks.run $point --out "$(mktemp -d)" 2>&1 \
        | grep -E "^ *(lstm|gru)cell +bf16 +training +10" | cut -c1-130)
    done
  done
  git -C "$root" worktree remove --force "$wt"
fi
