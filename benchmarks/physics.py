"""The arithmetic and bytes a point must move, to read a time against the card.

FLOP count (recurrent part only; the input projection x @ W_ih^T is one large
GEMM outside the recurrence and is not counted):
  forward:  T * layers * directions * 2 * B * H * G * H,  G = 4 (LSTM), 3 (GRU)
  training: 3x forward, i.e. the forward plus the backward's two products of
            the same size per step: dh = dgates @ W_hh, and dW_hh = dgates^T @ h
            accumulated over all steps. Pointwise gate math is not counted.
Per-step time is the measured time over T * layers: a layer's recurrence is
the sequential chain, and the two directions of a bidirectional layer are
independent, so they can share a step.

Cell points (LSTMCell, GRUCell) are timed per call, and one call does both
products, so their count is per call and includes the input's:
  forward:  2 * B * (I + H) * G * H;  training: 3x.
Their per-step time is the per-call time.
"""
from __future__ import annotations

GATES = {"lstm": 4, "gru": 3, "lstmcell": 4, "grucell": 3}
TRAINING_FACTOR = 3


def recurrent_flops(point) -> int:
    """FLOPs of the recurrent matrix products of one timed call (a cell: of one call)."""
    if point.is_cell:
        total = 2 * point.B * (point.I + point.H) * GATES[point.cell] * point.H
        return total * (TRAINING_FACTOR if point.mode == "training" else 1)
    per_step = 2 * point.B * point.H * GATES[point.cell] * point.H
    total = point.T * point.layers * point.directions * per_step
    return total * (TRAINING_FACTOR if point.mode == "training" else 1)


def whh_bytes(point, itemsize: int) -> int:
    """Bytes of one layer-direction's W_hh: what a non-persistent step re-reads."""
    return GATES[point.cell] * point.H * point.H * itemsize


def derived(point, median_ms: float | None, itemsize: int, ceilings: dict) -> dict:
    """Achieved rate and per-step time of one measured call, beside the card's ceilings.

    ``median_ms``: the time of one timed call; for a cell point, of one cell call.

    ``ceilings``: {"gemm_tflops": {dtype: TFLOP/s}, "copy_gbps": GB/s}; missing
    entries give None fractions.
    """
    flops = recurrent_flops(point)
    out = {"recurrent_flops": flops, "tflops": None, "us_per_step": None,
           "frac_gemm_peak": None, "whh_from_memory_us": None}
    gemm = (ceilings.get("gemm_tflops") or {}).get(point.dtype) or \
        (ceilings.get("gemm_tflops") or {}).get("bf16")
    copy = ceilings.get("copy_gbps")
    if copy:
        # Floor of a step that streams W_hh from device memory every step.
        out["whh_from_memory_us"] = whh_bytes(point, itemsize) / (copy * 1e9) * 1e6
    if median_ms is None or median_ms <= 0:
        return out
    seconds = median_ms * 1e-3
    out["tflops"] = flops / seconds / 1e12
    steps = 1 if point.is_cell else point.T * point.layers
    out["us_per_step"] = median_ms * 1e3 / steps
    if gemm:
        out["frac_gemm_peak"] = out["tflops"] / gemm
    return out
