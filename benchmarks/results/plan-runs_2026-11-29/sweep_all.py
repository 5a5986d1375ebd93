"""Every partition the planner picks over both GPU presets (standard and
quick, sequence modules), on four devices' properties, run on the emulators
in float64 against the CPU spec (tests/test_persistent_plan_runs.py's
run_plan: padded and packed, T=2, bound 1e-12). CI runs the GPU check's
points on the H100 models only; this is the whole sweep (about 10 minutes
on 2 cores).

Run from the repository root, after the build:
    PYTHONPATH=.:tests python benchmarks/results/plan-runs_2026-11-29/sweep_all.py
"""
import sys
import time

from benchmarks import grid
from test_persistent_plan import A100, H100, MPS_HALF, H100_CLUSTERS
from test_persistent_plan_runs import distinct_plans, run_plan

# MPS at half the SMs, with 8 and 3 co-resident 8- and 16-CTA clusters ([I]).
MPS_CLUSTERS = list(MPS_HALF[:10]) + [8, 3]
DEVICES = {"h100+clusters": (H100_CLUSTERS, True), "h100 grid only": (H100, False),
           "a100": (A100, False), "mps-half+clusters": (MPS_CLUSTERS, True)}

plans = distinct_plans(grid.preset("standard", "cuda") + grid.preset("quick", "cuda"), DEVICES)
start, failed = time.time(), 0
for key in sorted(plans, key=str):
    pl, where = plans[key]
    cell, H, B, dirs, backward = key[:5]
    t0, worst = time.time(), 0.0
    for packed in ((False,) if B == 1 else (False, True)):
        try:
            exp, got = run_plan(pl, cell, H, B, dirs, backward, packed, seed=H + B)
            errs = [(e - g).abs().max().item() for e, g in zip(exp, got)
                    if e is not None and e.numel()]
            worst = max([worst] + errs)
        except Exception as ex:  # a partition the emulator refuses is a failure too
            worst = float("inf")
            print("ERROR", key, packed, str(ex).splitlines()[0], flush=True)
    ok = worst <= 1e-12
    failed += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {worst:.1e} {time.time() - t0:6.2f}s {key} "
          f"({len(where)} plans, e.g. {where[0]})", flush=True)
print(f"{len(plans)} distinct partitions, {failed} failed, {time.time() - start:.0f} s")
sys.exit(1 if failed else 0)
