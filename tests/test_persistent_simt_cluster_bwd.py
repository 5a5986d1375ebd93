"""The cluster tier's backward kernel (cluster_bwd_kernel.cuh: its source)
executed on the CPU, one fiber per GPU thread (csrc/cuda/persistent/simt.h),
with its parameters from the CUDA host code's own builder (operands.cpp's
cluster_backward_args).

The cluster backward emulator (test_persistent_emulator_cluster_bwd.py)
proves the decomposition and the protocol as cluster_bwd_layout.h states
them; these tests prove that the kernel's code runs them: every output equals
the emulator's bit for bit in fp16, bf16 and TF32, LSTM and GRU, padded and
packed, both walk directions, for each m-tile stride the kernel is
instantiated for (M = 1, 2, 4, 6; holes included), short last CTAs,
replicas, several passes per step and W fragments in shared memory; and the
fibers' order and the delivery order (seed) change no bit; both directions
of a bidirectional layer in one launch (clusters [d R, (d + 1) R) on
direction d's column blocks) equal the emulator's two directions.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_inputs
from test_persistent_emulator_bwd import cast, spec_bwd, with_grads
from test_persistent_emulator_cluster_bwd import bidir_case, emulate, emulate_bidir
from test_persistent_simt import assert_same_bits, assert_same_bits_as_emulator

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the kernels' host execution is built with CUDA")

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def simt(cell, a, saved, reverse, J, R, eb, seed=0):
    y, ws = saved
    if cell == "LSTM":
        out = OPS.persistent_simt_cluster_lstm_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], a["h0"],
                                                   a["c0"], y, ws, a["bs"], reverse, J, R, eb, seed)
        return [out[0], out[1], out[3], out[4]]
    return list(OPS.persistent_simt_cluster_gru_bwd(a["gy"], a["ghn"], a["w"], a["b"], a["h0"], y,
                                                    ws, a["bs"], reverse, J, R, eb, seed))


# ((H, B, T), packed, reverse, [(J, R)]). M (m-tile slots per warp):
# H=45: 1 (warps 3..7 without m-tiles); H=200: 2 (a short last CTA); H=300:
# 4 with 3 real (holes), 16-row passes over 20 rows, W in shared memory at
# J=48; H=650: 6, 14 CTAs, W in shared memory. Reduction items per CTA
# (rows x J; a thread's item slots, 4 of them loaded before the wait): up to
# 960 (4 slots) at H=300, B=20; at H=300, B=37 (packed: 37, 28, 15 rows)
# 7, 6 and 3 slots, those past 4 loaded a round ahead in the reduction.
CASES = [
    ((45, 37, 5), True, True, [(8, 1), (16, 3)]),
    ((200, 9, 4), False, False, [(24, 1), (56, 2)]),
    ((300, 20, 3), True, False, [(48, 1)]),
    ((650, 3, 3), False, True, [(48, 1)]),
    ((300, 37, 3), True, True, [(48, 1)]),
]


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_kernel_equals_the_emulator_bit_for_bit(cell, dtype):
    eb = 4 if dtype == F32 else 2
    for i, ((H, B, T), packed, reverse, parts) in enumerate(CASES):
        a = with_grads(make_inputs(cell, dtype, H, B, T, packed, seed=40 + i), cell, dtype)
        _, saved = spec_bwd(cell, a, reverse)
        a64 = cast(a, F64)
        ref, _ = spec_bwd(cell, a64, reverse)
        for J, R in parts:
            label = f"{cell} {dtype} H{H} B{B} T{T} J{J} R{R}"
            assert_same_bits_as_emulator(ref, emulate(cell, a, saved, reverse, J, R, eb),
                                         simt(cell, a, saved, reverse, J, R, eb, seed=i), label)


def test_fiber_and_delivery_order_change_no_bit():
    a = with_grads(make_inputs("LSTM", BF16, 45, 37, 5, True, seed=7), "LSTM", BF16)
    _, saved = spec_bwd("LSTM", a, False)
    first = simt("LSTM", a, saved, False, 8, 2, 2, seed=0)
    for seed in (1, 2):
        assert_same_bits(first, simt("LSTM", a, saved, False, 8, 2, 2, seed=seed), f"seed {seed}")


def test_partitions_it_cannot_run_are_refused():
    a = with_grads(make_inputs("LSTM", F16, 40, 4, 3, False), "LSTM", F16)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="at least two"):
        simt("LSTM", a, saved, False, 40, 1, 2)
    with pytest.raises(RuntimeError, match="elem_bytes"):
        simt("LSTM", a, saved, False, 8, 1, 4)
    b = with_grads(make_inputs("LSTM", F64, 40, 4, 3, False), "LSTM", F64)
    _, saved = spec_bwd("LSTM", b, False)
    with pytest.raises(RuntimeError, match="fp16, bf16 or fp32"):
        simt("LSTM", b, saved, False, 8, 1, 2)


@pytest.mark.parametrize("cell, dtype, H, B, T, packed, J, R", [
    ("LSTM", BF16, 45, 11, 4, True, 16, 2), ("GRU", F16, 40, 9, 3, False, 8, 1),
    ("LSTM", F32, 24, 8, 3, True, 8, 1)], ids=str)
def test_both_directions_in_one_launch_equal_the_emulator(cell, dtype, H, B, T, packed, J, R):
    a, saved, _ = bidir_case(cell, dtype, H, B, T, packed, seed=9)
    eb = 4 if dtype == F32 else 2
    y, ws = saved
    if cell == "LSTM":
        got = list(OPS.persistent_simt_cluster_lstm_bidir_bwd(
            a["gy"], a["ghn"], a["gcn"], a["w"], a["w_rev"], a["h0"], a["c0"], y, ws, a["bs"], J,
            R, eb, 3))
    else:
        got = list(OPS.persistent_simt_cluster_gru_bidir_bwd(
            a["gy"], a["ghn"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], y, ws, a["bs"], J,
            R, eb, 3))
    assert_same_bits(emulate_bidir(cell, a, saved, J, R, eb), got, f"{cell} bidir backward")
