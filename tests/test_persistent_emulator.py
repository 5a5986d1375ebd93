"""The CPU emulator of the persistent kernel (csrc/persistent/emulate.cpp)
against the CPU kernels, the executable spec (torch.ops.rnnfuse.lstm_fwd /
gru_fwd on the CPU).

The emulator runs the kernel's decomposition (ownership, per-warp k split and
fixed-order reduction, fragment maps, the packed schedule cursor, the flag
protocol with CTAs scheduled in a seeded random order) and raises on any
protocol violation, double write or unwritten output. In float64 it does
the same decomposition without rounding, so it must match the CPU kernels to
float64 precision: that proves the decomposition itself. In fp16/bf16 and
fp32 (operands rounded to TF32, as the kernel does) it must be as close to the
float64 reference as the CPU kernels at that dtype are (2x their error), plus
one rounding of the operand type.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
# One rounding of the operands the tensor cores see, doubled (fp16 2^-11,
# bf16 2^-8, TF32 2^-11), relative to the largest output magnitude.
EPS = {F16: 1e-3, BF16: 8e-3, F32: 1e-3}


def make_inputs(cell, dtype, H, B, T, packed, seed=0):
    G = 4 if cell == "LSTM" else 3
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=F64) * scale).to(dtype)

    if packed:
        lengths = sorted(torch.randint(1, T + 1, (B,), generator=gen).tolist(), reverse=True)
        lengths[0] = T
        bs = torch.tensor([sum(1 for n in lengths if n > t) for t in range(T)], dtype=torch.long)
        N = int(bs.sum())
    else:
        bs, N = None, T * B
    args = dict(x=rand(N, G * H), w=rand(G * H, H, scale=H ** -0.5), h0=rand(B, H, scale=0.5),
                bs=bs)
    if cell == "LSTM":
        args["c0"] = rand(B, H, scale=0.5)
    else:
        args["b"] = rand(G * H, scale=0.3)
    return args


def spec(cell, a, reverse, dtype=None):
    """The CPU kernel's outputs, optionally on inputs converted to dtype."""
    cv = (lambda t: t if t is None or dtype is None else t.to(dtype))
    if cell == "LSTM":
        return OPS.lstm_fwd(cv(a["x"]), cv(a["w"]), None, cv(a["h0"]), cv(a["c0"]), a["bs"],
                            reverse, True)
    return OPS.gru_fwd(cv(a["x"]), cv(a["w"]), cv(a["b"]), cv(a["h0"]), a["bs"], reverse, True)


def emulate(cell, a, reverse, J, R, hbuf=32, eb=2, seed=0, fault=0, fma=False):
    if cell == "LSTM":
        return OPS.persistent_emulate_lstm(a["x"], a["w"], a["h0"], a["c0"], a["bs"], reverse, True,
                                           J, R, hbuf, eb, seed, fault, fma)
    return OPS.persistent_emulate_gru(a["x"], a["w"], a["b"], a["h0"], a["bs"], reverse, True, J,
                                      R, hbuf, eb, seed, fault, fma)


# Partitions: (J, R, hbuf_rows, elem_bytes). Ragged last CTA, several
# replicas, an h buffer smaller than the batch (several gathers per step;
# 16 and 8 rows: less than a chunk, as where 32 rows do not fit),
# both fragment layouts (k = 16 and TF32's k = 8), CTAs wider than a slice
# (LSTM J = 16: 4 m-tiles, J = 9: 3; GRU J = 16 and 11: 3).
PARTITIONS = {
    "LSTM": [(8, 1, 32, 2), (8, 3, 32, 4), (4, 2, 32, 2), (7, 1, 32, 4), (8, 1, 64, 2),
             (8, 1, 16, 2), (8, 2, 8, 4), (16, 1, 32, 2), (16, 2, 16, 4), (9, 1, 32, 2)],
    "GRU": [(10, 1, 32, 2), (10, 4, 32, 4), (5, 2, 32, 2), (3, 1, 64, 4), (10, 1, 16, 4),
            (10, 2, 8, 2), (16, 1, 32, 4), (11, 2, 16, 2)],
}
SHAPES = [(40, 5, 6), (45, 37, 7), (17, 70, 4), (130, 3, 5)]  # (H, B, T): odd sizes


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_decomposition_equals_the_spec(cell, packed, reverse):
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_inputs(cell, F64, H, B, T, packed, seed=i)
        exp = spec(cell, a, reverse)
        for J, R, hbuf, eb in PARTITIONS[cell]:
            got = emulate(cell, a, reverse, J, R, hbuf, eb, seed=i)
            assert len(got) == len(exp)
            for k, (e, g) in enumerate(zip(exp, got)):
                err = (e - g).abs().max().item() if e.numel() else 0.0
                assert e.shape == g.shape, (k, e.shape, g.shape)
                assert err <= 1e-12, f"H{H} B{B} T{T} J{J} R{R} hbuf{hbuf} eb{eb} out{k}: {err:.3e}"


# The exact-FMA kernels' partitions: TF32's (k-tiles of 8, elem_bytes 4).
FMA_PARTITIONS = {"LSTM": [(8, 1, 32), (8, 3, 32), (7, 1, 64), (8, 1, 16), (16, 1, 32),
                           (13, 2, 16)],
                  "GRU": [(10, 1, 32), (10, 4, 32), (3, 1, 64), (10, 2, 8), (16, 2, 32)]}


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_fma_decomposition_equals_the_spec(cell, packed, reverse):
    """The exact-fp32 kernels' arithmetic (per-lane rows and k halves,
    layout.h's FMA maps, the halves added, then the warps) in double: the
    spec to float64 precision, so every product lands in its sum once."""
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_inputs(cell, F64, H, B, T, packed, seed=i)
        exp = spec(cell, a, reverse)
        for J, R, hbuf in FMA_PARTITIONS[cell]:
            got = emulate(cell, a, reverse, J, R, hbuf, 4, seed=i, fma=True)
            for k, (e, g) in enumerate(zip(exp, got)):
                err = (e - g).abs().max().item() if e.numel() else 0.0
                assert e.shape == g.shape, (k, e.shape, g.shape)
                assert err <= 1e-12, f"H{H} B{B} T{T} J{J} R{R} hbuf{hbuf} out{k}: {err:.3e}"


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_exact_fp32_is_as_close_as_the_cpu_kernel(cell):
    """fp32 with TF32 off: operands unrounded, fp32 FMAs. Against float64 the
    emulated kernel is within 2x the CPU fp32 kernel's error plus 2^-20 of
    the largest value, and at least 30x closer than the TF32 kernel's
    emulation on the same data (the TF32 rounding is really gone)."""
    J = 8 if cell == "LSTM" else 10
    for packed, reverse in ((False, False), (True, True)):
        a = make_inputs(cell, F32, 96, 19, 12, packed, seed=7)
        ref = spec(cell, a, reverse, dtype=F64)
        cpu = spec(cell, a, reverse)
        exact = emulate(cell, a, reverse, J, 2, 32, 4, fma=True)
        assert_exact_fp32(ref, cpu, exact, emulate(cell, a, reverse, J, 2, 32, 4))


def assert_rounding_like_cpu(ref, cpu, emu, dtype, label=""):
    """Each output of a reduced-precision emulation: within 2x the CPU
    kernel's error against the float64 reference, plus one operand rounding
    (EPS) of the largest value."""
    for k, (r, c, e) in enumerate(zip(ref, cpu, emu)):
        assert e.dtype == c.dtype and e.shape == c.shape
        scale = max(r.abs().max().item(), 1e-3)
        err_e = (e.double() - r).abs().max().item()
        err_c = (c.double() - r).abs().max().item()
        bound = 2 * err_c + EPS[dtype] * scale
        print(f"  {label}out{k} emulator {err_e:.2e} cpu {err_c:.2e} bound {bound:.2e}")
        assert err_e <= bound, f"{label}out{k}: {err_e:.3e} > {bound:.3e}"


def assert_exact_fp32(ref, cpu, exact, tf32):
    """Each output of the exact-FMA emulation: within 2x the CPU fp32
    kernel's error against float64 plus 2^-20 of the largest value, and at
    least 30x closer than the TF32 emulation's."""
    for k, (r, c, e, t) in enumerate(zip(ref, cpu, exact, tf32)):
        assert e.dtype == F32 and e.shape == c.shape
        scale = max(r.abs().max().item(), 1e-3)
        err_e, err_c, err_t = ((v.double() - r).abs().max().item() for v in (e, c, t))
        bound = 2 * err_c + 2 ** -20 * scale
        print(f"  out{k} fma {err_e:.2e} cpu {err_c:.2e} tf32 {err_t:.2e} bound {bound:.2e}")
        assert err_e <= bound, f"out{k}: {err_e:.3e} > {bound:.3e}"
        assert err_e * 30 < err_t, f"out{k}: fma {err_e:.2e} vs tf32 {err_t:.2e}"


def test_fma_takes_fp32_only():
    a = make_inputs("LSTM", BF16, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="exact-FMA"):
        emulate("LSTM", a, False, 8, 1, eb=2, fma=True)
    a = make_inputs("LSTM", F32, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="exact-FMA"):
        emulate("LSTM", a, False, 8, 1, eb=2, fma=True)


def make_bidir_inputs(cell, dtype, H, B, T, packed, seed=0):
    """make_inputs for both directions: x (N, 2*G*H), w / w_rev, h0 (2, B, H)
    (c0 for the LSTM, b / b_rev for the GRU)."""
    f = make_inputs(cell, dtype, H, B, T, packed, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1000)

    def like(t, scale):  # the reverse direction's own values
        return (torch.randn(t.shape, generator=gen, dtype=F64) * scale).to(dtype)

    a = dict(x=torch.cat([f["x"], like(f["x"], 1.0)], 1), w=f["w"], w_rev=like(f["w"], H ** -0.5),
             h0=torch.stack([f["h0"], like(f["h0"], 0.5)]), bs=f["bs"])
    if cell == "LSTM":
        a["c0"] = torch.stack([f["c0"], like(f["c0"], 0.5)])
    else:
        a["b"], a["b_rev"] = f["b"], like(f["b"], 0.3)
    return a


def spec_bidir(cell, a):
    if cell == "LSTM":
        return OPS.lstm_bidir_fwd(a["x"], a["w"], a["w_rev"], None, None, a["h0"], a["c0"], a["bs"],
                                  True)
    return OPS.gru_bidir_fwd(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], a["bs"], True)


def emulate_bidir(cell, a, J, R, hbuf=32, eb=2, seed=0, fma=False):
    if cell == "LSTM":
        return OPS.persistent_emulate_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"], a["c0"],
                                                 a["bs"], True, J, R, hbuf, eb, seed, fma)
    return OPS.persistent_emulate_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"],
                                            a["bs"], True, J, R, hbuf, eb, seed, fma)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_launch_equals_the_bidirectional_spec(cell, packed):
    """Both directions in one launch: each direction's CTAs read and write
    their column blocks of the (N, 2*G*H) projection and the (N, 2*H)
    output through row strides, direction 1 walks the steps reversed. In
    float64 equal to the CPU bidirectional op to 1e-12 (every output: y,
    h_n, c_n, the workspace)."""
    J = 8 if cell == "LSTM" else 10
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_bidir_inputs(cell, F64, H, B, T, packed, seed=10 + i)
        exp = spec_bidir(cell, a)
        for R, hbuf, eb, fma, wide in ((1, 32, 2, False, False), (2, 16, 4, False, False),
                                       (3, 32, 4, True, False), (1, 32, 2, False, True)):
            got = emulate_bidir(cell, a, 16 if wide else J, R, hbuf, eb, seed=i, fma=fma)
            for k, (e, g) in enumerate(zip(exp, got)):
                assert e.shape == g.shape, (k, e.shape, g.shape)
                err = (e - g).abs().max().item() if e.numel() else 0.0
                assert err <= 1e-12, f"H{H} B{B} T{T} R{R} hbuf{hbuf} fma{fma} out{k}: {err:.3e}"


def test_several_gathers_per_step():
    """B=70 with one replica and a 32-row h buffer: three gathers per step."""
    a = make_inputs("LSTM", F64, 24, 70, 5, packed=True, seed=3)
    for e, g in zip(spec("LSTM", a, True), emulate("LSTM", a, True, 8, 1, 32, 2)):
        assert (e - g).abs().max().item() <= 1e-12


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_reduced_precision_rounding_points(cell, dtype):
    """Operands as the tensor cores see them, fp32 accumulation, storage
    rounding of h: as close to the float64 reference as the CPU kernel at
    the same dtype (whose GEMM is exact fp32, no TF32)."""
    eb = 4 if dtype == F32 else 2
    J = 8 if cell == "LSTM" else 10
    for packed, reverse in ((False, False), (True, True)):
        a = make_inputs(cell, dtype, 96, 19, 12, packed, seed=7)
        ref = spec(cell, a, reverse, dtype=F64)
        cpu = spec(cell, a, reverse)
        emu = emulate(cell, a, reverse, J, 2, 32, eb)
        assert_rounding_like_cpu(ref, cpu, emu, dtype)


def test_tf32_rounding_is_applied():
    """fp32 operands are rounded to TF32 (10 mantissa bits): at the first
    step the emulator differs from the exact fp32 CPU kernel by far more than
    fp32 rounding, and inputs already representable in TF32 remove the
    difference (later steps' h is full fp32 again, so only step 0 is compared)."""
    B = 8
    a = make_inputs("LSTM", F32, 64, B, 4, False, seed=1)
    first = lambda out: out[0][:B]  # noqa: E731  (y rows of step 0)
    err = (first(emulate("LSTM", a, False, 8, 1, 32, 4)) - first(spec("LSTM", a, False))).abs().max()
    assert err > 1e-5
    for k in ("w", "h0"):  # the MMA operands: clear the low 13 mantissa bits
        a[k] = (a[k].view(torch.int32) & ~0x1FFF).view(F32)
    err = (first(emulate("LSTM", a, False, 8, 1, 32, 4)) - first(spec("LSTM", a, False))).abs().max()
    assert err < 2e-6


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_cta_order_does_not_change_a_bit(cell):
    """Any interleaving the flag protocol allows gives bitwise the same
    result: the reduction order is fixed, nothing depends on CTA timing."""
    a = make_inputs(cell, BF16, 64, 20, 6, packed=True, seed=2)
    J = 8 if cell == "LSTM" else 10
    runs = [emulate(cell, a, False, J, 2, 32, 2, seed=s) for s in (0, 1, 2)]
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


@pytest.mark.parametrize("fault", [1, 2, 3], ids=["no-wait", "one-step-short", "own-flag-only"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_broken_wait_is_caught(cell, fault):
    """The checker's own test: with the wait removed, shortened or limited to
    the CTA's own flag, the emulator must report a protocol violation."""
    a = make_inputs(cell, F64, 40, 9, 4, packed=False, seed=4)
    J = 8 if cell == "LSTM" else 10
    with pytest.raises(RuntimeError, match="protocol violation"):
        emulate(cell, a, False, J, 1, 32, 2, seed=fault, fault=fault)


@pytest.mark.parametrize("kind", ["bf16", "tf32", "fp32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_wide_ctas_give_the_bits_of_a_slice(cell, kind):
    """A CTA of up to 16 units (3 or 4 m-tiles, all at once in the kernel)
    sums every output as a slice of 8 (LSTM) or 10 (GRU) units does: the
    warps split K the same way whatever J, so the bits are equal."""
    dtype, eb, fma = {"bf16": (BF16, 2, False), "tf32": (F32, 4, False),
                      "fp32": (F32, 4, True)}[kind]
    a = make_inputs(cell, dtype, 72, 21, 5, packed=True, seed=12)
    J = 8 if cell == "LSTM" else 10
    exp = emulate(cell, a, True, J, 1, 32, eb, fma=fma)
    for wide, R in ((16, 1), (13, 2), (9 if cell == "LSTM" else 11, 1)):
        got = emulate(cell, a, True, wide, R, 32, eb, fma=fma)
        for k, (e, g) in enumerate(zip(exp, got)):
            assert torch.equal(e, g), f"J{wide} R{R} out{k}"


def test_rejects_partitions_the_kernel_cannot_run():
    a = make_inputs("LSTM", F64, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="64 weight rows"):
        emulate("LSTM", a, False, 17, 1)  # 68 rows > 64
    g = make_inputs("GRU", F64, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="epilogue items"):
        emulate("GRU", g, False, 17, 1)  # 51 rows fit 4 m-tiles, 17 x 32 items do not
    with pytest.raises(RuntimeError, match="multiple"):
        emulate("LSTM", a, False, 8, 1, hbuf=20)
    a = make_inputs("LSTM", BF16, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="elem_bytes"):
        emulate("LSTM", a, False, 8, 1, eb=4)
