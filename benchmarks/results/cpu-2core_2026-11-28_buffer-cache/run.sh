#!/usr/bin/env bash
# Reruns this folder's measurements (CPU, from the repository root, built tree):
#   bash benchmarks/results/cpu-2core_2026-11-28_buffer-cache/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
python - "$tmp/expfn.inc" <<'PY'
import sys
s = open("csrc/cpu/kernels_impl.h").read()
a = s.index("inline Vectorized<float> exp_float("); b = s.index("inline Lanes<float> exp_acc(const Lanes<float>& x)")
c = s.index("inline Vectorized<float> tanh_float("); d = s.index("inline Lanes<float> tanh_acc(")
open(sys.argv[1], "w").write(s[a:b] + s[c:d])
PY
inc=$(python -c "import torch.utils.cpp_extension as e; print(e.include_paths()[0])")
g++ -O2 -std=c++17 -mavx512f -mavx512dq -mavx512bw -mavx512vl -mfma -I"$inc" -I"$tmp" \
    "$here/exp_accuracy.cpp" -o "$tmp/exp_accuracy"
echo "== exp_float / tanh_float vs double (AVX-512)"; "$tmp/exp_accuracy"
echo "== LSTM op times and page faults, cache on (default)"; python "$here/op_faults.py"
echo "== the same with RNNFUSE_CPU_CACHE_MB=0"; RNNFUSE_CPU_CACHE_MB=0 python "$here/op_faults.py"
echo "== bf16 LSTM T=100 B=64 H=512: module, input projection, step loop (ms)"; python "$here/bf16_lstm_parts.py" 64
