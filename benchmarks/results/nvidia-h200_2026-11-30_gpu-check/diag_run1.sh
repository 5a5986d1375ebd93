#!/usr/bin/env bash
# Second GPU window of 2026-11-30: tracebacks of the first check's failures,
# the racecheck exclusion, and ncu on the two forward tiers.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
L=$OUT/console.log
T0=$(date +%s); el() { echo "## +$(( $(date +%s) - T0 ))s $*" | tee -a $L; }
el build
TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 timeout 200 python3 setup.py build_ext --inplace > /tmp/build.log 2>&1 || { tail -60 /tmp/build.log >> $L; exit 1; }
el tests
timeout 90 python3 -m pytest -rfE --tb=long -p no:cacheprovider -q tests/test_cuda_bidir.py \
  tests/test_cuda_persistent_cluster_bwd.py::test_partitions_it_cannot_run_are_refused \
  "tests/test_cuda_persistent.py::test_fallbacks_run_the_per_step_kernels" > $OUT/tests_tb.log 2>&1
timeout 60 python3 -m pytest -rfE --tb=long -p no:cacheprovider -q tests/test_cuda_persistent_cluster.py \
  -k pipelined_push_over_several_chunks >> $OUT/tests_tb.log 2>&1
el ptests
RNNFUSE_PERSISTENT_WATCHDOG_S=5 timeout 80 python3 -m benchmarks.pytest_resume --junit /tmp/p.xml \
  --deadline-s 65 --per-test-s 40 tests/test_cuda_persistent*.py -- -q -rfE --tb=short -p no:cacheprovider > $OUT/ptests.log 2>&1
el sanitizer
compute-sanitizer --help > /tmp/cs_help.txt 2>&1; grep -n -i -A4 "kernel-name" /tmp/cs_help.txt >> $OUT/race.log
PYTORCH_NO_CUDA_MEMORY_CACHING=1 RNNFUSE_PERSISTENT_WATCHDOG_S=60 timeout 60 compute-sanitizer --tool racecheck \
  --kernel-name-exclude kns=nvjet --error-exitcode 1 python3 benchmarks/sanitizer_cases.py --subset race \
  --with-persistent -k H400 >> $OUT/race.log 2>&1; echo "racecheck with exclusion rc=$?" >> $OUT/race.log
el ncu
timeout 150 ncu --target-processes all -k regex:'persist_(cluster|fwd)_kernel' --launch-count 2 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section LaunchStats \
  --section Occupancy --section SourceCounters --section MemoryWorkloadAnalysis -o $OUT/prof \
  python3 diag/prof_fwd.py  # (this folder's prof_fwd.py) cluster grid >> $L 2>&1
timeout 30 ncu -i $OUT/prof.ncu-rep --page details > $OUT/ncu_details.txt 2>&1
timeout 30 ncu -i $OUT/prof.ncu-rep --page source --csv --print-source sass > $OUT/ncu_sass.csv 2>&1 || echo "source page rc=$?" >> $L
ls -la $OUT >> $L
el done
