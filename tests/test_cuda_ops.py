"""The CUDA kernels: parity with the float64 reference and with cuDNN through
the drop-in modules, gradcheck / opcheck on CUDA, CUDA graphs, torch.compile,
determinism, devices and streams, and a large hidden size.

Every test needs a GPU (module-level skip). The whole file is sized to run
in well under 90 s on one H100.

Tolerance rule (CONVENTIONS.md section 5, after flash-attention): the float64
reference is torch.nn in float64, fed the *same* rounded weights, inputs and
cotangents as the runs under test: on the CPU for the float64 cases (so the
strict float64 comparison is independent of every GPU kernel), and cuDNN in
float64 for the reduced-precision cases (its own rounding, ~1e-16, is
negligible there, and the CPU would take most of the file's time budget).
For fp16 / bf16 (and fp32 with TF32 allowed) our max error against it must
be at most 2x cuDNN's max error (3x for gradients) plus a small epsilon
relative to the tensor's magnitude; for fp32 with TF32 off the error must be
below 1e-4 of the largest magnitude, and for float64 below 1e-10 (relative to
magnitudes above 1).
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence
from torch.utils._python_dispatch import TorchDispatchMode

import rnnfuse
import rnnfuse.functional as F
from test_ops import GRADCHECK_CASES, layer_fns, make_args

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

DEVICE = "cuda"
OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

# Epsilon of the cuDNN-relative rule, relative to the reference tensor's
# largest magnitude: about one rounding of the dtype (fp16: 2^-11 ~ 5e-4,
# bf16: 2^-8 ~ 4e-3, TF32 operands: 2^-11), doubled.
RULE_EPS = {F16: 1e-3, BF16: 8e-3, F32: 1e-3}
F32_STRICT_TOL = 1e-4   # relative to the largest magnitude, TF32 off
F64_TOL = 1e-10         # relative to max(largest magnitude, 1)


@contextlib.contextmanager
def tf32(enabled: bool):
    """Set both TF32 switches explicitly (cuDNN's governs cuDNN's RNNs and
    rnnfuse's recurrent GEMMs; matmul's the input projections)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


class RnnfuseOpCounter(TorchDispatchMode):
    """Counts the ops that run, so a test knows rnnfuse computed the result
    (the modules hand unsupported calls back to torch.nn, which would make a
    parity test pass trivially)."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))

    def assert_fused(self, mode: str, calls: int):
        fwd = f"rnnfuse.{mode.lower()}_fwd.default"
        assert self.counts[fwd] == calls, f"{fwd} ran {self.counts[fwd]} times, not {calls}"
        fallbacks = [k for k in self.counts if "rnn" in k and not k.startswith("rnnfuse.")
                     or k in ("aten.lstm.input", "aten.gru.input")]
        assert not fallbacks, f"torch.nn kernels ran: {fallbacks}"


# ------------------------------------------------------------- the sweep
@dataclasses.dataclass(frozen=True)
class Case:
    mode: str
    dtype: torch.dtype
    T: int
    B: int
    I: int
    H: int
    layers: int = 1
    bidir: bool = False
    proj: int = 0
    packed: bool = False
    state: bool = False
    batch_first: bool = False
    bias: bool = True
    tf32: bool = False  # fp32 only: TF32 allowed in cuDNN and matmul

    def __str__(self):
        dt = {F16: "f16", BF16: "bf16", F32: "tf32" if self.tf32 else "f32", F64: "f64"}
        parts = [self.mode, dt[self.dtype], f"T{self.T}", f"B{self.B}", f"I{self.I}",
                 f"H{self.H}", f"L{self.layers}"]
        parts += ["bi"] * self.bidir + [f"P{self.proj}"] * bool(self.proj)
        parts += ["packed"] * self.packed + ["h0"] * self.state + ["bf"] * self.batch_first
        parts += ["nobias"] * (not self.bias)
        return "-".join(parts)

    @property
    def kwargs(self):
        kw = dict(num_layers=self.layers, bidirectional=self.bidir, batch_first=self.batch_first,
                  bias=self.bias)
        if self.proj:
            kw["proj_size"] = self.proj
        return kw

    @property
    def seed(self):
        return sum(ord(c) * (i + 1) for i, c in enumerate(str(self))) % 100003


def _c(mode, dtype, T, B, I, H, **kw):
    return Case(mode, dtype, T, B, I, H, **kw)


CASES = [
    # LSTM
    _c("LSTM", F32, 7, 3, 10, 40),
    _c("LSTM", F32, 100, 64, 32, 200, layers=2, bidir=True, state=True),
    _c("LSTM", F32, 1, 1, 5, 96, state=True),
    _c("LSTM", F32, 7, 16, 16, 40, bidir=True, proj=24, packed=True, state=True),
    _c("LSTM", F32, 7, 64, 8, 200, layers=2, bidir=True, packed=True, state=True,
       batch_first=True),
    _c("LSTM", F32, 7, 16, 32, 96, layers=2, tf32=True),
    _c("LSTM", F32, 100, 3, 8, 200, packed=True, tf32=True, bias=False),
    _c("LSTM", F16, 7, 3, 10, 40, state=True),
    _c("LSTM", F16, 100, 64, 64, 96, layers=2, bidir=True),
    _c("LSTM", F16, 1, 16, 8, 200, proj=64),
    _c("LSTM", F16, 7, 1, 12, 200, layers=2, bidir=True, packed=True),
    _c("LSTM", F16, 7, 64, 16, 40, packed=True, state=True),
    _c("LSTM", BF16, 7, 16, 16, 40, bidir=True, packed=True, state=True, batch_first=True),
    _c("LSTM", BF16, 100, 16, 32, 200, proj=100, state=True),
    _c("LSTM", BF16, 1, 64, 16, 96, layers=2, state=True),
    _c("LSTM", BF16, 7, 3, 10, 96, layers=2, bidir=True, proj=50, packed=True),
    _c("LSTM", BF16, 100, 1, 8, 40, bidir=True, bias=False),
    _c("LSTM", F64, 7, 3, 10, 40, layers=2, bidir=True, proj=20, packed=True, state=True),
    _c("LSTM", F64, 100, 16, 16, 96, batch_first=True),
    _c("LSTM", F64, 1, 64, 8, 200, bidir=True, state=True),
    # Rows that are not 16-byte multiples and k tails: the tensor-core tiles'
    # element-by-element staging beside their 16-byte loads.
    _c("LSTM", F16, 7, 3, 12, 36, bidir=True, state=True),
    _c("LSTM", F32, 7, 16, 16, 30, packed=True, tf32=True),
    # GRU
    _c("GRU", F32, 7, 3, 10, 40),
    _c("GRU", F32, 100, 64, 32, 200, layers=2, bidir=True, state=True),
    _c("GRU", F32, 1, 1, 5, 96, state=True),
    _c("GRU", F32, 7, 16, 16, 40, bidir=True, packed=True, state=True, batch_first=True),
    _c("GRU", F32, 7, 64, 8, 200, layers=2, packed=True, state=True, bias=False),
    _c("GRU", F32, 7, 16, 32, 96, layers=2, state=True, tf32=True),
    _c("GRU", F32, 100, 3, 8, 200, bidir=True, packed=True, tf32=True),
    _c("GRU", F16, 7, 3, 10, 40, state=True),
    _c("GRU", F16, 100, 64, 64, 96, layers=2, bidir=True),
    _c("GRU", F16, 1, 16, 8, 200, bidir=True, bias=False),
    _c("GRU", F16, 7, 1, 12, 200, layers=2, packed=True),
    _c("GRU", F16, 7, 64, 16, 40, bidir=True, packed=True, state=True),
    _c("GRU", BF16, 7, 16, 16, 40, bidir=True, packed=True, state=True),
    _c("GRU", BF16, 100, 16, 32, 200, state=True),
    _c("GRU", BF16, 1, 64, 16, 96, layers=2, state=True),
    _c("GRU", BF16, 7, 3, 10, 96, layers=2, bidir=True, packed=True, batch_first=True),
    _c("GRU", BF16, 100, 1, 8, 40, bidir=True, bias=False),
    _c("GRU", F64, 7, 3, 10, 40, layers=2, bidir=True, packed=True, state=True),
    _c("GRU", F64, 100, 16, 16, 96, batch_first=True),
    _c("GRU", F64, 1, 64, 8, 200, bidir=True, state=True, bias=False),
    _c("GRU", BF16, 7, 16, 12, 36, packed=True, state=True),
    _c("GRU", F32, 7, 3, 16, 30, bidir=True, tf32=True),
]


def _check_coverage(cases):
    """Every value of every option appears for each mode (checked at import,
    so a CPU-only run still validates the sweep)."""
    for mode in ("LSTM", "GRU"):
        cs = [c for c in cases if c.mode == mode]
        seen = lambda f: {getattr(c, f) for c in cs}  # noqa: E731
        assert seen("dtype") == {F16, BF16, F32, F64}, mode
        assert seen("T") == {1, 7, 100} and seen("B") == {1, 3, 16, 64}, mode
        assert {40, 96, 200} <= seen("H"), mode
        assert seen("layers") == {1, 2}, mode
        for flag in ("bidir", "packed", "state", "batch_first", "bias", "tf32"):
            assert seen(flag) == {False, True}, (mode, flag)
        for dtype in (F16, BF16, F32, F64):
            assert {c.T for c in cs if c.dtype == dtype} == {1, 7, 100}, (mode, dtype)
        assert any(c.packed and c.bidir and c.layers == 2 for c in cs), mode
    proj = [c for c in cases if c.proj]
    assert {c.dtype for c in proj} == {F16, BF16, F32, F64}
    assert any(c.packed and c.bidir for c in proj)
    assert all(not c.tf32 or c.dtype == F32 for c in cases)
    # The tensor-core staging's unaligned rows (H not a multiple of 8).
    for mode in ("LSTM", "GRU"):
        ragged = [c for c in cases if c.mode == mode and c.H % 8]
        assert any(c.dtype in (F16, BF16) for c in ragged) and any(c.tf32 for c in ragged), mode
    assert len(set(map(str, cases))) == len(cases)


_check_coverage(CASES)


# --------------------------------------------------------------- running
def make_inputs(case: Case) -> dict:
    """float64 CPU inputs, already rounded to the case's dtype, and lengths."""
    gen = torch.Generator().manual_seed(case.seed)

    def rand(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, dtype=F64) * scale
        return t.to(case.dtype).to(F64)

    dirs = 2 if case.bidir else 1
    shape = (case.B, case.T, case.I) if case.batch_first else (case.T, case.B, case.I)
    inputs = {"x": rand(*shape)}
    if case.state:
        inputs["h0"] = rand(case.layers * dirs, case.B, case.proj or case.H, scale=0.5)
        if case.mode == "LSTM":
            inputs["c0"] = rand(case.layers * dirs, case.B, case.H, scale=0.5)
    lengths = None
    if case.packed:  # unsorted, longest = T
        lengths = torch.randint(1, case.T + 1, (case.B,), generator=gen)
        lengths[torch.randint(0, case.B, (1,), generator=gen)] = case.T
    return {"tensors": inputs, "lengths": lengths}


def forward(module, case: Case, inputs: dict, dtype, device):
    """Runs the module; returns (output tensors, packed metadata, leaves)."""
    # copy=True: fresh leaves, produced on the current stream even when the
    # inputs already are on the device.
    leaves = {k: v.to(device, dtype, copy=True).requires_grad_()
              for k, v in inputs["tensors"].items()}
    x = leaves["x"]
    if inputs["lengths"] is not None:
        x = pack_padded_sequence(x, inputs["lengths"], batch_first=case.batch_first,
                                 enforce_sorted=False)
    hx = None
    if case.state:
        hx = (leaves["h0"], leaves["c0"]) if case.mode == "LSTM" else leaves["h0"]
    module.zero_grad(set_to_none=True)
    out, state = module(x, hx)
    meta = None
    if isinstance(out, PackedSequence):
        meta = (out.batch_sizes, out.sorted_indices, out.unsorted_indices)
        out = out.data
    outs = [out] + (list(state) if case.mode == "LSTM" else [state])
    return outs, meta, leaves


def backward(module, outs, leaves, cotangents):
    torch.autograd.backward(
        outs, [c.to(o.device, o.dtype, copy=True) for c, o in zip(cotangents, outs)])
    grads = {f"d{k}": v.grad for k, v in leaves.items()}
    grads.update({f"d{n}": p.grad for n, p in module.named_parameters()})
    return grads


def make_module(cls, case: Case, state_dict, dtype, device):
    m = cls(case.I, case.H, **case.kwargs, dtype=dtype, device=device)
    m.load_state_dict({k: v.to(dtype) for k, v in state_dict.items()}, strict=True)
    return m


def judge(name, case, ref, ours, cudnn, is_grad):
    """Print and assert our error (and show cuDNN's) against the reference."""
    assert ours is not None and cudnn is not None, f"{name}: missing"
    assert ours.shape == ref.shape == cudnn.shape, f"{name}: {ours.shape} vs {ref.shape}"
    assert ours.dtype == cudnn.dtype == case.dtype, f"{name}: dtype {ours.dtype}"
    assert ours.device == cudnn.device, f"{name}: device {ours.device} vs {cudnn.device}"
    if ref.numel() == 0:
        return
    ref = ref.detach().double().cpu()
    err = (ours.detach().double().cpu() - ref).abs()
    err_c = (cudnn.detach().double().cpu() - ref).abs()
    scale = max(ref.abs().max().item(), 1e-3)
    if case.dtype == F64:
        bound = F64_TOL * max(scale, 1.0)
    elif case.dtype == F32 and not case.tf32:
        bound = F32_STRICT_TOL * scale
    else:
        bound = (3 if is_grad else 2) * err_c.max().item() + RULE_EPS[case.dtype] * scale
    print(f"  {name:36s} rnnfuse max {err.max().item():.2e} mean {err.mean().item():.2e} | "
          f"cuDNN max {err_c.max().item():.2e} mean {err_c.mean().item():.2e} | "
          f"bound {bound:.2e} (|ref| {scale:.2e})")
    assert torch.isfinite(ours).all(), f"{name}: non-finite values ({where(~torch.isfinite(ours))})"
    assert err.max().item() <= bound, (f"{name}: max err {err.max().item():.3e} > {bound:.3e} "
                                       f"({where(err > bound)})")


def where(bad: torch.Tensor) -> str:
    """How many elements are bad and the first few (row-major: for y the
    earliest time step first), to tell a partition's rows or a step's
    exchange from noise when a GPU check fails."""
    idx = bad.cpu().nonzero()
    first = ", ".join(str(tuple(i.tolist())) for i in idx[:4])
    return f"{len(idx)} of {bad.numel()} elements of shape {tuple(bad.shape)}, first at {first}"


def reference_device(case):
    return "cpu" if case.dtype == F64 else DEVICE


def reference_and_cotangents(case, inputs, low_state_dict):
    """The float64 torch.nn run, with the rounded weights; cotangents rounded
    to the case's dtype (so every run backpropagates the same values)."""
    ref_cls = nn.LSTM if case.mode == "LSTM" else nn.GRU
    device = reference_device(case)
    ref = make_module(ref_cls, case, {k: v.double() for k, v in low_state_dict.items()},
                      F64, device)
    outs, meta, leaves = forward(ref, case, inputs, F64, device)
    gen = torch.Generator().manual_seed(case.seed + 1)
    cot = [torch.randn(o.shape, generator=gen, dtype=F64).to(case.dtype).to(F64) for o in outs]
    grads = backward(ref, outs, leaves, cot)
    return (outs, meta, grads), cot


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity_with_reference_and_cudnn(case):
    print(case)
    cls_nn, cls_ours = (nn.LSTM, rnnfuse.LSTM) if case.mode == "LSTM" else (nn.GRU, rnnfuse.GRU)
    torch.manual_seed(case.seed)
    init = cls_nn(case.I, case.H, **case.kwargs, dtype=F64)
    low = {k: v.to(case.dtype) for k, v in init.state_dict().items()}
    inputs = make_inputs(case)
    with tf32(case.tf32):
        (ref_outs, ref_meta, ref_grads), cot = reference_and_cotangents(case, inputs, low)
        cudnn = make_module(cls_nn, case, low, case.dtype, DEVICE)
        c_outs, c_meta, c_leaves = forward(cudnn, case, inputs, case.dtype, DEVICE)
        c_grads = backward(cudnn, c_outs, c_leaves, cot)
        ours = make_module(cls_ours, case, low, case.dtype, DEVICE)
        with RnnfuseOpCounter() as counter:
            o_outs, o_meta, o_leaves = forward(ours, case, inputs, case.dtype, DEVICE)
        counter.assert_fused(case.mode, case.layers * (2 if case.bidir else 1))
        o_grads = backward(ours, o_outs, o_leaves, cot)
    if case.packed:
        for field, r, c, o in zip(("batch_sizes", "sorted_indices", "unsorted_indices"),
                                  ref_meta, c_meta, o_meta):
            assert torch.equal(o.cpu(), r.cpu()) and torch.equal(c.cpu(), r.cpu()), field
    else:
        assert o_meta is None
    for name, r, o, c in zip(("output", "h_n", "c_n"), ref_outs, o_outs, c_outs):
        judge(name, case, r, o, c, is_grad=False)
    assert ref_grads.keys() == o_grads.keys() == c_grads.keys()
    for name, r in ref_grads.items():
        judge(name, case, r, o_grads[name], c_grads[name], is_grad=True)


# ------------------------------------------------- large hidden size (many blocks)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_large_hidden_size(mode):
    case = Case(mode, F32, T=20, B=64, I=256, H=1024, state=True)
    test_parity_with_reference_and_cudnn(case)


# ----------------------------------------------------- gradcheck and opcheck
def to_device(args, device=DEVICE):
    """The same call's arguments on ``device`` as fresh leaves; batch_sizes
    stays on the CPU (as in a PackedSequence)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            a = a.detach().to(device).requires_grad_(a.requires_grad)
        out.append(a)
    return tuple(out)


# A subset of test_ops' cases (time budget) that still covers with/without
# w_hr and b_hh, packed and reverse for both ops.
CUDA_GRADCHECK_CASES = [GRADCHECK_CASES[i] for i in (0, 2, 3, 5, 7, 8)]


@pytest.mark.parametrize("case", CUDA_GRADCHECK_CASES, ids=lambda c: "-".join(map(str, c)))
def test_gradcheck_cuda(case):
    mode, packed, reverse, flag = case
    extra = dict(proj=2 if flag else None) if mode == "LSTM" else dict(bias=flag)
    args = to_device(make_args(mode, 3, 3, 2, packed=packed, reverse=reverse, seed=5, **extra))
    assert args[0].device.type == DEVICE
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    fn = layer_fns(mode)[0]

    def call(*tensors):
        full = list(args)
        for pos, t in zip(positions, tensors):
            full[pos] = t
        return fn(*full)

    inputs = tuple(args[p] for p in positions)
    assert torch.autograd.gradcheck(call, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def _fwd_args(mode, packed, training):
    extra = dict(proj=3) if mode == "LSTM" else dict(bias=True)
    args = make_args(mode, 4, 3, 5, packed=packed, reverse=packed, seed=21,
                     requires_grad=training, **extra)
    return to_device(args) + (training,)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_cuda(mode, packed):
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if mode == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    torch.library.opcheck(fwd, _fwd_args(mode, packed, training=True))
    torch.library.opcheck(fwd, _fwd_args(mode, packed, training=False))
    args = _fwd_args(mode, packed, training=False)
    args = args[:-1] + (True,)
    outs = fwd(*args)
    assert all(o.device.type == DEVICE for o in outs)
    grads = [torch.randn_like(o) for o in outs[:-1]]
    if mode == "LSTM":
        _, w_hh, w_hr, h0, c0, bs, rev, _ = args
        bwd_args = (*grads, w_hh, w_hr, h0, c0, outs[0], outs[-1], bs, rev)
    else:
        _, w_hh, b_hh, h0, bs, rev, _ = args
        bwd_args = (*grads, w_hh, b_hh, h0, outs[0], outs[-1], bs, rev)
    torch.library.opcheck(bwd, bwd_args)


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_workspace_in_the_input_dtype_and_read_as_saved(mode, dtype):
    """The training workspace on CUDA is in the input dtype (as the fake
    kernel and the CPU ops say), and the CUDA backward fed it agrees with
    the CPU backward fed the same bytes (bf16/fp32, TF32 off; the CPU has no
    fp16 kernels)."""
    extra = dict(proj=None) if mode == "LSTM" else dict(bias=True)
    cpu_args = make_args(mode, 6, 5, 24, seed=8, dtype=dtype, requires_grad=False, **extra)
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if mode == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    outs = fwd(*to_device(cpu_args), True)
    ws = outs[-1]
    print(f"workspace {tuple(ws.shape)} {ws.dtype}")
    assert ws.dtype == dtype and ws.device.type == DEVICE
    if dtype == F16:
        return
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(o.shape, generator=gen).to(dtype) for o in outs[:-1]]
    saved = [o.cpu() for o in outs]
    if mode == "LSTM":
        _, w_hh, w_hr, h0, c0, bs, rev = cpu_args
        args = (*grads, w_hh, w_hr, h0, c0, saved[0], saved[-1], bs, rev)
    else:
        _, w_hh, b_hh, h0, bs, rev = cpu_args
        args = (*grads, w_hh, b_hh, h0, saved[0], saved[-1], bs, rev)
    with tf32(False):
        want, got = bwd(*args), bwd(*to_device(args))
    for i, (w, g) in enumerate(zip(want, got)):
        if w.numel() == 0:
            continue
        err = float((g.cpu().double() - w.double()).abs().max() / w.double().abs().max())
        print(f"  grad {i}: CUDA vs CPU, max err / max |CPU| {err:.2e}")
        # Same saved values, different summation orders: bf16's per-op
        # rounding, 2^-8, over a 6-step walk; fp32 as F32_STRICT_TOL.
        assert err <= (3e-2 if dtype == BF16 else F32_STRICT_TOL), f"gradient {i}"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_functional_cuda_matches_cpu_float64(mode):
    """The raw layer ops on CUDA in float64 against the same ops on the CPU
    (which test_ops ties to the reference), packed and reverse."""
    extra = dict(proj=7) if mode == "LSTM" else dict(bias=True)
    cpu_args = make_args(mode, 9, 5, 13, packed=True, reverse=True, seed=4, **extra)
    gpu_args = to_device(cpu_args)
    fn = layer_fns(mode)[0]
    exp, act = fn(*cpu_args), fn(*gpu_args)
    cot = [torch.randn_like(e) for e in exp]
    cpu_in = [a for a in cpu_args if isinstance(a, torch.Tensor) and a.requires_grad]
    gpu_in = [a for a in gpu_args if isinstance(a, torch.Tensor) and a.requires_grad]
    exp_g = torch.autograd.grad(exp, cpu_in, cot)
    act_g = torch.autograd.grad(act, gpu_in, [c.to(DEVICE) for c in cot])
    for i, (e, a) in enumerate(list(zip(exp, act)) + list(zip(exp_g, act_g))):
        assert a.device.type == DEVICE
        err = (a.cpu() - e).abs().max().item()
        print(f"  tensor {i}: max err {err:.3e}")
        assert err <= F64_TOL, i


# ------------------------------------------------------------- CUDA graphs
def _graph_model(mode):
    torch.manual_seed(3)
    cls = rnnfuse.LSTM if mode == "LSTM" else rnnfuse.GRU
    return cls(24, 40, num_layers=2, bidirectional=True, device=DEVICE)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cuda_graph_capture_and_replay(mode):
    with tf32(False):
        model = _graph_model(mode)
        T, B = 9, 5
        gen = torch.Generator(device=DEVICE).manual_seed(0)
        static_x = torch.randn(T, B, 24, device=DEVICE, generator=gen, requires_grad=True)
        h0 = torch.randn(4, B, 40, device=DEVICE, generator=gen, requires_grad=True)
        c0 = torch.randn(4, B, 40, device=DEVICE, generator=gen, requires_grad=True)
        hx = (h0, c0) if mode == "LSTM" else h0
        leaves = [static_x, h0] + ([c0] if mode == "LSTM" else [])
        params = list(model.parameters())
        cot_y = torch.randn(T, B, 80, device=DEVICE, generator=gen)
        cot_h = torch.randn(4, B, 40, device=DEVICE, generator=gen)

        def step():
            out, state = model(static_x, hx)
            h_n = state[0] if mode == "LSTM" else state
            loss = (out * cot_y).sum() + (h_n * cot_h).sum()
            if mode == "LSTM":
                loss = loss + state[1].sin().sum()
            loss.backward()
            return [out, h_n] + ([state[1]] if mode == "LSTM" else [])

        def clear_grads():
            for t in leaves + params:
                t.grad = None

        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up (cuBLAS handles, allocator) off-capture
            for _ in range(3):
                clear_grads()
                step()
        torch.cuda.current_stream().wait_stream(side)

        clear_grads()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_outs = step()
        static_grads = [t.grad for t in leaves + params]
        assert all(g is not None for g in static_grads)

        for trial in range(2):
            new_x = torch.randn(T, B, 24, device=DEVICE, generator=gen)
            with torch.no_grad():
                static_x.copy_(new_x)
            graph.replay()
            torch.cuda.synchronize()
            replayed = [o.detach().clone() for o in static_outs]
            replayed_grads = [g.clone() for g in static_grads]

            clear_grads()
            eager = step()
            eager_grads = [t.grad for t in leaves + params]
            for i, (e, r) in enumerate(list(zip(eager, replayed))
                                       + list(zip(eager_grads, replayed_grads))):
                err = (e.detach() - r).abs().max().item()
                scale = max(e.abs().max().item(), 1.0)
                print(f"  trial {trial} tensor {i}: max err {err:.3e}")
                assert err <= 1e-5 * scale, f"trial {trial} tensor {i}: {err:.3e}"
            # The graph's gradient buffers were not touched by the eager run.
            assert all(g.data_ptr() != e.data_ptr() for g, e in zip(static_grads, eager_grads))
            clear_grads()
            for t, g in zip(leaves + params, static_grads):
                t.grad = g  # the buffers the graph writes into


# ------------------------------------------------------------ torch.compile
def test_torch_compile_fullgraph_cuda():
    """One compiled function running an rnnfuse.LSTM and an rnnfuse.GRU
    (one compilation for both, to keep the file's time budget)."""
    torch._dynamo.reset()
    with tf32(False):
        torch.manual_seed(5)
        lstm = rnnfuse.LSTM(12, 40, num_layers=2, bidirectional=True, device=DEVICE)
        gru = rnnfuse.GRU(80, 33, device=DEVICE)

        def model(x, h0, c0):
            y, (h_n, c_n) = lstm(x, (h0, c0))
            z, g_n = gru(y)
            return z * 2, h_n, c_n, g_n

        compiled = torch.compile(model, fullgraph=True)
        gen = torch.Generator(device=DEVICE).manual_seed(1)
        x = torch.randn(6, 4, 12, device=DEVICE, generator=gen)
        h0 = torch.randn(4, 4, 40, device=DEVICE, generator=gen)
        c0 = torch.randn(4, 4, 40, device=DEVICE, generator=gen)
        params = list(lstm.parameters()) + list(gru.parameters())

        def run(fn):
            leaves = [t.clone().requires_grad_() for t in (x, h0, c0)]
            outs = fn(*leaves)
            cot = [torch.ones_like(o) * (i + 1) for i, o in enumerate(outs)]
            grads = torch.autograd.grad(outs, leaves + params, cot)
            return [o.detach() for o in outs], grads

        e_outs, e_grads = run(model)
        c_outs, c_grads = run(compiled)
    for i, (e, c) in enumerate(list(zip(e_outs, c_outs)) + list(zip(e_grads, c_grads))):
        err = (e - c).abs().max().item()
        print(f"  tensor {i}: max err {err:.3e}")
        assert err <= 1e-5 * max(e.abs().max().item(), 1.0), i


# -------------------------------------------------------------- determinism
@pytest.mark.parametrize("dtype", [F32, BF16], ids=str)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bitwise_deterministic(mode, dtype):
    case = Case(mode, dtype, T=50, B=64, I=64, H=200, bidir=True, state=True)
    torch.manual_seed(case.seed)
    cls = rnnfuse.LSTM if mode == "LSTM" else rnnfuse.GRU
    model = cls(case.I, case.H, **case.kwargs, dtype=dtype, device=DEVICE)
    inputs = make_inputs(case)
    gen = torch.Generator().manual_seed(0)
    runs = []
    with tf32(True):  # the tensor-core path, where reduction order could vary
        for _ in range(2):
            outs, _, leaves = forward(model, case, inputs, dtype, DEVICE)
            if not runs:
                cot = [torch.randn(o.shape, generator=gen) for o in outs]
            grads = backward(model, outs, leaves, cot)
            runs.append(([o.detach().clone() for o in outs],
                         {k: v.clone() for k, v in grads.items()}))
    (outs_a, grads_a), (outs_b, grads_b) = runs
    for i, (a, b) in enumerate(zip(outs_a, outs_b)):
        assert torch.equal(a, b), f"output {i} differs between identical runs"
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.equal(grads_a[name], grads_b[name]), f"{name} differs between identical runs"


# ---------------------------------------------------- devices and streams
def _device_case(mode, packed):
    return Case(mode, F32, T=40, B=16, I=32, H=96, layers=2, bidir=True, state=True,
                packed=packed)


def _make_model(case, device):
    """The module with seeded weights made on the CPU, so every device gets
    the same values."""
    torch.manual_seed(case.seed)
    cls = rnnfuse.LSTM if case.mode == "LSTM" else rnnfuse.GRU
    return cls(case.I, case.H, **case.kwargs).to(device)


def _cotangents(case):
    """CPU cotangents for the outputs of a case (output, h_n[, c_n])."""
    gen = torch.Generator().manual_seed(0)
    dirs = 2 if case.bidir else 1
    P = case.proj or case.H
    lengths = make_inputs(case)["lengths"]
    rows = (int(lengths.sum()),) if case.packed else (
        (case.B, case.T) if case.batch_first else (case.T, case.B))
    shapes = [(*rows, dirs * P), (case.layers * dirs, case.B, P)]
    if case.mode == "LSTM":
        shapes.append((case.layers * dirs, case.B, case.H))
    return [torch.randn(s, generator=gen) for s in shapes]


def _run(model, case, inputs, cot, device, pause=None):
    """Forward and backward; ``pause`` runs before each (to hold the stream)."""
    if pause:
        pause()
    outs, _, leaves = forward(model, case, inputs, F32, device)
    if pause:
        pause()
    grads = backward(model, outs, leaves, cot)
    return [o.detach() for o in outs], grads


def _assert_same(expected, actual, device):
    (e_outs, e_grads), (a_outs, a_grads) = expected, actual
    assert e_grads.keys() == a_grads.keys()
    pairs = list(zip(e_outs, a_outs)) + [(e_grads[k], a_grads[k]) for k in e_grads]
    assert len(pairs) >= 5
    for i, (e, a) in enumerate(pairs):
        # torch.device("cuda") has no index while tensors report cuda:0.
        assert a.device.type == torch.device(device).type, f"tensor {i} on {a.device}"
        err = (e.cpu() - a.cpu()).abs().max().item()
        scale = max(e.abs().max().item(), 1.0)
        print(f"  tensor {i}: max err {err:.3e}")
        assert err <= 1e-6 * scale, f"tensor {i}: {err:.3e}"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_second_device(mode):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices")
    case = _device_case(mode, packed=True)
    inputs, cot = make_inputs(case), _cotangents(case)
    with tf32(False):
        expected = _run(_make_model(case, "cuda:0"), case, inputs, cot, "cuda:0")
        with torch.cuda.device(0):  # current device 0, tensors on 1: the op must guard
            actual = _run(_make_model(case, "cuda:1"), case, inputs, cot, "cuda:1")
        torch.cuda.synchronize("cuda:1")
    _assert_same(expected, actual, "cuda:1")


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_runs_on_the_callers_stream(mode):
    """On a side stream held back by a long sleep, the inputs (and later the
    cotangents) are produced after the sleep: a kernel launched on any other
    stream would read them before they exist, and the results would differ
    from the default stream's. Padded input, so nothing on the way syncs
    with the host (which would wait the sleep out)."""
    case = _device_case(mode, packed=False)
    inputs, cot = make_inputs(case), _cotangents(case)
    with tf32(False):
        model = _make_model(case, DEVICE)
        expected = _run(model, case, inputs, cot, DEVICE)
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            staged = {"tensors": {k: v.to(DEVICE, F32) for k, v in inputs["tensors"].items()},
                      "lengths": None}
            staged_cot = [c.to(DEVICE) for c in cot]
            actual = _run(model, case, staged, staged_cot, DEVICE,
                          pause=lambda: torch.cuda._sleep(200_000_000))  # ~0.1 s each
            assert torch.cuda.current_stream() == side
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
    _assert_same(expected, actual, DEVICE)
