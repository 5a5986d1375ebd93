"""The partitions persist_check's sweep will time on an H100/H200 as the host
reports it with the cluster kernels built (132 SMs, 16 co-resident 8-CTA
clusters, 7 of 16 CTAs), from the real planner with each pin, and the model's
us per step for each: the predictions the GPU run's sweep table answers.
Output: sweep_plans.txt. Run from the repository root after
`python setup.py develop`."""
import json
import os
import sys

import torch

sys.path.insert(0, "tests")
from test_benchmarks import _planner_path_info  # noqa: E402
from test_persistent_plan import H100_CLUSTERS  # noqa: E402

from benchmarks import persist_check  # noqa: E402

persist_check.path_info = _planner_path_info(H100_CLUSTERS)
for var in ("RNNFUSE_PERSISTENT_PIN", "RNNFUSE_PERSISTENT_BWD_PIN", "RNNFUSE_PERSISTENT_TIER"):
    os.environ.pop(var, None)
for shape in persist_check.SWEEPS:
    cell, dtype, H, B, T = shape
    for backward in (False, True):
        chosen = persist_check.path_info(*shape)["backward_plan" if backward else "plan"]
        print(f"{cell} {str(dtype)[6:]} H={H} B={B} T={T} {'backward' if backward else 'forward'}:")
        for tier, pin, p in sorted(persist_check.sweep_candidates(shape, backward),
                                   key=lambda c: c[2]["us_per_step"]):
            star = "*" if persist_check.plan_key(p) == persist_check.plan_key(chosen) else " "
            print(f"  {star} {p['us_per_step']:7.3f} us/step  {p['tier']:7s} P={p['P']:<3} "
                  f"J={p['J']:<2} R={p['R']:<2} hb={p['hbuf_rows']:<3} "
                  f"{'ksplit=' + str(p.get('ksplit', 1)) if backward else ''}  (pin {pin})")
print(json.dumps({"device": H100_CLUSTERS}))
