"""The CPU kernels (csrc/cpu/kernels_impl.h) at the sizes where their code paths
change, against the float64 reference, and under every instruction set they are
built for.

The kernels split the hidden units into blocks of one vector (16 fp32 lanes
with AVX-512, 8 with AVX2) and backward panels of several blocks, the batch
into row tiles of up to 8 rows, and the forward switches from dot products
with the weights as stored (one row per step, or fewer than 16 rows in all) to
a register-tiled GEMM on weights laid out once per call. test_ops.py's sweeps
use H <= 13 and B <= 5, which stay inside one block and one tile; these cases
cross those boundaries, on both forward paths, in every dtype.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import rnnfuse
import rnnfuse.functional as F
import rnnfuse.reference as R
from test_ops import (F64_TOL, LOW_PRECISION, _proj_size, check_close, compare_with_reference,
                      make_args, to_f64_leaves)

# B: a full tile plus a remainder for every tile height (6 rows for the LSTM
# with AVX-512, 8 for the GRU); H: full blocks plus a partial one at 8 and 16
# lanes, and a partial backward panel; B * T: below 16 rows, or B = 1, the
# forward takes the dot-product path, else the laid-out weights.
CASES = [
    # B, H, T
    (8, 37, 5),
    (13, 40, 3),
    (7, 19, 2),
    (1, 33, 6),
    (17, 16, 1),
]
DTYPES = [torch.float64, torch.float32, torch.bfloat16]


def _tolerances(dtype):
    return (F64_TOL, F64_TOL) if dtype == torch.float64 else LOW_PRECISION[dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,H,T", CASES, ids=[f"B{b}-H{h}-T{t}" for b, h, t in CASES])
@pytest.mark.parametrize("variant", ["padded", "packed-rev-proj"])
def test_lstm_kernel_boundaries(variant, B, H, T, dtype):
    packed = reverse = proj = variant != "padded"
    args = make_args("LSTM", T, B, H, packed=packed, reverse=reverse,
                     proj=_proj_size(H) if proj else None, dtype=dtype, seed=B * 100 + H + T)
    out_tol, grad_tol = _tolerances(dtype)
    compare_with_reference("LSTM", args, to_f64_leaves(args), out_tol, grad_tol,
                           relative=dtype != torch.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,H,T", CASES, ids=[f"B{b}-H{h}-T{t}" for b, h, t in CASES])
@pytest.mark.parametrize("variant", ["padded", "packed-rev-nobias"])
def test_gru_kernel_boundaries(variant, B, H, T, dtype):
    packed = reverse = variant != "padded"
    args = make_args("GRU", T, B, H, packed=packed, reverse=reverse, bias=not packed,
                     dtype=dtype, seed=B * 100 + H + T)
    out_tol, grad_tol = _tolerances(dtype)
    compare_with_reference("GRU", args, to_f64_leaves(args), out_tol, grad_tol,
                           relative=dtype != torch.float64)


# Cells (B, I, H): on the CPU fp32/fp64 cells run one fused pass
# (cpu/cell_cpu.cpp), which below 16 rows computes both products itself as
# dot products and from 16 rows takes them from ATen's GEMMs side by side;
# bf16 from 16 rows does the same, below it runs the projection GEMM and the
# layer op. The backward (cpu/cell_bwd_cpu.cpp) runs the step's loop, then
# its four GEMMs side by side (cpu/gemm_group.cpp): on the kernels' GEMM
# where a product's columns are whole panels (I, H multiples of 64 in fp32),
# else at::mm on column slices, split across threads once there is enough
# work. Partial blocks, I not a multiple of the lanes, both sides of 16, whole
# panels (64, 64, 128), and both kinds of product in one call (48, 100, 64).
CELL_CASES = [
    (1, 37, 33),
    (15, 17, 40),
    (16, 9, 19),
    (5, 1, 16),
    (41, 23, 37),
    (64, 64, 128),
    (48, 100, 64),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,I,H", CELL_CASES, ids=[f"B{b}-I{i}-H{h}" for b, i, h in CELL_CASES])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cell_kernel_boundaries(mode, bias, B, I, H, dtype):
    """One cell step and all its gradients against the float64 reference
    (the input projection, then one step of the reference layer)."""
    _cell_step_vs_reference(mode, bias, B, I, H, dtype)


@pytest.mark.parametrize("B,H", [(64, 128), (1, 512)], ids=["split", "one-after-another"])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cell_gemms_at_other_thread_counts(mode, threads, B, H):
    """The backward's side-by-side GEMMs deal their columns out by thread
    count (the suite otherwise runs at the machine's): at 1 thread (no split)
    and 3 (pieces of both kinds on every thread) the gradients still match the
    float64 reference, and a rerun gives the same bits. At batch 1 the
    products with x (I = 100: ATen's) are too thin to split, and the group
    runs one task after another, the kernels' over their panels."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        first = _cell_step_vs_reference(mode, True, B, 100, H, torch.float32)
        again = _cell_step_vs_reference(mode, True, B, 100, H, torch.float32)
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


def _cell_step_vs_reference(mode, bias, B, I, H, dtype):
    """Checks one fused cell step's outputs and gradients against the float64
    reference; returns them (outputs, then gradients)."""
    gates = 4 if mode == "LSTM" else 3
    gen = torch.Generator().manual_seed(B * 1000 + I * 10 + H)

    def rand(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5).to(dtype)

    x, h0, c0 = rand(B, I), rand(B, H), rand(B, H)
    w_ih, w_hh = rand(gates * H, I), rand(gates * H, H)
    b_ih, b_hh = (rand(gates * H), rand(gates * H)) if bias else (None, None)
    args = [t.requires_grad_() if t is not None else None
            for t in (x, w_ih, w_hh, b_ih, b_hh, h0, c0)]
    ref_args = [None if t is None else t.detach().double().requires_grad_() for t in args]

    def fused(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        if mode == "LSTM":
            return F.lstm_cell(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
        return (F.gru_cell(x, w_ih, w_hh, b_ih, b_hh, h0),)

    def ref(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
        if mode == "LSTM":
            bias_sum = None if b_ih is None else b_ih + b_hh
            _, h, c = R.lstm_layer(torch.nn.functional.linear(x, w_ih, bias_sum), w_hh, None,
                                   h0, c0)
            return h, c
        return (R.gru_layer(torch.nn.functional.linear(x, w_ih, b_ih), w_hh, b_hh, h0)[1],)

    out_tol, grad_tol = _tolerances(dtype)
    relative = dtype != torch.float64
    ref_outs = ref(*ref_args)
    outs = fused(*args)
    cot = [torch.randn(o.shape, generator=gen, dtype=torch.float64) for o in ref_outs]
    for name, e, a in zip(("h", "c"), ref_outs, outs):
        assert a.dtype == dtype
        check_close(name, e, a, out_tol, relative)
    names = ("x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0")
    used = [i for i, t in enumerate(args) if t is not None and (mode == "LSTM" or i != 6)]
    grads = torch.autograd.grad(outs, [args[i] for i in used], [c.to(dtype) for c in cot])
    ref_grads = torch.autograd.grad(ref_outs, [ref_args[i] for i in used], cot)
    for i, e, a in zip(used, ref_grads, grads):
        check_close(f"grad {names[i]}", e, a, grad_tol, relative)
    return [o.detach() for o in outs] + list(grads)


def test_kernels_follow_aten_capability():
    isa = torch.ops.rnnfuse._cpu_kernels_isa()
    assert isa in ("AVX512", "AVX2", "DEFAULT")
    aten = torch.backends.cpu.get_cpu_capability()
    if aten in ("AVX512", "AVX2") and isa == "DEFAULT":
        pytest.fail(f"ATen runs {aten} but rnnfuse's CPU kernels run DEFAULT")
    if aten == "DEFAULT":
        assert isa == "DEFAULT"


def _lower_capabilities():
    """The instruction sets below the one this machine runs (ATen can be
    told to use any of them with ATEN_CPU_CAPABILITY)."""
    order = ["DEFAULT", "AVX2", "AVX512"]
    native = torch.backends.cpu.get_cpu_capability()
    return order[:order.index(native)] if native in order else []


@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2"])
def test_kernels_under_lower_instruction_sets(capability):
    """This file's cases again in a fresh process where ATen (and so rnnfuse)
    runs a lower instruction set: every compiled variant is checked here."""
    if capability not in _lower_capabilities():
        pytest.skip(f"{capability} is not below this machine's instruction set")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=capability.lower(), RNNFUSE_ISA_CHILD=capability)
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.abspath(__file__),
         "-k", "boundaries or child_runs"],
        cwd=here, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout


def test_child_runs_the_requested_instruction_set():
    expected = os.environ.get("RNNFUSE_ISA_CHILD")
    if expected is None:
        pytest.skip("only in the child process of test_kernels_under_lower_instruction_sets")
    assert torch.ops.rnnfuse._cpu_kernels_isa() == expected


def test_only_the_isa_kernels_use_avx():
    """Nothing outside the AVX2/AVX-512 kernels may use AVX instructions: an
    inline function those files share with the rest (c10, the standard
    library) must be linked from a copy compiled without their flags, or a CPU
    without AVX-512 could run AVX-512 code in an unrelated function. setup.py
    links the ISA objects last for this; this reads the built module to check."""
    import re
    import shutil

    import rnnfuse._C as ext

    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not found")
    proc = subprocess.run([objdump, "-d", "-C", "--no-show-raw-insn", ext.__file__],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    func, offenders, isa_functions = None, {}, 0
    header = re.compile(r"^[0-9a-f]+ <(.*)>:$")
    insn = re.compile(r"^\s+[0-9a-f]+:\s+(v\w+)")
    for line in proc.stdout.splitlines():
        m = header.match(line)
        if m:
            func = m.group(1)
            isa_functions += bool(re.search(r"::AVX(2|512)::", func))
            continue
        m = insn.match(line)
        if m and func is not None and not re.search(r"avx2|avx512", func, re.IGNORECASE):
            offenders.setdefault(func, m.group(1))
    if torch.ops.rnnfuse._cpu_kernels_isa() != "DEFAULT":
        assert isa_functions > 0, "no AVX2/AVX-512 kernels found: the scan read nothing"
    # CUDA builds link host code compiled by nvcc/gcc without AVX flags too,
    # so any hit is a defect regardless of the build.
    assert not offenders, "AVX instructions outside the ISA kernels:\n" + "\n".join(
        f"  {f[:160]}: {i}" for f, i in list(offenders.items())[:20])


# ------------------------------------------------------------ rnnfuse::linear
LINEAR_SHAPES = [
    # M (rows), K, N: below and above the rows where the op switches from
    # at::linear to its own GEMM (256), partial panels (N not a multiple of 64)
    # and K not a multiple of the lanes.
    (300, 37, 45),
    (257, 512, 130),
    (5, 3, 1),
    (256, 1, 64),
    (0, 4, 3),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("M,K,N", LINEAR_SHAPES, ids=[f"M{m}-K{k}-N{n}" for m, k, n in LINEAR_SHAPES])
def test_linear_matches_float64(M, K, N, bias, dtype):
    gen = torch.Generator().manual_seed(M * 7 + K * 3 + N)
    x = torch.randn(M, K, generator=gen, dtype=torch.float64)
    w = torch.randn(N, K, generator=gen, dtype=torch.float64)
    b = torch.randn(N, generator=gen, dtype=torch.float64) if bias else None
    expected = x @ w.t() + (b if bias else 0)
    # Strided w (as a transposed view) must give the same result.
    w_strided = w.t().contiguous().t().to(dtype)
    out = torch.ops.rnnfuse.linear(x.to(dtype), w_strided, None if b is None else b.to(dtype))
    assert out.dtype == dtype and out.shape == (M, N)
    # fp32: K-term dot products, unit roundoff 6e-8 times sqrt(K)-ish growth.
    tol = F64_TOL if dtype == torch.float64 else 1e-5
    scale = max(expected.abs().max().item(), 1.0) if expected.numel() else 1.0
    err = (out.double() - expected).abs().max().item() if expected.numel() else 0.0
    print(f"  linear max err {err:.3e} (bound {tol * scale:.3e})")
    assert err <= tol * scale


def test_linear_rejects_what_it_cannot_take():
    x = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.rnnfuse.linear(x.bfloat16(), torch.randn(2, 3).bfloat16(), None)
    with pytest.raises(RuntimeError, match="w has dtype"):
        torch.ops.rnnfuse.linear(x, torch.randn(2, 3, dtype=torch.float64), None)
    with pytest.raises(RuntimeError, match="2-D"):
        torch.ops.rnnfuse.linear(x[0], torch.randn(2, 3), None)
    with pytest.raises(RuntimeError, match="b must be"):
        torch.ops.rnnfuse.linear(x, torch.randn(2, 3), torch.randn(3))


@pytest.mark.parametrize("M", [5, 300], ids=["aten", "own"])
def test_linear_opcheck_and_gradcheck(M):
    gen = torch.Generator().manual_seed(M)
    x = torch.randn(M, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(9, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(9, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.library.opcheck(torch.ops.rnnfuse.linear, (x, w, b))
    torch.library.opcheck(torch.ops.rnnfuse.linear, (x, w, None))
    assert torch.autograd.gradcheck(lambda *a: torch.ops.rnnfuse.linear(*a), (x, w, b))


# ---------------------------------------------------------------- rnnfuse::mm
MM_SHAPES = [
    # M, K, N, A given transposed: the kernels' GEMM needs N a multiple of the
    # panel width (64 fp32 / 32 fp64 lanes with AVX-512) and 4M multiply-adds;
    # K and M cross its blocks (512 and 120) with remainders.
    (301, 1100, 128, False),
    (517, 300, 64, True),
    (1000, 100, 64, False),
    (7, 5, 3, True),  # at::mm
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("M,K,N,trans", MM_SHAPES, ids=[f"M{m}-K{k}-N{n}-{'TN' if t else 'NN'}" for m, k, n, t in MM_SHAPES])
def test_mm_matches_float64(M, K, N, trans, dtype):
    gen = torch.Generator().manual_seed(M + K + N)
    a = torch.randn(K, M, generator=gen, dtype=torch.float64).t() if trans else \
        torch.randn(M, K, generator=gen, dtype=torch.float64)
    b = torch.randn(K, N, generator=gen, dtype=torch.float64)
    expected = a @ b
    out = torch.ops.rnnfuse.mm(a.to(dtype), b.to(dtype))
    assert out.dtype == dtype and out.shape == (M, N)
    tol = F64_TOL if dtype == torch.float64 else 1e-5
    scale = max(expected.abs().max().item(), 1.0)
    err = (out.double() - expected).abs().max().item()
    print(f"  mm max err {err:.3e} (bound {tol * scale:.3e})")
    assert err <= tol * scale


def test_mm_opcheck():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(300, 260, generator=gen, dtype=torch.float64)
    b = torch.randn(260, 64, generator=gen, dtype=torch.float64)
    torch.library.opcheck(torch.ops.rnnfuse.mm, (a, b))
    torch.library.opcheck(torch.ops.rnnfuse.mm, (a.t().contiguous().t(), b))


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_saturated_and_non_finite_gates_match_torch_nn(cell):
    """The float gate math (kernels_impl.h's exp_float, tanh_float) clamps
    exp's argument: saturated gates must still read as torch.nn's 0 and 1,
    and inf and NaN inputs must give torch.nn's results (NaN where it has NaN)."""
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(4, 24)
    ours = getattr(rnnfuse, cell)(4, 24)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 5, 4) * 1e4  # pre-activations far past exp's range
    x[1, 0, 0] = float("inf")
    x[2, 1, 1] = float("-inf")
    x[3, 2, 2] = float("nan")
    with torch.no_grad():
        want, _ = ref(x)
        got, _ = ours(x)
    assert torch.equal(got.isnan(), want.isnan())
    assert got.isnan().any() and not got[:3, 2:].isnan().any()
    finite = ~want.isnan()
    err = (got[finite] - want[finite]).abs().max().item()
    print(f"{cell}: max |rnnfuse - torch.nn| over saturated gates {err:.2e}")
    torch.testing.assert_close(got[finite], want[finite], rtol=0, atol=1e-6)
