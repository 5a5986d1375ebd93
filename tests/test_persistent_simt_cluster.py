"""The cluster tier's CUDA kernel (cluster_kernel.cuh: its source, not a
re-implementation) executed on the CPU, one fiber per GPU thread
(csrc/cuda/persistent/simt.h), with its parameters from the CUDA host
code's own builder (operands.cpp's cluster_args).

The cluster emulator (test_persistent_emulator_cluster.py) proves the
decomposition and the mbarrier protocol as cluster_layout.h states them.
These tests prove that the kernel's code runs them. The runtime models
what the cluster tier leans on: clusters and their barrier, mbarriers
(pending arrivals and a signed tx-count, as the PTX ISA defines them),
st.async bytes in flight until a random later round, cp.async copies that
land at once or only at their wait, shared memory that starts as garbage.
- every output equals the cluster emulator's bit for bit in fp16, bf16 and
  TF32, padded and packed, both directions, ragged last CTAs, replicas,
  several chunks of rows, W fragments in shared memory, both push modes;
- fiber order and delivery order (seed) change no bit;
- both directions of a bidirectional layer in one launch;
- the runtime's own checks fire on a small kernel that breaks each rule.
What they cannot see: the memory model beyond those rules (fibers are
sequentially consistent), the hardware, timing.
"""
from __future__ import annotations

import math

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_bidir_inputs, make_inputs, spec
from test_persistent_emulator_cluster import cemu, cemu_bidir, shrinking_batch
from test_persistent_emulator_bwd import cast
from test_persistent_simt import assert_same_bits, assert_same_bits_as_emulator

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the kernels' host execution is built with CUDA")

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def csimt(cell, a, reverse, J, R, S, eb, seed=0, slice_push=True, group=1, red_pad=8):
    if cell == "LSTM":
        return OPS.persistent_simt_cluster_lstm(a["x"], a["w"], a["h0"], a["c0"], a["bs"], reverse,
                                                True, J, R, S, eb, seed, slice_push, group,
                                                red_pad)
    return OPS.persistent_simt_cluster_gru(a["x"], a["w"], a["b"], a["h0"], a["bs"], reverse, True,
                                           J, R, S, eb, seed, slice_push, group, red_pad)


# ((H, B, T), packed, reverse, [(R, S, slice_push)]): S is the most CTAs per
# cluster. H=40 in clusters of 2 and 3 (ragged last CTAs); H=45 with 3
# replicas (a pad element past H in the last CTA's 16-bit words); B=40 in
# one replica (two chunks of rows); H=130 in clusters of two (W fragments
# beyond the registers in shared memory), at 3 rows (mma_group's one-n-tile
# loop) and at 20 packed rows (3 n-tiles, then 1 as the batch shrinks).
CASES = [
    ((40, 5, 6), False, False, [(1, 2, True), (1, 4, False)]),
    ((45, 37, 5), True, True, [(3, 4, True)]),
    ((64, 40, 4), True, False, [(1, 8, True), (1, 8, False)]),
    ((130, 3, 4), False, True, [(1, 2, True)]),
    ((130, 20, 3), True, False, [(1, 2, True)]),
]


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=["fp16", "bf16", "tf32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_cluster_kernel_equals_the_emulator_bit_for_bit(cell, dtype):
    eb = 4 if dtype == F32 else 2
    J = 8 if cell == "LSTM" else 10
    for i, ((H, B, T), packed, reverse, runs) in enumerate(CASES):
        a = make_inputs(cell, dtype, H, B, T, packed, seed=40 + i)
        ref = spec(cell, cast(a, F64), reverse)
        for R, S, push in runs:
            label = f"{cell} {dtype} H{H} B{B} packed={packed} rev={reverse} R{R} S{S} push={push}"
            emu = cemu(cell, a, reverse, J, R, S, eb, seed=i, slice_push=push)
            got = csimt(cell, a, reverse, J, R, S, eb, seed=i, slice_push=push)
            assert_same_bits_as_emulator(ref, emu, got, label)


# ((H, B, T), packed, reverse, J index, [(R, S, slice_push, group, red_pad)]):
# slice groups (cluster_layout.h). H=64 in clusters of 2 (LSTM: 4 slices,
# one group of 4 or two of 2) and 3 (3, 3, 2 slices: short last groups);
# H=100 with half units in clusters of 2 (LSTM 13 and 12 slices, GRU 10 and
# 10: short last groups, holes); H=130 at S=2 (W pairs in shared memory in
# group order; in groups of 2 at 13 packed rows: 2 n-tiles, then 1); 13
# rows, packed (chunks of 16 whose second n-tile empties as the batch
# shrinks).
GROUPED_CASES = [
    ((64, 8, 4), True, False, 0, [(1, 2, True, 4, 8), (1, 3, False, 2, 0)]),
    ((64, 13, 4), True, True, 0, [(1, 2, True, 2, 0)]),
    ((100, 15, 4), True, True, 1, [(2, 2, True, 4, 0)]),
    ((130, 3, 3), False, False, 0, [(1, 2, True, 4, 8)]),
    ((130, 13, 3), True, False, 0, [(1, 2, True, 2, 0)]),
]


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=["fp16", "bf16", "tf32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_slice_groups_equal_the_emulator_bit_for_bit(cell, dtype):
    """The kernel's grouped brackets (mma_group: a pair's accumulator slots
    fixed at compile time per group size; store_group; the epilogue's
    item columns; pushes by group) under the fibers' shared-memory, DSMEM
    and mbarrier checks, equal to the emulator bit for bit."""
    eb = 4 if dtype == F32 else 2
    j_max = 8 if cell == "LSTM" else 10
    for i, ((H, B, T), packed, reverse, half, runs) in enumerate(GROUPED_CASES):
        J = j_max // 2 if half else j_max
        a = make_inputs(cell, dtype, H, B, T, packed, seed=60 + i)
        ref = spec(cell, cast(a, F64), reverse)
        for R, S, push, group, pad in runs:
            label = (f"{cell} {dtype} H{H} B{B} J{J} R{R} S{S} push={push} group={group} "
                     f"pad={pad}")
            emu = cemu(cell, a, reverse, J, R, S, eb, seed=i, slice_push=push, group=group,
                       red_pad=pad)
            got = csimt(cell, a, reverse, J, R, S, eb, seed=i, slice_push=push, group=group,
                        red_pad=pad)
            assert_same_bits_as_emulator(ref, emu, got, label)


def register_pairs_exceeded(H, J, S, eb):
    """W pairs per warp past the kRegPairs = 16 held in registers, counted
    here independently of cluster_layout.h: warp 0 has the most k-tiles
    (ceil(K-tiles / 8)), a CTA ceil(ceil(H / J) / S) slices."""
    ktiles = math.ceil(H / (16 if eb == 2 else 8))
    slices = math.ceil(math.ceil(H / J) / S)
    return slices * math.ceil(ktiles / 8) - 16


@pytest.mark.parametrize("dtype", [F16, BF16], ids=["fp16", "bf16"])
def test_gru_16bit_w_pairs_in_shared_memory(dtype):
    """The GRU's 16-bit kernels with W pairs beyond the registers: CASES
    puts them in shared memory only for the LSTM (more slices) and in TF32
    (more k-tiles). The GRU's shared memory also holds b_hh, after W. H=200
    in clusters of 2: 10 slices of 10 units x 2 k-tiles = 20 pairs, 4 in
    shared memory; one slice at a time and in groups of 2 and 4, both push
    modes, packed (the batch shrinks from 5 rows)."""
    H, J, S = 200, 10, 2
    assert register_pairs_exceeded(H, J, S, 2) == 4
    a = make_inputs("GRU", dtype, H, 5, 4, True, seed=70)
    ref = spec("GRU", cast(a, F64), False)
    for push, group in ((True, 1), (False, 2), (True, 4)):
        label = f"GRU {dtype} H{H} J{J} S{S} push={push} group={group}"
        emu = cemu("GRU", a, False, J, 1, S, 2, seed=group, slice_push=push, group=group)
        got = csimt("GRU", a, False, J, 1, S, 2, seed=group, slice_push=push, group=group)
        assert_same_bits_as_emulator(ref, emu, got, label)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_fiber_and_delivery_order_change_no_bit(cell):
    """Three schedules (seeds) of the fibers, the st.async deliveries and
    the cp.async landings, packed and reversed, two replicas."""
    a = make_inputs(cell, BF16, 48, 21, 5, True, seed=9)
    J = 8 if cell == "LSTM" else 10
    runs = [csimt(cell, a, True, J, 2, 4, 2, seed=s) for s in (1, 2, 3)]
    for s, r in enumerate(runs[1:], 2):
        assert_same_bits(runs[0], r, f"seed {s}")


def test_a_shrinking_batch_whose_rows_continue_in_the_first_chunk():
    """70 rows, then 8: at every later step the continuing rows all lie in
    the first of three chunks while the later chunks still read the current
    h buffer. The last slice's words must leave only at the step's end
    (cluster_layout.h); sent after each chunk, a peer could complete its
    phase and write into the buffer still being read."""
    a = cast(shrinking_batch(64, 70, 6, seed=21), BF16)
    for seed in range(2):
        assert_same_bits(cemu("LSTM", a, False, 8, 1, 4, 2, seed=seed),
                         csimt("LSTM", a, False, 8, 1, 4, 2, seed=seed), f"seed {seed}")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_layer_in_one_launch(cell):
    """Clusters [R, 2R) run the reverse direction on its column blocks of
    x_proj and y (row strides), in the same launch as the forward ones."""
    a = make_bidir_inputs(cell, BF16, 40, 9, 5, True, seed=11)
    J = 8 if cell == "LSTM" else 10
    # Clusters of 2 (2 or 3 slices per CTA) also in groups of 2.
    for S, group in ((4, 1), (2, 2)):
        emu = cemu_bidir(cell, a, J, 1, S, 2, group=group)
        if cell == "LSTM":
            got = OPS.persistent_simt_cluster_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"],
                                                         a["c0"], a["bs"], True, J, 1, S, 2, 0,
                                                         group)
        else:
            got = OPS.persistent_simt_cluster_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"],
                                                        a["b_rev"], a["h0"], a["bs"], True, J, 1,
                                                        S, 2, 0, group)
        assert_same_bits(emu, got, f"{cell} bidir S={S} group={group}")


# The runtime's checks, each on a small cluster kernel that breaks one rule
# (simt_selftest.cpp), and the message it must raise.
BROKEN = [
    ("uninitialised_barrier", "before its mbarrier.init"),
    ("overwritten_barrier", "overwritten by a plain shared-memory store"),
    ("missing_bytes", "__trap"),  # the phase never completes: the watchdog
    ("unwaited_bytes", "began to exit|ended mid-phase"),
    ("cp_async_unwaited", "never waited for"),
    ("cp_async_read_before_wait", "a read before the wait saw"),
]


@pytest.mark.parametrize("case, error", BROKEN, ids=[c for c, _ in BROKEN])
def test_the_runtime_catches_a_broken_rule(case, error):
    for seed in range(3):
        OPS.persistent_simt_selftest("clean", seed)  # the same kernel, unbroken, checks its words
        with pytest.raises(RuntimeError, match=error):
            OPS.persistent_simt_selftest(case, seed)


def test_rejects_what_the_cluster_kernel_cannot_run():
    a = make_inputs("LSTM", BF16, 4, 4, 3, False)
    with pytest.raises(RuntimeError, match="at least two"):
        csimt("LSTM", a, False, 8, 1, 16, 2)  # one slice: no cluster of two CTAs
    a = make_inputs("LSTM", F64, 16, 4, 3, False)
    with pytest.raises(RuntimeError, match="fp16, bf16 or fp32"):
        csimt("LSTM", a, False, 8, 1, 2, 4)
    with pytest.raises(RuntimeError, match="unknown case"):
        OPS.persistent_simt_selftest("no_such_case")
