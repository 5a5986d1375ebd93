"""The drivers' allocations in one training step, on the CPU (the profiler's
memory events; the CPU buffer cache off), as H bytes per row (N = T * B rows):

  python benchmarks/results/memory-prep_2026-11-28/cpu_memory_timeline.py LSTM bfloat16 [--as-cuda]

Prints every allocation or free of at least 64 bytes per row with the op it
happened in, and the peak of live bytes beyond what was live before the step.
The op bodies (csrc/driver_*.cpp) are the same on CUDA; the CPU path alone
keeps x_proj (for double backward) and a copy of y (in-place edits), which
the CUDA path does not; --as-cuda makes the CPU path save what the CUDA
path saves instead (rnnfuse/ops.py's _input_for_recompute and
_output_for_backward answer as for a CUDA tensor), so the peak is the one
the drivers would make on CUDA.
"""
import os
import sys

os.environ.setdefault("RNNFUSE_CPU_CACHE_MB", "0")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

import rnnfuse  # noqa: E402

torch.set_num_threads(2)
cell, dtype = sys.argv[1], getattr(torch, sys.argv[2])
as_cuda = "--as-cuda" in sys.argv[3:]
if as_cuda:
    from rnnfuse import ops
    ops._input_for_recompute = lambda x_proj: None
    ops._output_for_backward = lambda y: y
T, B, H = 100, 64, 512
N = T * B
model = (rnnfuse.LSTM if cell == "LSTM" else rnnfuse.GRU)(H, H).to(dtype)
x = torch.randn(T, B, H, dtype=dtype, requires_grad=True)
grad = torch.randn(T, B, H, dtype=dtype)


def step():
    model(x)[0].backward(grad)


step()
model.zero_grad(set_to_none=True)
x.grad = None
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    step()
raw = prof.profiler.kineto_results.events()
mem = sorted([(e.start_ns(), e.nbytes()) for e in raw if e.name() == "[memory]"])
ops = sorted([e for e in raw if e.name() != "[memory]"], key=lambda e: e.start_ns())


def op_at(t):
    inner = [e.name() for e in ops if e.start_ns() <= t <= e.start_ns() + e.duration_ns()]
    return inner[-1] if inner else "-"


live = peak = 0
for t, nbytes in mem:
    live += nbytes
    peak = max(peak, live)
    if abs(nbytes) >= N * 64:
        print(f"{nbytes / N / H:+7.2f} H B/row -> live {live / N / H:6.2f}  in {op_at(t)}")
print(f"{cell} {sys.argv[2]} T={T} B={B} H={H}{' as on CUDA' if as_cuda else ''}: "
      f"peak {peak / N / H:.1f} H bytes per row")
