"""The card's measured ceilings, once per run: a large GEMM and a large copy.

Datasheet figures are leads; these are what the device actually does today,
so per-point rates can be read as a fraction of them. The GEMM runs in each
dtype the grid uses (fp32 with TF32 off, tf32, fp16, bf16) on random data
(zeros run faster and would flatter the ceiling). The copy counts bytes read
plus bytes written, the convention KINDS.md's figures use.
"""
from __future__ import annotations

import torch

from . import timing, workload

# Sizes: large enough to reach steady state on an H100 (8192^3 is ~1 TFLOP);
# small enough for a 2-core CPU to finish in about a second.
GEMM_N = {"cuda": 8192, "cpu": 1024}
COPY_BYTES = {"cuda": 1 << 30, "cpu": 1 << 27}


def gemm_tflops(dtype: str, device: torch.device, n: int | None = None,
                budget: timing.Budget | None = None) -> float:
    n = n or GEMM_N[device.type]
    budget = budget or timing.Budget(seconds=0.3, warmup=2, min_repeats=3, max_repeats=20)
    with workload.math_mode(dtype):
        a = torch.randn(n, n, device=device, dtype=workload.TORCH_DTYPE[dtype])
        b = torch.randn(n, n, device=device, dtype=workload.TORCH_DTYPE[dtype])
        t = timing.time_fn(lambda i: torch.mm(a, b), device, budget)
    return 2 * n ** 3 / (t.median_ms * 1e-3) / 1e12


def copy_gbps(device: torch.device, nbytes: int | None = None,
              budget: timing.Budget | None = None) -> float:
    nbytes = nbytes or COPY_BYTES[device.type]
    budget = budget or timing.Budget(seconds=0.3, warmup=2, min_repeats=3, max_repeats=20)
    src = torch.randn(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    t = timing.time_fn(lambda i: dst.copy_(src), device, budget)
    return 2 * nbytes / (t.median_ms * 1e-3) / 1e9


def measure(device: torch.device, dtypes, small: bool = False) -> dict:
    """{"gemm_tflops": {dtype: TFLOP/s}, "gemm_n": n, "copy_gbps": GB/s}.

    ``small`` shrinks both measurements (tests). A failure (say, bf16 GEMM on
    an old CPU build) leaves that entry None instead of stopping the run.
    """
    n = 256 if small else GEMM_N[device.type]
    nbytes = (1 << 22) if small else COPY_BYTES[device.type]
    out = {"gemm_n": n, "gemm_tflops": {}, "copy_bytes": nbytes, "copy_gbps": None}
    for d in sorted(set(dtypes)):
        try:
            out["gemm_tflops"][d] = gemm_tflops(d, device, n)
        except RuntimeError as e:  # unsupported dtype on this device
            out["gemm_tflops"][d] = None
            out.setdefault("errors", {})[f"gemm_{d}"] = str(e).splitlines()[0]
    try:
        out["copy_gbps"] = copy_gbps(device, nbytes)
    except RuntimeError as e:
        out.setdefault("errors", {})["copy"] = str(e).splitlines()[0]
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return out
