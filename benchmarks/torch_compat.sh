#!/usr/bin/env bash
# Build the committed HEAD against another torch on this CPU machine and run
# the test suite with it. Default 2.11.0: the GPU machine's torch, which builds
# extensions as C++17 (CI's 2.14 builds as C++20 and accepts more) and differs
# in its Python APIs (dynamo, AOTAutograd). Run it before a GPU check when the
# C++ or the op registrations changed: a build that fails there costs the whole
# GPU window. About 20 minutes on 2 cores (a ~5 GB venv of torch and its CUDA
# libraries from PyPI, then the full CUDA build and the suite).
#
# Usage: bash benchmarks/torch_compat.sh [VERSION [DIR]]   (DIR is replaced)
set -euo pipefail
VERSION=${1:-2.11.0}
DIR=${2:-/tmp/rnnfuse-torch-$VERSION}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$DIR"
git clone -q "$ROOT" "$DIR"
cd "$DIR"
python3 -m venv .venv
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
sed "s/^torch==.*/torch==$VERSION/" requirements.txt >.requirements-compat.txt
pip install -q -r .requirements-compat.txt
python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
if ! CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} python setup.py develop >build.log 2>&1; then
  grep -n "error" build.log | head -20
  echo "torch_compat: the build failed against torch $VERSION ($DIR/build.log)"
  exit 1
fi
python -m pytest tests -q -p no:cacheprovider -rf
