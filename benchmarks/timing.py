"""Timing and peak-memory measurement of one callable.

GPU work is asynchronous, so on CUDA each repeat is bracketed by CUDA events
on the current stream and read after a single synchronize; on the CPU we use
time.perf_counter. The repeat count is chosen from a time budget after
warm-up, so one grid fits a fast GPU and a 2-core CPU alike.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable

import torch


@dataclasses.dataclass
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    repeats: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Budget:
    """How long to measure: warm-up calls, then enough repeats to fill ``seconds``."""
    seconds: float = 0.5
    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 200


def _quantile(sorted_xs: list[float], q: float) -> float:
    # Nearest-rank quantile: no interpolation between two noisy samples.
    idx = min(len(sorted_xs) - 1, max(0, round(q * (len(sorted_xs) - 1))))
    return sorted_xs[idx]


def summarize(times_ms: list[float]) -> Timing:
    xs = sorted(times_ms)
    return Timing(statistics.median(xs), _quantile(xs, 0.1), _quantile(xs, 0.9), len(xs))


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[int], object], device: torch.device, budget: Budget,
            before: Callable[[], None] | None = None) -> Timing:
    """Median time of ``fn(i)`` (i = repeat index, for rotating inputs).

    ``before`` runs outside the timed region before every call (clearing
    gradients for a training step).
    """
    def call(i):
        if before is not None:
            before()
        return fn(i)

    # Warm-up: first calls pay for allocator growth, cuDNN/cuBLAS handles and
    # plans, and lazy module loading. The fastest warm-up call (the later ones,
    # not the first) sizes the repeats.
    per_call = float("inf")
    for i in range(max(1, budget.warmup)):
        _sync(device)
        t0 = time.perf_counter()
        call(i)
        _sync(device)
        per_call = min(per_call, time.perf_counter() - t0)
    repeats = int(budget.seconds / max(per_call, 1e-7))
    repeats = max(budget.min_repeats, min(budget.max_repeats, repeats))

    times = []
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                  for _ in range(repeats)]
        for i, (start, end) in enumerate(events):
            if before is not None:
                before()
            start.record(stream)
            fn(i)
            end.record(stream)
        torch.cuda.synchronize(device)
        times = [s.elapsed_time(e) for s, e in events]
    else:
        for i in range(repeats):
            if before is not None:
                before()
            t = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - t) * 1e3)
    return summarize(times)


def peak_memory(fn: Callable[[], object], device: torch.device,
                before: Callable[[], None] | None = None) -> int | None:
    """Bytes allocated at the peak of one ``fn()`` beyond what was live before it.

    Inputs, weights and anything else alive before the call form the baseline;
    outputs, saved activations, workspaces and gradients count. None on the CPU
    (no allocator statistics there).
    """
    if device.type != "cuda":
        return None
    if before is not None:
        before()
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    del result
    return int(peak)
