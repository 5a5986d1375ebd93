"""The planner's modelled forward step (us) on an H100/H200 as the host
reports it with the cluster kernels built (132 SMs, 16 co-resident 8-CTA
clusters, 7 of 16 CTAs), with the pipelined push (default) and with every
push at the step's end (RNNFUSE_CLUSTER_PUSH=step). Output: model_push.txt.
Run from the repository root after `python setup.py develop`."""
import json

import torch

import rnnfuse.ops  # noqa: F401

OPS = torch.ops.rnnfuse
DEV = [9, 0, 132, 0, 232448, 233472, 65536, 65536, 1, 1, 16, 7]


def plan(cell, dt, H, B, grid, slice_push):
    return json.loads(OPS.persistent_plan(cell, dt, H, B, 1024, 0, 1, True, DEV, grid, True,
                                          False, 1, slice_push))


print("cell dtype H B | chosen path (default grid+cluster): tier us/step | "
      "cluster-only: step-push us -> slice-push us (R, NG, P)")
for cell in ("LSTM", "GRU"):
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        for H, B in ((256, 16), (512, 8), (512, 64), (768, 16), (768, 64)):
            best, bstep = plan(cell, dt, H, B, True, True), plan(cell, dt, H, B, True, False)
            s, f = plan(cell, dt, H, B, False, False), plan(cell, dt, H, B, False, True)
            c = (f"{s['us_per_step']:.3f} -> {f['us_per_step']:.3f} (R{f['R']}, NG{f['NG']}, P{f['P']})"
                 if f["tier"] == "cluster" else f"- ({f['reason'][:50]})")
            print(f"{cell} {str(dt)[6:]} H={H} B={B} | step push: {bstep['tier']} "
                  f"{bstep.get('us_per_step', 0):.3f}; slice push: {best['tier']} "
                  f"{best.get('us_per_step', 0):.3f} | {c}")
