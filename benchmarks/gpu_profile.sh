#!/usr/bin/env bash
# Where the persistent kernels' time goes, on a GPU: ncu on the published
# point's forward (cluster and grid tiers, the grid's with flags and with LL
# words), the grid backward (flags, then LL words), and the
# exchanges alone (benchmarks/gpu_profile.py), each summarized by
# benchmarks/ncu_summary.py. About 3 minutes after a build; run it after
# gpu_check.sh in the same warm machine (the build is then incremental):
#
#   OUT=<dir> bash benchmarks/gpu_profile.sh
#
# Writes (7 files, within the device tool's 8): profile.log, ncu_details.txt,
# profile_summary.txt, src_fwd.csv.gz, src_bwd.csv.gz, src_xch.csv.gz (the
# exchanges: release/acquire, flag in the data, cluster), src_wide.csv.gz
# (both grid passes at B=256: the epilogue's uncoalesced accesses).
# ncu runs with --clock-control none: the clocks the timings ran at.
set -u -o pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY=${PYTHON:-python3}
OUT_DIR=${OUT:-benchmarks/results/gpu_profile_latest}
mkdir -p "$OUT_DIR" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/rnnfuse_profile.XXXXXX") || exit 2
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
LOG="$OUT_DIR/profile.log"
: >"$LOG"
: >"$OUT_DIR/ncu_details.txt"
: >"$OUT_DIR/profile_summary.txt"
TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS=${MAX_JOBS:-16} \
  timeout 300 "$PY" setup.py build_ext --inplace >>"$LOG" 2>&1 || { echo "build failed" | tee -a "$LOG"; exit 1; }
RC=0
for spec in $("$PY" benchmarks/gpu_profile.py --kernels); do
  mode=${spec%%=*}
  rest=${spec#*=}
  regex=${rest%:*}
  launches=${rest##*:}
  echo "## $mode: kernels $regex, $launches launch(es)" | tee -a "$LOG"
  if ! timeout 150 ncu --target-processes all --clock-control none -k "regex:$regex" \
      --launch-count "$launches" --section SpeedOfLight --section WarpStateStats \
      --section SchedulerStats --section LaunchStats --section Occupancy \
      --section SourceCounters --section MemoryWorkloadAnalysis -o "$WORK/$mode" \
      "$PY" benchmarks/gpu_profile.py "$mode" >>"$LOG" 2>&1; then
    echo "## $mode: ncu failed" | tee -a "$LOG"
    RC=1
    continue
  fi
  { echo "################ $mode"; ncu -i "$WORK/$mode.ncu-rep" --page details; } >>"$OUT_DIR/ncu_details.txt" 2>&1
  ncu -i "$WORK/$mode.ncu-rep" --page source --csv --print-source sass 2>>"$LOG" |
    gzip >"$OUT_DIR/src_$mode.csv.gz"
  "$PY" -m benchmarks.ncu_summary "$OUT_DIR/src_$mode.csv.gz" >>"$OUT_DIR/profile_summary.txt" 2>>"$LOG" || RC=1
done
cat "$OUT_DIR/profile_summary.txt"
exit "$RC"
