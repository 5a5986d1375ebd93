#!/usr/bin/env bash
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
L=$OUT/console.log
T0=$(date +%s); el() { echo "## +$(( $(date +%s) - T0 ))s $*" | tee -a $L; }
el build
TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 timeout 150 python3 setup.py build_ext --inplace > /tmp/build.log 2>&1 || { tail -60 /tmp/build.log >> $L; exit 1; }
el segv
gcc -shared -fPIC -o /tmp/segv.so diag/segv.c >> $L 2>&1
LD_PRELOAD=/tmp/segv.so timeout 40 python3 -m pytest -p no:faulthandler -p no:cacheprovider -q \
  tests/test_cuda_persistent_cluster_bwd.py::test_partitions_it_cannot_run_are_refused > $OUT/segv.log 2>&1
echo "rc=$?" >> $OUT/segv.log
timeout 20 python3 diag/symbolize.py $OUT/segv.log >> $OUT/segv.log 2>&1
el bidir
timeout 60 python3 -m pytest -rfE --tb=long -p no:cacheprovider -q tests/test_cuda_bidir.py > $OUT/bidir_tb.log 2>&1
el race
PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout 35 compute-sanitizer --tool racecheck \
  --kernel-name-exclude kns=nvjet --error-exitcode 1 python3 benchmarks/sanitizer_cases.py --subset race \
  --with-persistent -k H400 > $OUT/race.log 2>&1; echo "racecheck with exclusion rc=$?" >> $OUT/race.log
el done
