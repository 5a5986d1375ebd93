"""Which cuDNN RNN algorithm PyTorch picks for a call, without calling cuDNN.

A re-implementation of ``get_algo`` and its helpers in PyTorch's
aten/src/ATen/native/cudnn/RNN.cpp (cuDNN >= 8.2.1 builds). PyTorch does not
expose its choice, and it decides what we are racing: a persistent kernel
with the weights on chip (PERSIST_STATIC, PERSIST_STATIC_SMALL_H) or a GEMM
per step plus pointwise kernels (STANDARD). Keep this in step with RNN.cpp;
tests/test_benchmarks.py pins the known cases.

PyTorch asks twice per training step: ``forward=True`` in ``_cudnn_rnn`` and
``forward=False`` in the backward, and the small-H thresholds differ between
the two, so a point can run forward and backward on different algorithms.
"""
from __future__ import annotations

STANDARD = "STANDARD"
PERSIST_STATIC = "PERSIST_STATIC"
PERSIST_STATIC_SMALL_H = "PERSIST_STATIC_SMALL_H"

# cuDNN data type per benchmark dtype name; "tf32" is float storage with
# TF32 math, which RNN.cpp does not look at.
_CUDNN_DTYPE = {
    "fp64": "double",
    "fp32": "float",
    "tf32": "float",
    "fp16": "half",
    "bf16": "bfloat16",
}


def _persist_small_h(mode: str, hidden_size: int, forward: bool, cc: tuple[int, int]) -> bool:
    """use_rnn_persist_small_h: cuDNN's small-hidden persistent kernel."""
    if cc[0] < 6:
        return False
    if mode in ("rnn_relu", "rnn_tanh"):
        return hidden_size <= (384 if forward else 256)
    if mode in ("lstm", "gru"):
        return hidden_size <= (192 if forward else 128)
    return False


def _persist_common(num_layers: int, bidirectional: bool, hidden_size: int, input_size: int) -> bool:
    """use_persist_common_heuristics: shape limits of PERSIST_STATIC."""
    return (num_layers == 1 and hidden_size <= 1024 and not bidirectional
            and hidden_size % 128 == 0 and input_size % 128 == 0)


def _persist_device(mode: str, hidden_size: int, batch: int, seq_length: int,
                    cc: tuple[int, int], sm_count: int) -> bool:
    """use_persist_device_heuristics: where PyTorch measured PERSIST_STATIC to win."""
    major, minor = cc
    if major == 7:
        if minor == 5:  # Turing is excluded outright.
            return False
        # Volta: multiples of 16 (bar 80 and 112) or 8, scaled by sequence length.
        return (((batch % 16 == 0 and batch not in (80, 112)) or batch == 8)
                and ((seq_length >= 40 and batch <= 128)
                     or (seq_length >= 20 and batch <= 96)
                     or (seq_length >= 10 and batch <= 32)))
    if major >= 8 and sm_count >= 98:  # the SM count check excludes A30
        if minor == 6:  # sm_86 (A40) hit cuDNN exceptions
            return False
        if mode == "gru":  # persistent GRU judged too flaky
            return False
        if mode == "lstm":
            return batch % 8 == 0 and batch <= 128
        return batch % 8 == 0 and batch <= 128 and (batch < 96 or hidden_size < 896)
    return False


def get_algo(*, cell: str, dtype: str, hidden_size: int, input_size: int, batch: int,
             seq_length: int, num_layers: int = 1, bidirectional: bool = False,
             proj_size: int = 0, packed: bool = False, forward: bool = True,
             cc: tuple[int, int] = (9, 0), sm_count: int = 132) -> str:
    """The algorithm PyTorch's get_algo returns for one cuDNN RNN call.

    ``cell``: "lstm", "gru", "rnn_tanh" or "rnn_relu"; ``dtype``: a name from
    ``_CUDNN_DTYPE``; ``batch`` is the mini-batch (for a packed input, PyTorch
    uses the first step's batch size); ``cc``: (major, minor) compute
    capability; ``sm_count``: multiprocessors on the device.
    """
    if dtype not in _CUDNN_DTYPE:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_CUDNN_DTYPE)}")
    if cell not in ("lstm", "gru", "rnn_tanh", "rnn_relu"):
        raise ValueError(f"unknown cell {cell!r}")
    # LSTM with projections only works with the standard algorithm.
    if proj_size != 0:
        return STANDARD
    # Persistent algorithms reject packed input with varying lengths.
    if packed:
        return STANDARD
    cudnn_dtype = _CUDNN_DTYPE[dtype]
    if cudnn_dtype != "double" and _persist_small_h(cell, hidden_size, forward, cc):
        return PERSIST_STATIC_SMALL_H
    if (cudnn_dtype == "half"
            and _persist_common(num_layers, bidirectional, hidden_size, input_size)
            and _persist_device(cell, hidden_size, batch, seq_length, cc, sm_count)):
        return PERSIST_STATIC
    return STANDARD


def algos_for_point(point, cc: tuple[int, int], sm_count: int) -> dict:
    """Forward and (in training) backward algorithm for a benchmark point."""
    kw = dict(cell=point.cell, dtype=point.dtype, hidden_size=point.H, input_size=point.I,
              batch=point.B, seq_length=point.T, num_layers=point.layers,
              bidirectional=point.bidirectional, cc=cc, sm_count=sm_count)
    out = {"forward": get_algo(forward=True, **kw)}
    out["backward"] = get_algo(forward=False, **kw) if point.mode == "training" else None
    return out
