"""Timing and peak-memory measurement.

Two implementations of a point are timed in alternation, repeat by repeat,
so that a change of machine load (another process, frequency scaling, a
noisy neighbour) hits both alike instead of the one that happened to be
timed during it. Repeat i times baseline then candidate when i is even,
candidate then baseline when odd (A B, B A, A B, ...): neither side always
runs second, on caches and allocator state the other one left. Each pair of
adjacent times gives a paired ratio; their spread says how far the point's
ratio can be trusted (benchmarks/noise.py).

GPU work is asynchronous, so on CUDA each call is bracketed by CUDA events
on the current stream and read after a single synchronize; on the CPU we
read a clock (time.perf_counter, injectable for tests). The repeat count is
chosen from a time budget after warm-up, so one grid fits a fast GPU and a
2-core CPU alike.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Callable, Sequence

import torch


@dataclasses.dataclass
class Timing:
    """Summary of one implementation's per-repeat times (ms)."""
    median_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float
    repeats: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Spread:
    """Summary of dimensionless samples (the paired ratios)."""
    median: float
    p10: float
    p90: float
    min: float
    max: float
    n: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Budget:
    """How long to measure: warm-up calls, then enough repeats to fill ``seconds``
    per implementation on average."""
    seconds: float = 0.5
    warmup: int = 3
    min_repeats: int = 10
    max_repeats: int = 200


@dataclasses.dataclass
class Side:
    """One implementation's timed call ``fn(i)`` (i = repeat index, for rotating
    inputs) and what runs untimed before each call (clearing gradients)."""
    fn: Callable[[int], object]
    before: Callable[[], None] | None = None


def quantile(sorted_xs: Sequence[float], q: float) -> float:
    # Nearest-rank quantile: no interpolation between two noisy samples.
    idx = min(len(sorted_xs) - 1, max(0, round(q * (len(sorted_xs) - 1))))
    return sorted_xs[idx]


def summarize(times_ms: Sequence[float]) -> Timing:
    xs = sorted(times_ms)
    return Timing(statistics.median(xs), quantile(xs, 0.1), quantile(xs, 0.9), xs[0], xs[-1],
                  len(xs))


def spread(values: Sequence[float]) -> Spread:
    xs = sorted(values)
    return Spread(statistics.median(xs), quantile(xs, 0.1), quantile(xs, 0.9), xs[0], xs[-1],
                  len(xs))


def paired_ratios(baseline_ms: Sequence[float], candidate_ms: Sequence[float]) -> list[float]:
    """baseline / candidate per repeat: the two times of a pair ran back to back."""
    if len(baseline_ms) != len(candidate_ms):
        raise ValueError("paired samples must have equal length")
    return [b / c if c > 0 else float("inf") for b, c in zip(baseline_ms, candidate_ms)]


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _order(i: int, n: int) -> range | list:
    """Side order in repeat i: forward on even repeats, reversed on odd ones."""
    return range(n) if i % 2 == 0 else list(reversed(range(n)))


def time_sides(sides: Sequence[Side], device: torch.device, budget: Budget,
               clock: Callable[[], float] = time.perf_counter) -> list[list[float]]:
    """Per-repeat times in ms of each side, the sides alternating within every repeat.

    Returns one list per side, all of the same length (the repeat count).
    ``clock`` (seconds) sizes the repeats, and times them on the CPU.
    """
    n = len(sides)

    def call(side: Side, i: int):
        if side.before is not None:
            side.before()
        return side.fn(i)

    # Warm-up, alternated too: first calls pay for allocator growth, cuDNN /
    # cuBLAS handles and plans, oneDNN primitives and lazy module loading. The
    # fastest warm-up call of each side (a later one, not the first) sizes the
    # repeats.
    per_call = [float("inf")] * n
    for i in range(max(1, budget.warmup)):
        for s in _order(i, n):
            _sync(device)
            t0 = clock()
            call(sides[s], i)
            _sync(device)
            per_call[s] = min(per_call[s], clock() - t0)
    # Each side gets `seconds` on average: n * seconds for one repeat of all sides.
    repeats = int(n * budget.seconds / max(sum(per_call), 1e-7))
    repeats = max(budget.min_repeats, min(budget.max_repeats, repeats))

    times: list[list[float]] = [[0.0] * repeats for _ in range(n)]
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        events = [[(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                   for _ in range(n)] for _ in range(repeats)]
        for i in range(repeats):
            for s in _order(i, n):
                side = sides[s]
                if side.before is not None:
                    side.before()
                start, end = events[i][s]
                start.record(stream)
                side.fn(i)
                end.record(stream)
        torch.cuda.synchronize(device)
        for i in range(repeats):
            for s in range(n):
                start, end = events[i][s]
                times[s][i] = start.elapsed_time(end)
    else:
        for i in range(repeats):
            for s in _order(i, n):
                side = sides[s]
                if side.before is not None:
                    side.before()
                t = clock()
                side.fn(i)
                times[s][i] = (clock() - t) * 1e3
    return times


def time_fn(fn: Callable[[int], object], device: torch.device, budget: Budget,
            before: Callable[[], None] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Summary of ``fn(i)``'s times alone (the ceilings' GEMM and copy)."""
    return summarize(time_sides([Side(fn, before)], device, budget, clock)[0])


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
