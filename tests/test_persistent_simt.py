"""The grid tier's CUDA kernels (kernel.cuh, kernel_bwd.cuh: their source,
not a re-implementation) executed on the CPU, one fiber per GPU thread
(csrc/cuda/persistent/simt.h), with their parameters from the CUDA host
code's own builders (operands.cpp).

The CPU emulators (test_persistent_emulator*.py) prove the decomposition:
layout.h's maps, the reduction order and the flag protocol, against the CPU
kernels. These tests prove that the kernels' code runs that decomposition:
- every output equals the emulator's bit for bit, in fp16, bf16, TF32 and
  exact fp32, padded and packed, both directions, several partitions
  (replicas, ragged CTAs, h buffers smaller than the batch, K split);
- the fibers' order (seed) changes no bit: a thread reading shared memory
  another writes without a barrier between them would;
- the mma.sync fragments here come from the PTX ISA's tables (ptx.cuh),
  written apart from layout.h's maps, so a map that disagrees with the ISA
  shows up as a difference from the emulator;
- against the float64 CPU spec (printed), as close as the emulator is;
- the exchange through global memory obeys gpu-scope release/acquire
  (simt.h's global-memory checks): every read of y, dgates or partial sums
  that another CTA stored follows an acquire of a release that published
  it, whatever the fibers' order, and every store into them is one the
  checks see (each broken rule raises: test_the_runtime_catches_...).
What they cannot see: the rest of the memory model (fibers are otherwise
sequentially consistent), the hardware's own behaviour, timing.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import emulate, make_bidir_inputs, make_inputs, spec
from test_persistent_emulator_bwd import cast, emulate_bwd, spec_bwd, with_grads

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the kernels' host execution is built with CUDA")

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
# (dtype, fma): fp32 runs as TF32 (elem_bytes 4) or exact FMAs.
KINDS = [(F16, False), (BF16, False), (F32, False), (F32, True)]
KIND_IDS = ["fp16", "bf16", "tf32", "fp32"]


def simt(cell, a, reverse, J, R, hbuf=32, eb=2, seed=0, fma=False):
    if cell == "LSTM":
        return OPS.persistent_simt_lstm(a["x"], a["w"], a["h0"], a["c0"], a["bs"], reverse, True,
                                        J, R, hbuf, eb, seed, fma)
    return OPS.persistent_simt_gru(a["x"], a["w"], a["b"], a["h0"], a["bs"], reverse, True, J, R,
                                   hbuf, eb, seed, fma)


def simt_bwd(cell, a, saved, reverse, J, R, hbuf=32, eb=2, seed=0, fma=False, S=1):
    y, ws = saved
    if cell == "LSTM":
        out = OPS.persistent_simt_lstm_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], a["h0"], a["c0"],
                                           y, ws, a["bs"], reverse, J, R, hbuf, eb, seed, fma, S)
        return [out[0], out[1], out[3], out[4]]
    return list(OPS.persistent_simt_gru_bwd(a["gy"], a["ghn"], a["w"], a["b"], a["h0"], y, ws,
                                            a["bs"], reverse, J, R, hbuf, eb, seed, fma, S))


def assert_same_bits(exp, got, label):
    assert len(exp) == len(got), label
    for k, (e, g) in enumerate(zip(exp, got)):
        assert e.shape == g.shape and e.dtype == g.dtype, (label, k, e.shape, g.shape)
        if not torch.equal(e, g):
            diff = (e.double() - g.double()).abs()
            differ = ~((e == g) | (e.isnan() & g.isnan()))  # a NaN on one side differs too
            raise AssertionError(f"{label} out{k}: {int(differ.sum())} elements differ, "
                                 f"max {diff.max().item():.3e}")


def max_rel_error(ref, got):
    errs = [((r.double() - g.double()).abs().max() / r.double().abs().max().clamp_min(1e-30)).item()
            for r, g in zip(ref, got) if r.numel()]
    return max(errs)


def assert_same_bits_as_emulator(ref, emu, got, label):
    """Prints the kernel's error against the float64 reference, then
    requires the emulator's bits."""
    print(label, "max error vs float64:", f"{max_rel_error(ref, got):.2e}")
    assert_same_bits(emu, got, label)


# Forward partitions (J, R, hbuf_rows): a ragged last CTA, replicas, an h
# buffer of fewer rows than the replica's (R = 1, 8 rows: several gathers per
# step, chunks of 8 and 3 rows at B = 11), CTAs wider than a slice
# (kernel.cuh: LSTM J = 16, 4 m-tiles; LSTM J = 11 and GRU J = 16, 13, 3
# m-tiles; all of a CTA's m-tiles share each B fragment or h load).
FWD_PARTITIONS = {"LSTM": [(8, 1, 32), (4, 1, 8), (16, 1, 32), (11, 2, 16)],
                  "GRU": [(10, 1, 32), (5, 2, 16), (16, 1, 32), (13, 1, 8)]}
# (H, B, T): 16-byte gathers (H = 40); element-wise ones in every type at
# H = 38 (16-byte pieces need H % 8 == 0 in 16 bits, H % 4 == 0 in fp32).
SHAPES = [(40, 11, 5), (38, 7, 4)]
# (shape, packed, reverse)
CASES = [(SHAPES[0], False, False), (SHAPES[0], True, True), (SHAPES[1], True, False)]


def check_forward_cases(cell, kind, cases, partitions, seed0, label=""):
    """Every case (H, B, T, packed, reverse) at every partition (J, R,
    hbuf_rows): the forward kernel's outputs are the emulator's bits."""
    dtype, fma = kind
    eb = 4 if dtype == F32 else 2
    for i, (H, B, T, packed, reverse) in enumerate(cases):
        a = make_inputs(cell, dtype, H, B, T, packed, seed=seed0 + i)
        ref = spec(cell, cast(a, F64), reverse)
        for J, R, hbuf in partitions:
            where = (f"{label}{cell} {dtype} fma={fma} H{H} B{B} packed={packed} rev={reverse} "
                     f"J{J} R{R} hb{hbuf}")
            emu = emulate(cell, a, reverse, J, R, hbuf, eb, seed=i, fma=fma)
            got = simt(cell, a, reverse, J, R, hbuf, eb, seed=i, fma=fma)
            assert_same_bits_as_emulator(ref, emu, got, where)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_forward_kernel_equals_the_emulator_bit_for_bit(cell, kind):
    check_forward_cases(cell, kind, [shape + (packed, reverse) for shape, packed, reverse in CASES],
                        FWD_PARTITIONS[cell], 20)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_fiber_order_changes_no_bit(cell):
    """Three schedules of the fibers (seeds), packed and reversed, bf16 with
    replicas: any shared-memory read racing a write would differ."""
    a = make_inputs(cell, BF16, 33, 19, 6, True, seed=3)
    for J, R in (((8, 2) if cell == "LSTM" else (10, 2)), (16, 1)):
        runs = [simt(cell, a, True, J, R, 16, 2, seed=s) for s in (1, 2, 3)]
        for s, r in enumerate(runs[1:], 2):
            assert_same_bits(runs[0], r, f"J{J} seed {s}")


# Backward partitions (J, R, hbuf_rows, ksplit); J > 16: S m-tiles per CTA
# (the last partly padding at J = 40).
BWD_PARTITIONS = [(16, 1, 32, 1), (8, 2, 16, 1), (16, 1, 32, 2), (16, 1, 8, 4), (32, 1, 32, 2),
                  (40, 2, 8, 4), (64, 1, 16, 4)]


def check_backward_cases(cell, kind, cases, partitions, seed0=30, label=""):
    """Every case ((H, B, T), packed, reverse) at every partition (J, R,
    hbuf_rows, S): the backward kernel's gradients are the emulator's bits
    (a split that leaves a part empty is refused by both)."""
    dtype, fma = kind
    eb = 4 if dtype == F32 else 2
    for i, ((H, B, T), packed, reverse) in enumerate(cases):
        a = with_grads(make_inputs(cell, dtype, H, B, T, packed, seed=seed0 + i), cell, dtype)
        _, saved = spec_bwd(cell, a, reverse)
        ref = emulate_bwd(cell, cast(a, F64), tuple(t.double() for t in saved), reverse,
                          16, 1, 32, 2)
        for J, R, hbuf, S in partitions:
            what = (f"{label}{cell} {dtype} fma={fma} H{H} B{B} packed={packed} rev={reverse} "
                    f"J{J} R{R} hb{hbuf} S{S}")
            try:
                emu = emulate_bwd(cell, a, saved, reverse, J, R, hbuf, eb, seed=i, fma=fma, S=S)
            except RuntimeError as e:  # a split that leaves a part empty: refused by both
                assert "leaves a part without k-tiles" in str(e)
                with pytest.raises(RuntimeError, match="does not fit the kernel"):
                    simt_bwd(cell, a, saved, reverse, J, R, hbuf, eb, seed=i, fma=fma, S=S)
                continue
            got = simt_bwd(cell, a, saved, reverse, J, R, hbuf, eb, seed=i, fma=fma, S=S)
            assert_same_bits_as_emulator(ref, emu, got, what)


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_backward_kernel_equals_the_emulator_bit_for_bit(cell, kind):
    check_backward_cases(cell, kind, CASES, BWD_PARTITIONS)


@pytest.mark.parametrize("kind", [KINDS[0], KINDS[3]], ids=[KIND_IDS[0], KIND_IDS[3]])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_chunks_of_two_item_slots_equal_the_emulator(cell, kind):
    """Chunks of 17 to 32 rows (layout.h item_bits 5): a CTA of 16 units has
    512 epilogue items, so threads run both item slots (kItemSlots); the
    backward with K split 4 also loads both slots' partial sums from the
    other parts. B = 21 packed, shrinking to 5: later steps' chunks pack
    their items into one slot. The CASES above stay below 17 rows."""
    dtype, fma = kind
    eb = 4 if dtype == F32 else 2
    a = make_inputs(cell, dtype, 40, 21, 4, True, seed=50)
    ref = spec(cell, cast(a, F64), False)
    emu = emulate(cell, a, False, 16, 1, 32, eb, seed=1, fma=fma)
    got = simt(cell, a, False, 16, 1, 32, eb, seed=1, fma=fma)
    assert_same_bits_as_emulator(ref, emu, got, f"{cell} {dtype} fma={fma} forward J16")

    a = with_grads(a, cell, dtype)
    _, saved = spec_bwd(cell, a, False)
    ref = emulate_bwd(cell, cast(a, F64), tuple(t.double() for t in saved), False, 16, 1, 32, 2)
    for J, S in ((16, 1), (64, 4)):
        emu = emulate_bwd(cell, a, saved, False, J, 1, 32, eb, seed=2, fma=fma, S=S)
        got = simt_bwd(cell, a, saved, False, J, 1, 32, eb, seed=2, fma=fma, S=S)
        assert_same_bits_as_emulator(ref, emu, got, f"{cell} {dtype} fma={fma} backward J{J} S{S}")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_launch_equals_the_emulator(cell):
    """Both directions in one launch (CTAs [grid, 2 grid) run the reverse
    direction on its column blocks), forward and backward."""
    a = make_bidir_inputs(cell, BF16, 24, 9, 5, True, seed=7)
    J = 8 if cell == "LSTM" else 10
    if cell == "LSTM":
        emu = OPS.persistent_emulate_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"], a["c0"],
                                                a["bs"], True, J, 1, 32, 2, 0)
        got = OPS.persistent_simt_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"], a["c0"], a["bs"],
                                             True, J, 1, 32, 2, 0)
    else:
        emu = OPS.persistent_emulate_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"],
                                               a["h0"], a["bs"], True, J, 1, 32, 2, 0)
        got = OPS.persistent_simt_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"],
                                            a["h0"], a["bs"], True, J, 1, 32, 2, 0)
    assert_same_bits(emu, got, f"{cell} bidir forward")

    emu_b, got_b = bidir_backward(cell, a, got[0], got[-1])
    assert_same_bits(emu_b, got_b, f"{cell} bidir backward")


def bidir_backward(cell, a, y, ws):
    """Both directions' backward in one launch (J=16, R=1, bf16) of the
    forward's y and workspace, with seeded gradients: (emulator, fibers)."""
    gen = torch.Generator().manual_seed(8)
    B, H = a["h0"].shape[1], a["h0"].shape[2]
    gy = torch.randn(y.shape, generator=gen).to(BF16)
    ghn = torch.randn(2, B, H, generator=gen).to(BF16)
    if cell == "LSTM":
        gcn = torch.randn(2, B, H, generator=gen).to(BF16)
        args = (gy, ghn, gcn, a["w"], a["w_rev"], a["h0"], a["c0"], y, ws, a["bs"], 16, 1, 32, 2, 0)
        return (OPS.persistent_emulate_lstm_bidir_bwd(*args),
                OPS.persistent_simt_lstm_bidir_bwd(*args))
    args = (gy, ghn, a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], y, ws, a["bs"], 16, 1,
            32, 2, 0)
    return OPS.persistent_emulate_gru_bidir_bwd(*args), OPS.persistent_simt_gru_bidir_bwd(*args)


def test_a_flag_that_never_comes_traps_instead_of_hanging(monkeypatch):
    """The grid's last CTA never runs, so the others wait for its flags
    forever: the kernel's own watchdog (exchange.cuh) traps on the virtual
    clock, which moves only while no thread progresses. A 1 s watchdog."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT_WATCHDOG_S", "1")
    a = make_inputs("LSTM", BF16, 40, 4, 4, False, seed=1)
    args = (a["x"], a["w"], a["h0"], a["c0"], None, False, True, 8, 1, 32, 2, 0, False)
    OPS.persistent_simt_lstm(*args, 0)  # the whole grid finishes
    with pytest.raises(RuntimeError, match="__trap"):
        OPS.persistent_simt_lstm(*args, 1)


# The grid tier's flag protocol in miniature (simt_selftest.cpp), each case
# breaking one rule of gpu-scope release/acquire, and what the runtime must
# raise. On the GPU each would read stale or early bytes only sometimes; the
# checks raise whenever the read happens, so on every seed.
GRID_BROKEN = [
    ("grid_relaxed_release", "no release has published yet.*data race"),
    ("grid_relaxed_poll", "no acquire of this thread.*data race"),
    ("grid_release_before_barrier", "data race"),
    ("grid_no_barrier_after_acquire", "no acquire of this thread.*data race"),
    ("grid_plain_store", "changed without store_exchanged"),
    ("grid_two_releasers", "releases from two threads"),
]


@pytest.mark.parametrize("case, error", GRID_BROKEN, ids=[c for c, _ in GRID_BROKEN])
def test_the_runtime_catches_a_broken_release_or_acquire(case, error):
    for seed in (0, 1, 2):
        OPS.persistent_simt_selftest("grid_clean", seed)  # unbroken, it checks every word
        with pytest.raises(RuntimeError, match=error):
            OPS.persistent_simt_selftest(case, seed)


def test_rejects_dtypes_the_kernels_do_not_take():
    a = make_inputs("LSTM", F64, 16, 2, 3, False)
    with pytest.raises(RuntimeError, match="fp16, bf16 or fp32"):
        simt("LSTM", a, False, 8, 1, 32, 4)


def test_flags_a_line_apart_change_no_bit(monkeypatch):
    """RNNFUSE_PERSISTENT_FLAG_STRIDE=32 puts each CTA's step flag on its own
    128-byte line (forward, backward, and the K split's chunk counts after
    them) instead of 32 to a line: the same bits, forward and backward
    (replicas, packed and reversed, K split 2), under the fibers'
    release/acquire checks; any other value is an error."""
    a = with_grads(make_inputs("LSTM", BF16, 40, 11, 5, True, seed=31), "LSTM", BF16)
    _, saved = spec_bwd("LSTM", a, True)
    packed = (simt("LSTM", a, True, 8, 2, 8, 2, seed=3),
              simt_bwd("LSTM", a, saved, True, 16, 2, 8, 2, seed=3, S=2))
    monkeypatch.setenv("RNNFUSE_PERSISTENT_FLAG_STRIDE", "32")
    spread = (simt("LSTM", a, True, 8, 2, 8, 2, seed=3),
              simt_bwd("LSTM", a, saved, True, 16, 2, 8, 2, seed=3, S=2))
    assert_same_bits(packed[0], spread[0], "forward")
    assert_same_bits(packed[1], spread[1], "backward")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_FLAG_STRIDE", "64")
    with pytest.raises(RuntimeError, match="FLAG_STRIDE must be 1 or 32"):
        simt("LSTM", a, True, 8, 2, 8, 2)
