"""The CPU emulator of the persistent *backward* kernel
(csrc/persistent/emulate_bwd.cpp) against the CPU backward kernels
(torch.ops.rnnfuse.lstm_bwd / gru_bwd). The backward step is
dh^T = W_hh^T slice x dgates_next^T with the gate gradients exchanged between
CTAs; the emulator checks the exchange protocol and that the backward cursor
walks the forward schedule in reverse (its previous step is the forward's
next). float64: the decomposition must equal the spec to float64 precision;
reduced precision: within 2x the CPU kernel's error against float64, plus
one operand rounding (as test_persistent_emulator.py).
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from test_persistent_emulator import (assert_exact_fp32, assert_rounding_like_cpu,
                                      make_bidir_inputs, make_inputs, spec_bidir)

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def with_grads(a, cell, dtype, seed=11):
    gen = torch.Generator().manual_seed(seed)
    B, H = a["h0"].shape
    rand = (lambda *s: torch.randn(*s, generator=gen, dtype=F64).to(dtype))  # noqa: E731
    a["gy"], a["ghn"] = rand(a["x"].shape[0], H), rand(B, H)
    if cell == "LSTM":
        a["gcn"] = rand(B, H)
    return a


def cast(a, dtype):
    return {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v)
            for k, v in a.items()}


def spec_bwd(cell, a, reverse):
    """Forward (for y and the workspace), then the CPU backward."""
    if cell == "LSTM":
        y, _, _, ws = OPS.lstm_fwd(a["x"], a["w"], None, a["h0"], a["c0"], a["bs"], reverse, True)
        out = OPS.lstm_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], None, a["h0"], a["c0"], y, ws,
                           a["bs"], reverse)
        return [out[0], out[1], out[3], out[4]], (y, ws)
    y, _, ws = OPS.gru_fwd(a["x"], a["w"], a["b"], a["h0"], a["bs"], reverse, True)
    out = OPS.gru_bwd(a["gy"], a["ghn"], a["w"], a["b"], a["h0"], y, ws, a["bs"], reverse)
    return list(out), (y, ws)


def emulate_bwd(cell, a, saved, reverse, J, R, hbuf=32, eb=2, seed=0, fault=0, fma=False, S=1):
    y, ws = saved
    if cell == "LSTM":
        out = OPS.persistent_emulate_lstm_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], a["h0"], a["c0"],
                                              y, ws, a["bs"], reverse, J, R, hbuf, eb, seed, fault,
                                              fma, S)
        return [out[0], out[1], out[3], out[4]]
    return list(OPS.persistent_emulate_gru_bwd(a["gy"], a["ghn"], a["w"], a["b"], a["h0"], y, ws,
                                               a["bs"], reverse, J, R, hbuf, eb, seed, fault, fma,
                                               S))


def assert_equal_to_float64(exp, got, label):
    """Each float64 output of an emulation equals the CPU spec's to 1e-12
    (an output the spec leaves undefined, None, is not compared)."""
    assert len(exp) == len(got), label
    for k, (e, g) in enumerate(zip(exp, got)):
        if e is None:
            continue
        assert e.shape == g.shape, (label, k, e.shape, g.shape)
        err = (e - g).abs().max().item() if e.numel() else 0.0
        print(f"  {label}out{k}: {err:.2e}")
        assert err <= 1e-12, f"{label}out{k}: {err:.3e}"


# (J, R, hbuf, eb); 16 and 8 rows: the plan where 32 rows of G*H do not fit.
PARTITIONS = [(16, 1, 32, 2), (5, 2, 32, 4), (8, 3, 32, 2), (16, 1, 64, 4), (16, 1, 16, 2),
              (8, 2, 8, 4)]
SHAPES = [(45, 37, 6), (17, 70, 4), (40, 5, 7)]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_backward_decomposition_equals_the_spec(cell, packed, reverse):
    for i, (H, B, T) in enumerate(SHAPES):
        a = with_grads(make_inputs(cell, F64, H, B, T, packed, seed=i), cell, F64)
        exp, saved = spec_bwd(cell, a, reverse)
        for J, R, hbuf, eb in PARTITIONS:
            got = emulate_bwd(cell, a, saved, reverse, J, R, hbuf, eb, seed=i)
            assert_equal_to_float64(exp, got, f"H{H} B{B} T{T} J{J} R{R} ")


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_backward_rounding_points(cell, dtype):
    eb = 4 if dtype == F32 else 2
    for packed, reverse in ((False, False), (True, True)):
        a = with_grads(make_inputs(cell, dtype, 64, 19, 10, packed, seed=5), cell, dtype)
        cpu, saved = spec_bwd(cell, a, reverse)
        # The float64 reference backpropagates through the same saved forward.
        a64 = cast(a, F64)
        saved64 = tuple(t.to(F64) for t in saved)
        ref = emulate_bwd(cell, a64, saved64, reverse, 16, 1, 32, 2)
        emu = emulate_bwd(cell, a, saved, reverse, 16, 2, 32, eb)
        assert_rounding_like_cpu(ref, cpu, emu, dtype)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_fma_backward_decomposition_equals_the_spec(cell, packed, reverse):
    """The exact-fp32 backward's arithmetic (unit per lane, k halves added)
    in double equals the spec to float64 precision."""
    for i, (H, B, T) in enumerate(SHAPES):
        a = with_grads(make_inputs(cell, F64, H, B, T, packed, seed=i), cell, F64)
        exp, saved = spec_bwd(cell, a, reverse)
        for J, R, hbuf in ((16, 1, 32), (5, 2, 32), (16, 1, 64), (16, 1, 16), (5, 1, 8)):
            got = emulate_bwd(cell, a, saved, reverse, J, R, hbuf, 4, seed=i, fma=True)
            assert_equal_to_float64(exp, got, f"H{H} B{B} T{T} J{J} R{R} ")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_exact_fp32_backward_is_as_close_as_the_cpu_kernel(cell):
    """TF32 off: as close to float64 as the CPU fp32 backward, far closer
    than the TF32 backward's emulation (assert_exact_fp32)."""
    for packed, reverse in ((False, False), (True, True)):
        a = with_grads(make_inputs(cell, F32, 64, 19, 10, packed, seed=5), cell, F32)
        cpu, saved = spec_bwd(cell, a, reverse)
        a64 = cast(a, F64)
        saved64 = tuple(t.to(F64) for t in saved)
        ref = emulate_bwd(cell, a64, saved64, reverse, 16, 1, 32, 2)
        exact = emulate_bwd(cell, a, saved, reverse, 16, 2, 32, 4, fma=True)
        assert_exact_fp32(ref, cpu, exact, emulate_bwd(cell, a, saved, reverse, 16, 2, 32, 4))


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_backward_launch_equals_the_spec(cell, packed):
    """Both directions' backward in one launch: grad_y, y (GRU) and the
    gradient of x_proj (LSTM's exchanged dgates, GRU's dx) are column blocks
    read and written through row strides; float64 equal to the CPU
    bidirectional backward op to 1e-12, every output."""
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_bidir_inputs(cell, F64, H, B, T, packed, seed=20 + i)
        gen = torch.Generator().manual_seed(i)
        N = a["x"].shape[0]
        gy, ghn = torch.randn(N, 2 * H, generator=gen, dtype=F64), torch.randn(2, B, H, generator=gen, dtype=F64)
        if cell == "LSTM":
            y, _, _, ws = spec_bidir(cell, a)
            gcn = torch.randn(2, B, H, generator=gen, dtype=F64)
            exp = OPS.lstm_bidir_bwd(gy, ghn, gcn, a["w"], a["w_rev"], None, None, a["h0"], a["c0"],
                                     y, ws, a["bs"])
        else:
            y, _, ws = spec_bidir(cell, a)
            exp = OPS.gru_bidir_bwd(gy, ghn, a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], y, ws,
                                    a["bs"])
        for J, R, hbuf, eb, fma, S in ((16, 1, 32, 2, False, 1), (5, 2, 16, 4, False, 1),
                                       (8, 3, 32, 4, True, 1), (16, 1, 16, 4, True, 2),
                                       (32, 1, 16, 2, False, 2), (24, 2, 32, 4, True, 2)):
            if cell == "LSTM":
                got = OPS.persistent_emulate_lstm_bidir_bwd(gy, ghn, gcn, a["w"], a["w_rev"], a["h0"],
                                                            a["c0"], y, ws, a["bs"], J, R, hbuf, eb,
                                                            i, fma, S)
            else:
                got = OPS.persistent_emulate_gru_bidir_bwd(gy, ghn, a["w"], a["w_rev"], a["b"],
                                                           a["b_rev"], a["h0"], y, ws, a["bs"], J, R,
                                                           hbuf, eb, i, fma, S)
            assert_equal_to_float64(exp, got, f"H{H} B{B} T{T} J{J} R{R} hbuf{hbuf} fma{fma} S{S} ")


# ------------------------------------------------------------- K split
# (J, R, hbuf, eb, fma, S): S CTAs share a unit group, each holding 1/S of K;
# more than one chunk per step (hbuf 8 / 16, B > 32) so the partial-sum slots
# turn over inside a step as well as across steps. J > 16: up to S m-tiles of
# units per CTA (the last one partly padding at J = 24, 40, 45 > H ...).
SPLITS = [(16, 1, 32, 2, False, 2), (6, 2, 16, 4, False, 2), (8, 1, 8, 4, True, 4),
          (16, 1, 64, 4, True, 2), (16, 2, 8, 2, False, 4),
          (32, 1, 32, 2, False, 2), (24, 2, 16, 4, True, 2), (64, 1, 8, 2, False, 4),
          (40, 1, 16, 4, True, 4), (48, 2, 32, 4, False, 4)]


def split_fits(cell, H, eb, S):
    """Every part has k-tiles (BwdPartition::parts_nonempty; the planner splits only then)."""
    kt = -(-(4 if cell == "LSTM" else 3) * H // (16 if eb == 2 else 8))
    return (S - 1) * -(-kt // S) < kt


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_split_k_backward_equals_the_spec(cell, packed, reverse):
    """K split over 2 or 4 CTAs per unit group (partial sums exchanged
    through the emulated global slots, added in part order): float64 equal
    to the CPU backward to 1e-12, MMA and FMA arithmetic."""
    for i, (H, B, T) in enumerate(SHAPES):
        a = with_grads(make_inputs(cell, F64, H, B, T, packed, seed=i), cell, F64)
        exp, saved = spec_bwd(cell, a, reverse)
        for J, R, hbuf, eb, fma, S in SPLITS:
            if not split_fits(cell, H, eb, S):
                continue
            got = emulate_bwd(cell, a, saved, reverse, J, R, hbuf, eb, seed=i, fma=fma, S=S)
            assert_equal_to_float64(exp, got, f"H{H} B{B} T{T} J{J} R{R} S{S} fma{fma} ")


@pytest.mark.parametrize("dtype, fma", [(BF16, False), (F32, False), (F32, True)],
                         ids=["bf16", "tf32", "fp32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_split_k_rounding_points(cell, dtype, fma):
    """With K split the parts' sums are added in a different order from one
    CTA's, so not bit for bit the unsplit result; as close to float64 as
    the CPU kernel (the bound of test_backward_rounding_points)."""
    eb = 4 if dtype == F32 else 2
    a = with_grads(make_inputs(cell, dtype, 64, 40, 10, True, seed=6), cell, dtype)
    cpu, saved = spec_bwd(cell, a, True)
    ref = emulate_bwd(cell, cast(a, F64), tuple(t.to(F64) for t in saved), True, 16, 1, 32, 2)
    for S in (2, 4):
        emu = emulate_bwd(cell, a, saved, True, 16, 1, 16, eb, fma=fma, S=S)
        assert_rounding_like_cpu(ref, cpu, emu, dtype, f"S{S} ")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_missing_partial_sum_wait_is_caught(cell):
    """fault 4: a part adds the other parts' sums without waiting for their
    counts; the emulator's slots carry the chunk that wrote them, so a read
    of a stale or not yet written slot fails. Every seed."""
    a = with_grads(make_inputs(cell, F64, 40, 40, 5, packed=False, seed=4), cell, F64)
    _, saved = spec_bwd(cell, a, False)
    for seed in range(4):
        with pytest.raises(RuntimeError, match="protocol violation.*partial sums"):
            emulate_bwd(cell, a, saved, False, 8, 1, 8, 2, seed=seed, fault=4, S=2)


def test_split_k_rejects_an_empty_part():
    # K = 3 x 5 = 15: one 16-wide k-tile, nothing for a second part.
    a = with_grads(make_inputs("GRU", F64, 5, 4, 3, False), "GRU", F64)
    _, saved = spec_bwd("GRU", a, False)
    with pytest.raises(RuntimeError, match="without k-tiles"):
        emulate_bwd("GRU", a, saved, False, 5, 1, S=2)


@pytest.mark.parametrize("fault", [1, 2, 3], ids=["no-wait", "one-step-short", "own-flag-only"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_broken_wait_is_caught_in_the_backward(cell, fault):
    a = with_grads(make_inputs(cell, F64, 40, 9, 4, packed=False, seed=4), cell, F64)
    _, saved = spec_bwd(cell, a, False)
    with pytest.raises(RuntimeError, match="protocol violation"):
        emulate_bwd(cell, a, saved, False, 8, 1, seed=fault, fault=fault)


def test_split_k_rejects_units_it_cannot_share_evenly():
    """J not a multiple of S: an item's part would change with the chunk's
    rows, and a part would read the dh and dc state another part wrote the
    step before with nothing ordering the two (the kernel on the fibers gave
    wrong gradients for J = 5, S = 2 on a packed batch)."""
    a = with_grads(make_inputs("LSTM", F64, 40, 4, 3, True), "LSTM", F64)
    _, saved = spec_bwd("LSTM", a, False)
    for J, S in ((5, 2), (6, 4), (18, 4)):
        with pytest.raises(RuntimeError, match="units must be a multiple of ksplit"):
            emulate_bwd("LSTM", a, saved, False, J, 1, S=S)


def test_backward_rejects_more_than_16_units_per_part():
    """A part's epilogue items (J x 32 / S per chunk) must fit its 256
    threads' 2 slots, and a CTA holds at most 4 m-tiles (64 units)."""
    a = with_grads(make_inputs("LSTM", F64, 70, 4, 3, False), "LSTM", F64)
    _, saved = spec_bwd("LSTM", a, False)
    for J, S in ((17, 1), (33, 2), (65, 4)):
        with pytest.raises(RuntimeError, match="more than 16 x ksplit units|1 to 64 units"):
            emulate_bwd("LSTM", a, saved, False, J, 1, S=S)


@pytest.mark.parametrize("dtype, fma", [(BF16, False), (F32, False), (F32, True)],
                         ids=["bf16", "tf32", "fp32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_partitions_of_one_k_split_give_the_same_bits(cell, dtype, fma):
    """Units per CTA, replicas and the h buffer do not change a backward
    output's sums; only the K split does (its parts' sums are added in
    another order: test_split_k_rounding_points). So the partitions a pin
    selects (RNNFUSE_PERSISTENT_BWD_PIN) agree to the bit per K split."""
    eb = 4 if dtype == F32 else 2
    a = with_grads(make_inputs(cell, dtype, 64, 37, 8, True, seed=9), cell, dtype)
    _, saved = spec_bwd(cell, a, True)
    for S in (1, 2, 4):
        ref = emulate_bwd(cell, a, saved, True, 16, 1, 32, eb, fma=fma, S=S)
        # S m-tiles per CTA, the second partly padding (J a multiple of S).
        wide = ((16 * S, 1, 32), (15 * S, 2, 16)) if S > 1 else ()
        for J, R, hb in ((8, 1, 32), (16, 2, 16), (8, 4, 8)) + wide:
            got = emulate_bwd(cell, a, saved, True, J, R, hb, eb, seed=J + R, fma=fma, S=S)
            for k, (x, y) in enumerate(zip(ref, got)):
                assert torch.equal(x, y), (S, J, R, hb, k)
