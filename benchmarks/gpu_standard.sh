#!/usr/bin/env bash
# The GPU standard preset (~500 points; issue 8 asks for it at least once) in
# shards that fit the device tool's commands:
#
#   RNNFUSE_COMMIT=$(git rev-parse --short HEAD) OUT=<dir> bash benchmarks/gpu_standard.sh K N [K2 ...]
#
# Builds in place first (ninja: seconds when gpu_check.sh built this tree on
# the same machine), then runs shard K of N, then K2 of N, ...:
#   python3 -m benchmarks.run --preset standard --shard K/N --budget $BUDGET \
#       --deadline-s <what is left of $DEADLINE> --no-plots --out $OUT/standard_K_of_N
# Each shard leaves results.json, report.md and run.log (three files; the
# device tool returns eight, so at most two shards per command). Points a
# shard did not start before the deadline are SKIPPED in its results. Join
# the shards of several sittings, on this machine:
#   python -m benchmarks.merge benchmarks/results/<card>_<date>_standard \
#       <dir>/standard_1_of_4/results.json <dir>/standard_2_of_4/results.json ...
# With N = 4 a shard is ~126 points (every 4th, so each mixes cells, dtypes,
# sizes and modes); at the default budget, about 2-3 minutes [I].
#
# Knobs: OUT (default benchmarks/results/standard_latest), PYTHON (python3),
# BUDGET (seconds of timed repeats per implementation and point; default 0.2,
# the quick preset's), DEADLINE (seconds for all shards of this command after
# the build; default 480), TORCH_CUDA_ARCH_LIST (9.0), MAX_JOBS (16).
# Exit status: 0 when every shard ran and no point is WRONG or ERROR.

set -u -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
if (($# < 2)); then
  echo "usage: bash benchmarks/gpu_standard.sh K N [K2 ...]  (shards K of N)" >&2
  exit 2
fi
N=${2}
SHARDS=("$1" "${@:3}")
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results/standard_latest}
BUDGET=${BUDGET:-0.2}
DEADLINE=${DEADLINE:-480}
mkdir -p "$OUT_DIR" || exit 2
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export PYTHONDONTWRITEBYTECODE=1

echo "## commit: $(git rev-parse --short HEAD 2>/dev/null || echo "${RNNFUSE_COMMIT:-unknown}")" >&2
echo "## build (TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0})" >&2
if ! TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS=${MAX_JOBS:-16} \
    timeout 300 "$PY" setup.py build_ext --inplace >"$OUT_DIR/build.log" 2>&1; then
  echo "build failed; see $OUT_DIR/build.log" >&2
  tail -n 20 "$OUT_DIR/build.log" >&2
  exit 1
fi
rm -f "$OUT_DIR/build.log"  # the shards' files are what comes back

T0=$(date +%s)
RC=0
for K in "${SHARDS[@]}"; do
  left=$((DEADLINE - ($(date +%s) - T0)))
  dir="$OUT_DIR/standard_${K}_of_${N}"
  mkdir -p "$dir"
  echo "## shard $K/$N: --deadline-s $left" >&2
  # The deadline only stops new points; the hard timeout leaves a point
  # already started a minute to finish and the report to be written.
  timeout --kill-after=10 $((left > 0 ? left + 60 : 60)) \
    "$PY" -m benchmarks.run --preset standard --shard "$K/$N" --budget "$BUDGET" \
    --deadline-s "$((left > 0 ? left : 0))" --no-plots --out "$dir" >"$dir/run.log" 2>&1
  rc=$?
  tail -n 25 "$dir/run.log" >&2
  echo "## shard $K/$N: exit $rc" >&2
  ((rc == 0)) || RC=1
done
exit "$RC"
