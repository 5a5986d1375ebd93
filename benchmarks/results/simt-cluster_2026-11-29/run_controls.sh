#!/bin/bash
# The negative controls of NOTES.md: each mutation (mutations.py) is applied
# to copies of cluster_kernel.cuh / cluster_exchange.cuh, compiled into the
# SIMT object only (simt_cluster_run.cpp), linked into rnnfuse/_C in place
# of the real one, and tests/test_persistent_simt_cluster.py runs against
# it (the runtime self-tests and the argument checks excluded). The real
# _C is restored at the end.
# usage, from the repository root with a built venv active:
#   CTL=/tmp/ctl LINK_CMD=<the g++ -shared line of a setup.py build log> \
#     bash benchmarks/results/simt-cluster_2026-11-29/run_controls.sh NAME...
set -u
: "${CTL:?a scratch directory}" "${LINK_CMD:?the link command of a setup.py build log}"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(pwd)
SO=$(ls rnnfuse/_C*.so)
cp "$SO" "$CTL/good_C.so"
TMP=$(ls -d build/temp.*)
CFLAGS=$(sed -n 's/^cflags = //p' "$TMP/build.ninja")
POST=$(sed -n 's/^post_cflags = //p' "$TMP/build.ninja")
OBJ=$ROOT/$TMP/csrc/cuda/persistent/simt_cluster_run.o
M=$CTL/csrc/cuda/mut  # at csrc/cuda's depth: "../../persistent/..." still resolves
mkdir -p "$M"
ln -sfn "$ROOT/csrc/persistent" "$CTL/csrc/persistent"
for name in "$@"; do
  cp csrc/cuda/persistent/{cluster_kernel.cuh,cluster_exchange.cuh,simt_cluster_run.cpp} "$M/"
  python3 - "$name" "$M" "$HERE" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
from mutations import MUTATIONS
m = MUTATIONS[sys.argv[1]]
f, edits = m[0], (m[1] if isinstance(m[1], list) else [(m[1], m[2])])
p = sys.argv[2] + "/" + f
s = open(p).read()
for old, new in edits:
    assert s.count(old) == 1, (sys.argv[1], s.count(old))
    s = s.replace(old, new)
open(p, "w").write(s)
PY
  c++ $CFLAGS -I"$ROOT/csrc/cuda/persistent" -c "$M/simt_cluster_run.cpp" -o "$CTL/mut.o" $POST \
    2>"$CTL/cc_$name.log" || { echo "$name: compile failed"; continue; }
  LINK=$(echo "$LINK_CMD" | sed "s#$OBJ#$CTL/mut.o#; s#-o build/lib[^ ]*#-o $SO#")
  eval "$LINK" || { echo "$name: link failed"; continue; }
  timeout 1500 python -m pytest tests/test_persistent_simt_cluster.py -q -p no:cacheprovider \
    -k "not runtime and not rejects" > "$CTL/test_$name.log" 2>&1
  echo "$name: $(tail -1 "$CTL/test_$name.log")"
  grep -E "^E  +(AssertionError|RuntimeError)" "$CTL/test_$name.log" \
    | sed -E 's/[0-9]+ elements differ, max [0-9.e+-]+/N elements differ/; s/ \(CTA [0-9]+ thread [0-9]+\)//; s/CTA [0-9]+/CTA k/g; s/offset [0-9]+/offset X/g' \
    | sed -E 's/^E +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -3 | sed 's/^/    /'
done
cp "$CTL/good_C.so" "$SO"
