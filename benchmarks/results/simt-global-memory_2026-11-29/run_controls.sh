#!/bin/bash
# The negative controls of NOTES.md: each mutation (mutations.py) is applied
# to copies of kernel.cuh / kernel_bwd.cuh / exchange.cuh, compiled into the
# SIMT object only (simt_run.cpp), linked into rnnfuse/_C in place of the
# real one, and tests/test_persistent_simt.py runs against it (the runtime
# self-tests and the argument checks excluded; -x: the first failure ends
# it), twice: with simt_run.cpp's
# exchanged buffers emptied (mode "off": the fibers as before the global-
# memory checks, sequentially consistent) and as committed (mode "on").
# The real _C is restored at the end.
# usage, from the repository root with a built venv active:
#   CTL=/tmp/ctl LINK_CMD=<the g++ -shared line of a setup.py build log> \
#     bash benchmarks/results/simt-global-memory_2026-11-29/run_controls.sh NAME...
set -u
: "${CTL:?a scratch directory}" "${LINK_CMD:?the link command of a setup.py build log}"
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(pwd)
SO=$(ls rnnfuse/_C*.so)
cp "$SO" "$CTL/good_C.so"
TMP=$(ls -d build/temp.*)
CFLAGS=$(sed -n 's/^cflags = //p' "$TMP/build.ninja")
POST=$(sed -n 's/^post_cflags = //p' "$TMP/build.ninja")
OBJ=$ROOT/$TMP/csrc/cuda/persistent/simt_run.o
M=$CTL/csrc/cuda/mut  # at csrc/cuda's depth: "../../persistent/..." still resolves
mkdir -p "$M"
ln -sfn "$ROOT/csrc/persistent" "$CTL/csrc/persistent"
for name in "$@"; do
  for mode in off on; do
    cp csrc/cuda/persistent/{kernel.cuh,kernel_bwd.cuh,exchange.cuh,simt_run.cpp} "$M/"
    python3 - "$name" "$M" "$HERE" "$mode" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
from mutations import MUTATIONS
def edit(path, edits):
    s = open(path).read()
    for old, new in edits:
        assert s.count(old) == 1, (path, old[:60], s.count(old))
        s = s.replace(old, new)
    open(path, "w").write(s)
m = MUTATIONS[sys.argv[1]]
edit(sys.argv[2] + "/" + m[0], m[1] if isinstance(m[1], list) else [(m[1], m[2])])
if sys.argv[4] == "off":
    p = sys.argv[2] + "/simt_run.cpp"
    s = open(p).read()
    old = "const std::vector<simt::Region> xch = exchanged_buffers(spans);"
    assert s.count(old) == 2
    open(p, "w").write(s.replace(old, "const std::vector<simt::Region> xch;"))
PY
    c++ $CFLAGS -I"$ROOT/csrc/cuda/persistent" -c "$M/simt_run.cpp" -o "$CTL/mut.o" $POST \
      2>"$CTL/cc_$name.log" || { echo "$name ($mode): compile failed"; continue; }
    LINK=$(echo "$LINK_CMD" | sed "s#$OBJ#$CTL/mut.o#; s#-o build/lib[^ ]*#-o $SO#")
    eval "$LINK" || { echo "$name ($mode): link failed"; continue; }
    timeout 1500 python -m pytest tests/test_persistent_simt.py -q -x -p no:cacheprovider \
      -k "not catches and not rejects" > "$CTL/test_${name}_$mode.log" 2>&1
    echo "$name ($mode): $(tail -1 "$CTL/test_${name}_$mode.log")"
    grep -E "^E  +(AssertionError|RuntimeError)" "$CTL/test_${name}_$mode.log" \
      | sed -E 's/[0-9]+ elements differ, max [0-9.e+-]+/N elements differ/; s/ \(CTA [0-9]+ thread [0-9]+\)//; s/CTA [0-9]+/CTA k/g; s/thread [0-9]+/thread i/g; s/bytes [0-9]+-[0-9]+/bytes X/; s/release [0-9]+/release N/; s/byte [0-9]+/byte X/' \
      | sed -E 's/^E +//' | cut -c1-200 | sort | uniq -c | sort -rn | head -3 | sed 's/^/    /'
  done
done
cp "$CTL/good_C.so" "$SO"
