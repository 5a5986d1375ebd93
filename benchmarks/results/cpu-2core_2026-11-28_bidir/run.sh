#!/usr/bin/env bash
# Reproduces output.txt: the A/B of one bidirectional layer, per-direction
# path (before) vs the bidirectional op (after), both in the current build;
# then the directions' loops side by side vs one after the other.
# Run from the repository root after `python setup.py develop`:
#   bash benchmarks/results/cpu-2core_2026-11-28_bidir/run.sh
set -euo pipefail
here=$(dirname "$0")
{
  echo "# $(date -u +%F) commit $(git rev-parse --short HEAD)$(git diff --quiet || echo +changes)"
  lscpu | grep -E "Model name|^CPU\(s\)"
  python "$here/ab_bidir.py" --threads 2 --repeats 10
  python "$here/side_by_side_probe.py"
} 2>&1 | tee "$here/output.txt"
