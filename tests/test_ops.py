"""The per-layer ops (torch.ops.rnnfuse.lstm_fwd / lstm_bwd / gru_fwd / gru_bwd)
on the CPU, through the functional wrappers and raw:

  * float64 parity with rnnfuse.reference (outputs and every gradient) over a
    sweep of padded/packed, reverse, projection / b_hh, B, H and T;
  * float32 and bfloat16 against the float64 reference;
  * torch.autograd.gradcheck and torch.library.opcheck;
  * the inference (training=False) path, argument checking, empty sequences;
  * torch.compile(fullgraph=True) against eager.
"""
from __future__ import annotations

import itertools

import pytest
import torch

import rnnfuse.functional as F
from rnnfuse import reference as R

OPS = torch.ops.rnnfuse
F64_TOL = 1e-10


# ------------------------------------------------------------------ helpers
def random_batch_sizes(T: int, B: int, gen: torch.Generator) -> torch.Tensor:
    """A valid PackedSequence batch_sizes: T steps, non-increasing, first == B.

    Lengths are drawn in [1, T] with the longest forced to T, so every step
    has at least one row and sequences drop out at random steps."""
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    lengths[0] = T
    lengths = lengths.sort(descending=True).values
    bs = torch.stack([(lengths > t).sum() for t in range(T)]).to(torch.int64)
    assert bs[0] == B and bool((bs[1:] <= bs[:-1]).all()) and bs.min() >= 1
    return bs


def make_args(mode, T, B, H, *, packed=False, reverse=False, proj=None, bias=True,
              dtype=torch.float64, seed=0, requires_grad=True):
    """Arguments of lstm_layer / gru_layer (x_proj, w_hh, w_hr|b_hh, h0, [c0],
    batch_sizes, reverse), random, in ``dtype``. ``proj`` is P for the LSTM
    (None: no w_hr)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        t = (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
        return t.requires_grad_(requires_grad)

    batch_sizes = random_batch_sizes(T, B, gen) if packed else None
    n_rows = int(batch_sizes.sum()) if packed else T * B
    if mode == "LSTM":
        P = proj if proj is not None else H
        x_proj = rand(n_rows, 4 * H)
        w_hh = rand(4 * H, P, scale=0.5)
        w_hr = rand(P, H, scale=0.5) if proj is not None else None
        h0, c0 = rand(B, P), rand(B, H)
        return (x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse)
    x_proj = rand(n_rows, 3 * H)
    w_hh = rand(3 * H, H, scale=0.5)
    b_hh = rand(3 * H) if bias else None
    h0 = rand(B, H)
    return (x_proj, w_hh, b_hh, h0, batch_sizes, reverse)


def layer_fns(mode):
    return (F.lstm_layer, R.lstm_layer) if mode == "LSTM" else (F.gru_layer, R.gru_layer)


def diff_inputs(args):
    """The differentiable tensors among a layer call's arguments, by name."""
    names = ("x_proj", "w_hh", "w_hr", "h0", "c0") if len(args) == 7 else (
        "x_proj", "w_hh", "b_hh", "h0")
    return {n: a for n, a in zip(names, args) if isinstance(a, torch.Tensor) and a.requires_grad}


def outputs_and_grads(fn, args, cotangents):
    """fn(*args), and the gradients of sum(out * cotangent) w.r.t. every
    differentiable input (by name)."""
    outs = fn(*args)
    inputs = diff_inputs(args)
    if cotangents is None:
        cotangents = random_cotangents(outs)
    grads = torch.autograd.grad(outs, list(inputs.values()), cotangents, allow_unused=True)
    return outs, dict(zip(inputs, grads))


def random_cotangents(outs, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype) for o in outs]


def to_f64_leaves(args):
    """The same arguments as float64 leaves (the reduced-precision values,
    exactly representable in float64)."""
    return tuple(a.detach().double().requires_grad_(a.requires_grad)
                 if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def check_close(name, expected, actual, tol, relative=False):
    """Print max / mean abs error and assert the max is within tol (times the
    expected tensor's max magnitude when ``relative``)."""
    assert actual is not None, f"{name}: no gradient"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.numel() == 0:
        return
    diff = (actual.detach().double() - expected.detach().double()).abs()
    scale = max(expected.detach().abs().max().item(), 1.0) if relative else 1.0
    print(f"  {name:8s} max err {diff.max().item():.3e}  mean err {diff.mean().item():.3e}"
          f"  (bound {tol * scale:.3e})")
    assert diff.max().item() <= tol * scale, f"{name}: max err {diff.max().item():.3e}"


def compare_with_reference(mode, args, ref_args, out_tol, grad_tol, relative):
    fused, ref = layer_fns(mode)
    ref_outs = ref(*ref_args)
    cot = random_cotangents(ref_outs)
    exp_outs, exp_grads = outputs_and_grads(ref, ref_args, cot)
    our_outs, our_grads = outputs_and_grads(fused, args, [c.to(args[0].dtype) for c in cot])
    out_names = ("y", "h_n", "c_n")
    for name, e, a in zip(out_names, exp_outs, our_outs):
        assert a.dtype == args[0].dtype, f"{name}: dtype {a.dtype}"
        check_close(name, e, a, out_tol, relative)
    assert exp_grads.keys() == our_grads.keys()
    for name, e in exp_grads.items():
        assert our_grads[name].dtype == args[0].dtype, f"grad {name}: dtype"
        check_close(f"d{name}", e, our_grads[name], grad_tol, relative)


# ------------------------------------------------------ float64 parity sweep
SIZES = list(itertools.product([1, 3, 5], [1, 5, 13], [1, 2, 7]))  # B, H, T


def _proj_size(H):
    # P < H as torch.nn requires, and P > H (H = 1), which the op also takes.
    return 2 if H == 1 else H // 2 + 1


@pytest.mark.parametrize("B,H,T", SIZES, ids=[f"B{b}-H{h}-T{t}" for b, h, t in SIZES])
@pytest.mark.parametrize("proj", [False, True], ids=["noproj", "proj"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_lstm_float64_parity(packed, reverse, proj, B, H, T):
    seed = hash((packed, reverse, proj, B, H, T)) % 2**31
    args = make_args("LSTM", T, B, H, packed=packed, reverse=reverse,
                     proj=_proj_size(H) if proj else None, seed=seed)
    compare_with_reference("LSTM", args, args, F64_TOL, F64_TOL, relative=False)


@pytest.mark.parametrize("B,H,T", SIZES, ids=[f"B{b}-H{h}-T{t}" for b, h, t in SIZES])
@pytest.mark.parametrize("bias", [False, True], ids=["nobias", "bias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_gru_float64_parity(packed, reverse, bias, B, H, T):
    seed = hash((packed, reverse, bias, B, H, T)) % 2**31
    args = make_args("GRU", T, B, H, packed=packed, reverse=reverse, bias=bias, seed=seed)
    compare_with_reference("GRU", args, args, F64_TOL, F64_TOL, relative=False)


@pytest.mark.parametrize("mode,which", [("LSTM", "y"), ("LSTM", "h_n"), ("LSTM", "c_n"),
                                        ("GRU", "y"), ("GRU", "h_n")])
def test_float64_parity_partial_outputs(mode, which):
    """Gradients when only one output reaches the loss (autograd passes None
    for the others; the backward must treat them as zeros)."""
    fused, ref = layer_fns(mode)
    args = make_args(mode, 5, 3, 4, packed=True, reverse=True, seed=7)
    idx = ("y", "h_n", "c_n").index(which)
    inputs = list(diff_inputs(args).values())
    expected = torch.autograd.grad(ref(*args)[idx].sin().sum(), inputs)
    actual = torch.autograd.grad(fused(*args)[idx].sin().sum(), inputs)
    for name, e, a in zip(diff_inputs(args), expected, actual):
        check_close(f"d{name}", e, a, F64_TOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_float64_parity_some_inputs_without_grad(mode):
    """Only x_proj requires grad: the forward still saves what the backward needs."""
    fused, ref = layer_fns(mode)
    args = make_args(mode, 4, 3, 5, requires_grad=False, seed=3)
    x_proj = args[0].clone().requires_grad_()
    args = (x_proj,) + args[1:]
    (e,) = torch.autograd.grad(ref(*args)[0].sum(), x_proj)
    (a,) = torch.autograd.grad(fused(*args)[0].sum(), x_proj)
    check_close("dx_proj", e, a, F64_TOL)


def _non_contiguous(t):
    """The same values in a transposed (non-contiguous) layout."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() != 2:
        return t
    out = t.detach().t().contiguous().t().requires_grad_(t.requires_grad)
    assert not out.is_contiguous() or min(t.shape) <= 1
    return out


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_non_contiguous_arguments(mode):
    """Strided (transposed) x_proj, weights and states give the same results."""
    fused = layer_fns(mode)[0]
    extra = dict(proj=3) if mode == "LSTM" else dict(bias=True)
    args = make_args(mode, 4, 3, 5, packed=True, reverse=True, seed=9, **extra)
    strided = tuple(_non_contiguous(a) for a in args)
    exp_outs, exp_grads = outputs_and_grads(fused, args, None)
    act_outs, act_grads = outputs_and_grads(fused, strided, None)
    for e, a in zip(exp_outs, act_outs):
        assert torch.equal(e, a)
    for name in exp_grads:
        check_close(f"d{name}", exp_grads[name], act_grads[name], 1e-13)


# ----------------------------------------------- float32 / bfloat16 on the CPU
# Tolerances are relative to the largest magnitude of the reference tensor.
# The reference runs in float64 on the *same* rounded inputs, so what remains
# is the op's own rounding:
#  * float32: unit roundoff 2^-24 ~ 6e-8, amplified by H-term dot products,
#    the T-step recurrence and, for weight gradients, sums over N rows; 1e-5
#    leaves two orders of magnitude of headroom over what is seen (~1e-7).
#  * bfloat16: y (hence the next step's h_{t-1}) and every returned tensor
#    are rounded to 8 significant bits, 2^-8 ~ 4e-3 relative per rounding,
#    accumulated over up to 7 steps and (gradients) the reverse walk; 2e-2
#    for outputs, 3e-2 for gradients (which take one more rounding of dgates
#    before the weight-gradient GEMM, and read activations the forward saved
#    rounded to bf16).
LOW_PRECISION = {
    torch.float32: (1e-5, 1e-5),
    torch.bfloat16: (2e-2, 3e-2),
}
LOW_CASES = [
    # mode, packed, reverse, proj/bias, B, H, T
    ("LSTM", False, False, False, 5, 13, 7),
    ("LSTM", True, True, True, 5, 13, 7),
    ("LSTM", True, False, True, 3, 5, 2),
    ("GRU", False, False, True, 5, 13, 7),
    ("GRU", True, True, False, 5, 13, 7),
    ("GRU", True, False, True, 3, 5, 2),
]


@pytest.mark.parametrize("dtype", list(LOW_PRECISION), ids=str)
@pytest.mark.parametrize("case", LOW_CASES, ids=lambda c: "-".join(map(str, c)))
def test_low_precision_vs_float64_reference(case, dtype):
    mode, packed, reverse, flag, B, H, T = case
    extra = dict(proj=_proj_size(H) if flag else None) if mode == "LSTM" else dict(bias=flag)
    args = make_args(mode, T, B, H, packed=packed, reverse=reverse, dtype=dtype, seed=11,
                     **extra)
    out_tol, grad_tol = LOW_PRECISION[dtype]
    compare_with_reference(mode, args, to_f64_leaves(args), out_tol, grad_tol, relative=True)


# ------------------------------------------------------------------- gradcheck
GRADCHECK_CASES = [
    # mode, packed, reverse, proj/bias
    ("LSTM", False, False, False),
    ("LSTM", False, False, True),
    ("LSTM", True, False, True),
    ("LSTM", True, True, False),
    ("LSTM", False, True, True),
    ("GRU", False, False, True),
    ("GRU", False, False, False),
    ("GRU", True, True, True),
    ("GRU", True, False, False),
]


def gradcheck_inputs(case):
    mode, packed, reverse, flag = case
    extra = dict(proj=2 if flag else None) if mode == "LSTM" else dict(bias=flag)
    args = make_args(mode, 3, 3, 2, packed=packed, reverse=reverse, seed=5, **extra)
    diff = diff_inputs(args)
    positions = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.requires_grad]
    fn = layer_fns(mode)[0]

    def call(*tensors):
        full = list(args)
        for pos, t in zip(positions, tensors):
            full[pos] = t
        return fn(*full)

    return call, tuple(diff.values())


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=lambda c: "-".join(map(str, c)))
def test_gradcheck(case):
    call, inputs = gradcheck_inputs(case)
    assert torch.autograd.gradcheck(call, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


# --------------------------------------------------------------------- opcheck
def raw_fwd_args(mode, packed, training, requires_grad, reverse=False, seed=21):
    """Arguments of the raw forward op."""
    extra = dict(proj=3) if mode == "LSTM" else dict(bias=True)
    args = make_args(mode, 4, 3, 5, packed=packed, reverse=reverse, seed=seed,
                     requires_grad=requires_grad, **extra)
    return args + (training,)


def raw_bwd_args(mode, packed, reverse=False):
    """Arguments of lstm_bwd / gru_bwd, from a training forward."""
    fwd_args = raw_fwd_args(mode, packed, True, False, reverse=reverse)
    gen = torch.Generator().manual_seed(99)
    rand_like = lambda t: torch.randn(t.shape, generator=gen, dtype=t.dtype)  # noqa: E731
    if mode == "LSTM":
        x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, _ = fwd_args
        y, h_n, c_n, ws = OPS.lstm_fwd(*fwd_args)
        return (rand_like(y), rand_like(h_n), rand_like(c_n), w_hh, w_hr, h0, c0, y, ws,
                batch_sizes, reverse)
    x_proj, w_hh, b_hh, h0, batch_sizes, reverse, _ = fwd_args
    y, h_n, ws = OPS.gru_fwd(*fwd_args)
    return (rand_like(y), rand_like(h_n), w_hh, b_hh, h0, y, ws, batch_sizes, reverse)


def raw_cell_args(mode, bias=True, requires_grad=False, seed=31):
    """Arguments of lstm_cell_fwd / gru_cell_fwd (training) and of the
    matching backward op, from that forward. B=3, I=2, H=4."""
    gen = torch.Generator().manual_seed(seed)
    G = 4 if mode == "LSTM" else 3

    def rand(*shape, scale=1.0):
        t = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return t.requires_grad_(requires_grad)

    x, w_ih, w_hh = rand(3, 2), rand(G * 4, 2, scale=0.5), rand(G * 4, 4, scale=0.5)
    b_ih, b_hh = (rand(G * 4), rand(G * 4)) if bias else (None, None)
    h0 = rand(3, 4)
    if mode == "LSTM":
        c0 = rand(3, 4)
        fwd = (x, w_ih, w_hh, b_ih, b_hh, h0, c0, True)
        h, c, ws = (t.detach() for t in OPS.lstm_cell_fwd(*fwd))
        bwd = (torch.randn(3, 4, generator=gen, dtype=torch.float64),
               torch.randn(3, 4, generator=gen, dtype=torch.float64),
               x.detach(), w_ih.detach(), w_hh.detach(), h0.detach(), c0.detach(), h, ws, bias)
        return fwd, bwd
    fwd = (x, w_ih, w_hh, b_ih, b_hh, h0, True)
    h, ws = (t.detach() for t in OPS.gru_cell_fwd(*fwd))
    bwd = (torch.randn(3, 4, generator=gen, dtype=torch.float64), x.detach(), w_ih.detach(),
           w_hh.detach(), None if b_hh is None else b_hh.detach(), h0.detach(), h, ws)
    return fwd, bwd


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_cells(mode, bias):
    fwd, bwd = raw_cell_args(mode, bias=bias, requires_grad=True)
    op_fwd, op_bwd = ((OPS.lstm_cell_fwd, OPS.lstm_cell_bwd) if mode == "LSTM"
                      else (OPS.gru_cell_fwd, OPS.gru_cell_bwd))
    torch.library.opcheck(op_fwd, fwd)
    torch.library.opcheck(op_fwd, tuple(a.detach() if isinstance(a, torch.Tensor) else a
                                         for a in fwd[:-1]) + (False,))
    torch.library.opcheck(op_bwd, bwd)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_cell_ops_gradcheck_and_match_the_reference(mode, bias):
    """One cell step = the input projection and one layer step of the
    float64 reference; gradients pass gradcheck."""
    fwd, _ = raw_cell_args(mode, bias=bias, requires_grad=True)
    op = OPS.lstm_cell_fwd if mode == "LSTM" else OPS.gru_cell_fwd
    args = list(fwd)
    diff = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]

    def call(*d):
        full = list(args)
        for i, t in zip(diff, d):
            full[i] = t
        return op(*full)[:-1]

    assert torch.autograd.gradcheck(call, [args[i] for i in diff], eps=1e-6, atol=1e-7)
    x, w_ih, w_hh, b_ih, b_hh, h0 = args[:6]
    if mode == "LSTM":
        bias_sum = None if b_ih is None else b_ih + b_hh
        _, h_ref, c_ref = R.lstm_layer(torch.nn.functional.linear(x, w_ih, bias_sum), w_hh, None,
                                       h0, args[6])
        h, c, _ = op(*args)
        check_close("h", h_ref, h, F64_TOL)
        check_close("c", c_ref, c, F64_TOL)
    else:
        _, h_ref = R.gru_layer(torch.nn.functional.linear(x, w_ih, b_ih), w_hh, b_hh, h0)
        check_close("h", h_ref, op(*args)[0], F64_TOL)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_forward(mode, training, packed):
    # Inputs require grad exactly when training, as the wrappers call it
    # (the autograd registration test needs requires_grad inputs).
    op = OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd
    torch.library.opcheck(op, raw_fwd_args(mode, packed, training, requires_grad=training))


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_backward(mode, packed):
    op = OPS.lstm_bwd if mode == "LSTM" else OPS.gru_bwd
    torch.library.opcheck(op, raw_bwd_args(mode, packed, reverse=packed))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_without_optional_tensors(mode):
    """w_hr / b_hh = None through both ops."""
    extra = dict(proj=None) if mode == "LSTM" else dict(bias=False)
    args = make_args(mode, 4, 3, 5, packed=True, seed=22, **extra) + (True,)
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if mode == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    torch.library.opcheck(fwd, args)
    detached = [a.detach() if isinstance(a, torch.Tensor) else a for a in args]
    outs = fwd(*detached)
    grads = [torch.randn_like(o) for o in outs[:-1]]
    if mode == "LSTM":
        _, w_hh, _, h0, c0, bs, rev, _ = detached
        bwd_args = (*grads, w_hh, None, h0, c0, outs[0], outs[-1], bs, rev)
    else:
        _, w_hh, _, h0, bs, rev, _ = detached
        bwd_args = (*grads, w_hh, None, h0, outs[0], outs[-1], bs, rev)
    torch.library.opcheck(bwd, bwd_args)
    assert bwd(*bwd_args)[2].numel() == 0


# ----------------------------------------------------- inference (no workspace)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_inference_forward_has_empty_workspace_and_refuses_backward(mode):
    args = raw_fwd_args(mode, True, training=False, requires_grad=True)
    op = OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd
    outs = op(*args)
    workspace = outs[-1]
    assert workspace.numel() == 0
    assert workspace.dtype == torch.float64
    # Same values as a training forward.
    train_outs = op(*(args[:-1] + (True,)))
    assert train_outs[-1].numel() > 0
    for a, b in zip(outs[:-1], train_outs[:-1]):
        assert torch.equal(a, b)
    assert outs[0].requires_grad
    with pytest.raises(RuntimeError, match=r"training=False.*training=True"):
        outs[0].sum().backward()


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_wrapper_skips_workspace_without_grad(mode):
    """The functional wrappers run the inference path when no grad is needed
    (and the results equal those of the training path)."""
    fused = layer_fns(mode)[0]
    args = make_args(mode, 4, 3, 5, seed=8, requires_grad=True)
    with torch.no_grad():
        inferred = fused(*args)
    trained = fused(*args)
    for a, b in zip(inferred, trained):
        assert not a.requires_grad and b.requires_grad
        assert torch.equal(a, b.detach())


# ---------------------------------------------------------------- bad arguments
def _lstm_base():
    # B=3, H=4, P=4, T=2 (N=6)
    return dict(x_proj=torch.randn(6, 16), w_hh=torch.randn(16, 4), w_hr=None,
                h0=torch.randn(3, 4), c0=torch.randn(3, 4), batch_sizes=None, reverse=False,
                training=False)


def _gru_base():
    return dict(x_proj=torch.randn(6, 12), w_hh=torch.randn(12, 4), b_hh=torch.randn(12),
                h0=torch.randn(3, 4), batch_sizes=None, reverse=False, training=False)


BAD_ARGS = [
    # (name, op, changes, message regex)
    ("x_proj 3-D", "lstm", dict(x_proj=torch.randn(2, 3, 16)), r"x_proj must be 2-D"),
    ("x_proj int", "lstm", dict(x_proj=torch.zeros(6, 16, dtype=torch.int64)),
     r"floating-point x_proj"),
    ("x_proj width", "lstm", dict(x_proj=torch.randn(6, 15)), r"x_proj must have shape"),
    ("w_hh shape", "lstm", dict(w_hh=torch.randn(16, 5)), r"w_hh must have shape"),
    ("w_hh 1-D", "lstm", dict(w_hh=torch.randn(64)), r"w_hh must be 2-D"),
    ("w_hr shape", "lstm", dict(w_hr=torch.randn(2, 5)), r"w_hr must have shape"),
    ("h0 batch", "lstm", dict(h0=torch.randn(2, 4)), r"h0 must have shape"),
    ("h0 dtype", "lstm", dict(h0=torch.randn(3, 4, dtype=torch.float64)),
     r"h0 has dtype Double but x_proj has Float"),
    ("c0 dtype", "lstm", dict(c0=torch.randn(3, 4, dtype=torch.bfloat16)),
     r"c0 has dtype BFloat16 but x_proj has Float"),
    ("w_hh dtype", "lstm", dict(w_hh=torch.randn(16, 4, dtype=torch.float64)),
     r"w_hh has dtype Double"),
    ("rows not multiple", "lstm", dict(x_proj=torch.randn(7, 16)), r"not a multiple"),
    ("gru w_hh shape", "gru", dict(w_hh=torch.randn(12, 3)), r"w_hh must have shape"),
    ("gru b_hh shape", "gru", dict(b_hh=torch.randn(11)), r"b_hh must have shape"),
    ("gru b_hh dtype", "gru", dict(b_hh=torch.randn(12, dtype=torch.float64)),
     r"b_hh has dtype Double"),
    ("gru h0 dtype", "gru", dict(h0=torch.randn(3, 4, dtype=torch.float16)),
     r"h0 has dtype Half"),
    ("gru x_proj width", "gru", dict(x_proj=torch.randn(6, 16)), r"x_proj must have shape"),
    ("batch_sizes int32", "lstm", dict(batch_sizes=torch.tensor([3, 2, 1], dtype=torch.int32)),
     r"batch_sizes must be a 1-D int64 CPU tensor"),
    ("batch_sizes float", "gru", dict(batch_sizes=torch.tensor([3.0, 3.0])),
     r"batch_sizes must be a 1-D int64 CPU tensor"),
    ("batch_sizes 2-D", "gru", dict(batch_sizes=torch.tensor([[3, 3]])),
     r"batch_sizes must be a 1-D int64 CPU tensor"),
    ("batch_sizes increasing", "lstm", dict(batch_sizes=torch.tensor([2, 3, 1])),
     r"non-increasing"),
    ("batch_sizes zero", "gru", dict(batch_sizes=torch.tensor([3, 3, 0])), r"positive"),
    ("batch_sizes sum", "lstm", dict(batch_sizes=torch.tensor([3, 2])),
     r"sum to 5 but x_proj has 6"),
    ("batch_sizes[0] != B", "gru", dict(batch_sizes=torch.tensor([2, 2, 2])),
     r"batch_sizes\[0\] is 2 but the initial state has batch 3"),
]


@pytest.mark.parametrize("name,op,changes,match", BAD_ARGS, ids=[b[0] for b in BAD_ARGS])
def test_bad_arguments_raise(name, op, changes, match):
    kwargs = _lstm_base() if op == "lstm" else _gru_base()
    kwargs.update(changes)
    fn = OPS.lstm_fwd if op == "lstm" else OPS.gru_fwd
    with pytest.raises(RuntimeError, match=match):
        fn(*kwargs.values())


def _float32(args):
    return tuple(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def _all_op_calls():
    """(op, args) of every tensor op on valid float32 CPU arguments."""
    for mode in ("LSTM", "GRU"):
        fwd = _float32(raw_fwd_args(mode, packed=True, training=True, requires_grad=False))
        bwd = _float32(raw_bwd_args(mode, packed=True, reverse=True))
        yield OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd, fwd
        yield OPS.lstm_bwd if mode == "LSTM" else OPS.gru_bwd, bwd
        cell_fwd, cell_bwd = raw_cell_args(mode)
        yield (OPS.lstm_cell_fwd if mode == "LSTM" else OPS.gru_cell_fwd), _float32(cell_fwd)
        yield (OPS.lstm_cell_bwd if mode == "LSTM" else OPS.gru_cell_bwd), _float32(cell_bwd)
    # The CPU input projection and its backward GEMM.
    yield OPS.linear, (torch.randn(5, 3), torch.randn(4, 3), torch.randn(4))
    yield OPS.mm, (torch.randn(5, 3), torch.randn(3, 4))


def _tensor_positions(args):
    return [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]


OP_CALLS = list(_all_op_calls())
ARG_CASES = [(op, i) for op, args in OP_CALLS for i in _tensor_positions(args)]


def _bad_variants(t: torch.Tensor, is_batch_sizes: bool):
    """Same-shape stand-ins with a wrong dtype, or on another device."""
    if is_batch_sizes:
        return {"int32": t.int(), "meta": t.to("meta")}
    return {"int64": t.long(), "float64": t.double(), "meta": t.to("meta")}


@pytest.mark.parametrize("op,pos", ARG_CASES,
                         ids=[f"{op.default._schema.name.split('::')[1]}-"
                              f"{op.default._schema.arguments[i].name}" for op, i in ARG_CASES])
def test_every_tensor_argument_is_checked(op, pos):
    """A wrong dtype or device in any one tensor argument raises a clear
    error, whichever kernel the dispatcher picks (a meta operand selects the
    fake kernel), instead of computing with it or returning uninitialised
    tensors."""
    args = next(a for o, a in OP_CALLS if o is op)
    name = op.default._schema.arguments[pos].name
    for variant, bad in _bad_variants(args[pos], name == "batch_sizes").items():
        call = list(args)
        call[pos] = bad
        if variant == "float64" and pos == 0:
            continue  # a float64 x_proj / grad_y is fine; the others then mismatch it
        with pytest.raises(RuntimeError, match=r"rnnfuse"):
            op(*call)
        print(f"  {name} {variant}: raises")


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_meta_device_checks_batch_sizes_values(mode):
    # On the meta device only the fake kernel runs; batch_sizes is a real CPU
    # tensor there, so its values are checked as the kernels check them.
    args = list(raw_fwd_args(mode, packed=True, training=False, requires_grad=False))
    args = [a.to("meta") if isinstance(a, torch.Tensor) and a.is_floating_point() else a
            for a in args]
    op = OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd
    outs = op(*args)
    assert all(o.device.type == "meta" for o in outs)
    rows = args[0].shape[0]
    for bad, match in (([1, 5, 0, -7], r"non-increasing|positive"),
                       ([3, 3, 0], r"positive"), ([rows], r"batch_sizes\[0\]|sum to")):
        args[-3] = torch.tensor(bad)
        with pytest.raises(RuntimeError, match=match):
            op(*args)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_outputs_are_contiguous_for_strided_states(mode):
    """Permuted h0 / c0: the kernels return contiguous tensors and the fake
    kernels say so (torch.compile checks the fake's strides against the
    real ones: opcheck's test_faketensor)."""
    args = list(raw_fwd_args(mode, packed=False, training=True, requires_grad=True))
    state_positions = (3, 4) if mode == "LSTM" else (3,)
    for i in state_positions:
        args[i] = args[i].detach().t().contiguous().t().requires_grad_()
        assert not args[i].is_contiguous()
    op = OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd
    assert all(o.is_contiguous() for o in op(*args))
    torch.library.opcheck(op, tuple(args))


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_backward_rejects_mismatched_workspace(mode):
    args = list(raw_bwd_args(mode, packed=False))
    ws_pos = 8 if mode == "LSTM" else 6
    op = OPS.lstm_bwd if mode == "LSTM" else OPS.gru_bwd
    for bad in (torch.empty(0, dtype=torch.float64),             # inference workspace
                args[ws_pos][:, 1:].contiguous(),                 # wrong width
                args[ws_pos].float()):                            # wrong dtype
        args[ws_pos] = bad
        with pytest.raises(RuntimeError, match=r"workspace does not match"):
            op(*args)
    args = list(raw_bwd_args(mode, packed=False))
    args[0] = args[0][:, :-1]  # grad_y of the wrong width
    with pytest.raises(RuntimeError, match=r"grad_y must have shape"):
        op(*args)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_empty_sequence(mode, packed):
    """N = 0 rows: empty y, final states equal to the initial ones, and
    gradients that pass grad_h_n / grad_c_n straight to h0 / c0."""
    B, H = 3, 4
    batch_sizes = torch.empty(0, dtype=torch.int64) if packed else None
    G = 4 if mode == "LSTM" else 3
    x_proj = torch.randn(0, G * H, dtype=torch.float64, requires_grad=True)
    w_hh = torch.randn(G * H, H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    if mode == "LSTM":
        outs = F.lstm_layer(x_proj, w_hh, None, h0, c0, batch_sizes, packed)
        inits = (h0, c0)
    else:
        outs = F.gru_layer(x_proj, w_hh, None, h0, batch_sizes, packed)
        inits = (h0,)
    assert outs[0].shape == (0, H)
    for final, init in zip(outs[1:], inits):
        assert torch.equal(final, init)
        assert final.data_ptr() != init.data_ptr(), "final state aliases the initial state"
    cot = [torch.randn_like(o) for o in outs]
    grads = torch.autograd.grad(outs, (x_proj, w_hh) + inits, cot)
    assert grads[0].shape == (0, G * H)
    assert torch.equal(grads[1], torch.zeros_like(w_hh))
    for g, c in zip(grads[2:], cot[1:]):
        assert torch.equal(g, c)


# ------------------------------------------------------------- torch.compile
def _compile_args(dtype):
    lstm = make_args("LSTM", 3, 2, 4, proj=3, dtype=dtype, seed=31)
    gru = make_args("GRU", 3, 2, 4, bias=True, dtype=dtype, seed=32)
    return lstm, gru


def _lstm_and_gru(lstm_args, gru_args):
    y1, h1, c1 = F.lstm_layer(*lstm_args)
    y2, h2 = F.gru_layer(*gru_args)
    return (y1.tanh() * 2, h1, c1, y2 * 3, h2)


def test_torch_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    dtype = torch.float64
    compiled = torch.compile(_lstm_and_gru, fullgraph=True)
    eager_lstm, eager_gru = _compile_args(dtype)
    comp_lstm, comp_gru = _compile_args(dtype)
    expected = _lstm_and_gru(eager_lstm, eager_gru)
    actual = compiled(comp_lstm, comp_gru)
    cot = random_cotangents(expected)
    exp_in = list(diff_inputs(eager_lstm).values()) + list(diff_inputs(eager_gru).values())
    act_in = list(diff_inputs(comp_lstm).values()) + list(diff_inputs(comp_gru).values())
    exp_grads = torch.autograd.grad(expected, exp_in, cot)
    act_grads = torch.autograd.grad(actual, act_in, cot)
    for i, (e, a) in enumerate(zip(expected, actual)):
        check_close(f"out{i}", e, a, 1e-12)
    for i, (e, a) in enumerate(zip(exp_grads, act_grads)):
        check_close(f"grad{i}", e, a, 1e-12)
