"""The bidirectional layer ops (lstm_bidir_fwd / _bwd, gru_bidir_fwd / _bwd)
on the CPU: both directions of a layer in one call, reading column blocks of
one (N, 2*G*H) projection and writing one (N, 2P) output.

Each direction runs the same time loop as the single-direction op on the same
values, only with strided rows, so the outputs, workspace and x_proj
gradient must be bitwise those of two single-direction calls, whatever the
thread count (with two threads the directions run side by side). The weight
and initial-state gradients come from GEMMs over strided rows (another BLAS
path), so those are compared with tolerances. Plus: the modules use one op
per bidirectional layer, opcheck, the argument checks (C++ and fake kernels
agree), and the inference path.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse
from test_ops import random_batch_sizes

OPS = torch.ops.rnnfuse

# Tolerance of the GEMM-made gradients against two single-direction calls,
# relative to the largest element: the same products summed in another order.
GEMM_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2,
            torch.float16: 2e-3}
# fp32 under allow_tf32 (CUDA): cuBLAS may pick a TF32 kernel for one call's
# shape and not for the other's, so the two differ by TF32's input rounding
# (2^-11), not by summation order: 2.5 units, as bf16's 1e-2 is of 2^-8.
TF32_GEMM_TOL = 2.5 * 2.0**-11


def bidir_args(mode, T, B, H, *, dtype, packed=False, proj=None, bias=True, seed=0):
    """Forward arguments of the bidirectional op (without ``training``)."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    batch_sizes = random_batch_sizes(T, B, gen) if packed else None
    rows = int(batch_sizes.sum()) if packed else T * B
    if mode == "LSTM":
        P = proj or H
        w_hr = [rand(P, H, scale=0.5) for _ in range(2)] if proj else [None, None]
        return (rand(rows, 8 * H), rand(4 * H, P, scale=0.5), rand(4 * H, P, scale=0.5),
                w_hr[0], w_hr[1], rand(2, B, P), rand(2, B, H), batch_sizes)
    b_hh = [rand(3 * H) for _ in range(2)] if bias else [None, None]
    return (rand(rows, 6 * H), rand(3 * H, H, scale=0.5), rand(3 * H, H, scale=0.5), b_hh[0],
            b_hh[1], rand(2, B, H), batch_sizes)


def per_direction(mode, args):
    """The single-direction ops' arguments of each direction (contiguous
    copies of the column blocks), for the forward with training=True."""
    if mode == "LSTM":
        x_proj, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, batch_sizes = args
        width = x_proj.size(1) // 2
        return [(x_proj[:, d * width:(d + 1) * width].contiguous(), w, r, h0[d], c0[d],
                 batch_sizes, d == 1, True)
                for d, (w, r) in enumerate(((w_hh, w_hr), (w_hh_r, w_hr_r)))]
    x_proj, w_hh, w_hh_r, b_hh, b_hh_r, h0, batch_sizes = args
    width = x_proj.size(1) // 2
    return [(x_proj[:, d * width:(d + 1) * width].contiguous(), w, b, h0[d], batch_sizes,
             d == 1, True)
            for d, (w, b) in enumerate(((w_hh, b_hh), (w_hh_r, b_hh_r)))]


def assert_bitwise(name, expected, actual):
    print(f"{name}: max |diff| {(expected.double() - actual.double()).abs().max().item():.3g}")
    assert torch.equal(expected, actual), f"{name} differs from the single-direction ops"


def assert_close(name, expected, actual, dtype, tf32=False):
    tol = TF32_GEMM_TOL if tf32 and dtype == torch.float32 else GEMM_TOL[dtype]
    scale = max(expected.double().abs().max().item(), 1e-30)
    err = (expected.double() - actual.double()).abs().max().item() / scale
    print(f"{name}: max |diff| / max |expected| {err:.3g} (tolerance {tol})")
    assert err <= tol, name


def run_bidir(mode, args, grad_seed=5, grads=None):
    """Forward (training) and backward of the bidirectional op; the output
    gradients are random (grad_seed) unless given, in the outputs' dtype and
    device."""
    fwd, bwd = (OPS.lstm_bidir_fwd, OPS.lstm_bidir_bwd) if mode == "LSTM" else (
        OPS.gru_bidir_fwd, OPS.gru_bidir_bwd)
    outs = fwd(*args, True)
    if grads is None:
        gen = torch.Generator().manual_seed(grad_seed)
        grads = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in outs[:-1]]
    grads = [g.to(device=t.device, dtype=t.dtype) for g, t in zip(grads, outs[:-1])]
    if mode == "LSTM":
        x_proj, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, batch_sizes = args
        y, _, _, ws = outs
        back = bwd(*grads, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, y, ws, batch_sizes)
    else:
        x_proj, w_hh, w_hh_r, b_hh, b_hh_r, h0, batch_sizes = args
        y, _, ws = outs
        back = bwd(*grads, w_hh, w_hh_r, b_hh, b_hh_r, h0, y, ws, batch_sizes)
    return outs, grads, back


def run_single(mode, args, grads):
    """The same through two single-direction calls; results laid out as the
    bidirectional op's."""
    outs, backs = [], []
    for d, fwd_args in enumerate(per_direction(mode, args)):
        if mode == "LSTM":
            y, h_n, c_n, ws = OPS.lstm_fwd(*fwd_args)
            out = y.size(1)
            g = (grads[0][:, d * out:(d + 1) * out].contiguous(), grads[1][d], grads[2][d])
            _, w_hh, w_hr, h0, c0, batch_sizes, reverse, _ = fwd_args
            backs.append(OPS.lstm_bwd(*g, w_hh, w_hr, h0, c0, y, ws, batch_sizes, reverse))
            outs.append((y, h_n, c_n, ws))
        else:
            y, h_n, ws = OPS.gru_fwd(*fwd_args)
            out = y.size(1)
            g = (grads[0][:, d * out:(d + 1) * out].contiguous(), grads[1][d])
            _, w_hh, b_hh, h0, batch_sizes, reverse, _ = fwd_args
            backs.append(OPS.gru_bwd(*g, w_hh, b_hh, h0, y, ws, batch_sizes, reverse))
            outs.append((y, h_n, ws))
    stacked = [torch.cat([outs[0][0], outs[1][0]], 1)]
    stacked += [torch.stack([outs[0][k], outs[1][k]]) for k in range(1, len(outs[0]))]
    return stacked, backs


CASES = [
    # (mode, T, B, H, packed, proj / bias)
    ("LSTM", 7, 5, 24, False, None),
    ("LSTM", 6, 9, 20, True, None),
    ("LSTM", 5, 4, 16, True, 12),
    ("LSTM", 1, 3, 8, False, None),
    ("GRU", 7, 5, 24, False, True),
    ("GRU", 6, 9, 20, True, True),
    ("GRU", 5, 17, 32, True, False),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16],
                         ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_matches_two_single_direction_calls(case, dtype, threads):
    mode, T, B, H, packed, extra = case
    kwargs = dict(proj=extra) if mode == "LSTM" else dict(bias=extra)
    args = bidir_args(mode, T, B, H, dtype=dtype, packed=packed, **kwargs)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        outs, grads, back = run_bidir(mode, args)
        single, single_backs = run_single(mode, args, grads)
    finally:
        torch.set_num_threads(before)
    names = ("y", "h_n", "c_n", "workspace") if mode == "LSTM" else ("y", "h_n", "workspace")
    for name, e, a in zip(names, single, outs):
        assert_bitwise(name, e, a)
    g4 = back[0].size(1) // 2
    grad_x = torch.cat([single_backs[0][0], single_backs[1][0]], 1)
    assert_bitwise("grad_x_proj", grad_x, back[0])
    assert back[0].shape == (args[0].size(0), 2 * g4)
    for d in range(2):
        assert_close(f"grad_w_hh[{d}]", single_backs[d][1], back[1 + d], dtype)
        optional = 3 + d  # grad_w_hr / grad_b_hh
        if args[3 + d] is None:
            assert back[optional].numel() == 0
        else:
            assert_close(f"grad of {'w_hr' if mode == 'LSTM' else 'b_hh'}[{d}]",
                         single_backs[d][2], back[optional], dtype)
        assert_close(f"grad_h0[{d}]", single_backs[d][3], back[5][d], dtype)
        if mode == "LSTM":
            assert_close(f"grad_c0[{d}]", single_backs[d][4], back[6][d], dtype)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_thread_counts_agree_bitwise(mode):
    # What the time loops compute (outputs, workspace, x_proj's gradient) does
    # not depend on how a step's units are split over 1, 2 or 3 threads. (The
    # GEMMs after the loop are ATen's and may sum in another order on another
    # thread count.)
    args = bidir_args(mode, 9, 24, 40, dtype=torch.float32, packed=True)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs, _, back = run_bidir(mode, args)
            results.append([*outs, back[0]])
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for k, (a, b) in enumerate(zip(results[0], other)):
            assert torch.equal(a, b), f"result {k} depends on the thread count"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_side_by_side_and_one_after_the_other_agree_bitwise(mode, monkeypatch):
    # With two threads the directions run side by side, one thread each;
    # RNNFUSE_CPU_BIDIR_SEQUENTIAL=1 makes them run one after the other on
    # both threads. Everything, the GEMMs after the loops included, must agree.
    args = bidir_args(mode, 9, 24, 40, dtype=torch.bfloat16, packed=True, seed=4)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        side_by_side = run_bidir(mode, args)
        monkeypatch.setenv("RNNFUSE_CPU_BIDIR_SEQUENTIAL", "1")
        in_turn = run_bidir(mode, args)
    finally:
        torch.set_num_threads(before)
    for k, (a, b) in enumerate(zip([*side_by_side[0], *side_by_side[2]],
                                   [*in_turn[0], *in_turn[2]])):
        assert torch.equal(a, b), f"result {k} differs between side by side and in turn"


# 15 rows: input size 6 stacks the two W_ih for one projection GEMM, 32 (more
# features than rows) runs a GEMM per direction (_driver._bidir_projection).
@pytest.mark.parametrize("input_size", [6, 32])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_modules_run_one_op_per_bidirectional_layer(mode, num_layers, input_size, monkeypatch):
    from rnnfuse import functional
    calls = {"bidir": 0, "single": 0}
    for name, key in ((f"{mode.lower()}_bidir_layer", "bidir"), (f"{mode.lower()}_layer",
                                                                 "single")):
        inner = getattr(functional, name)

        def counting(*a, _inner=inner, _key=key, **k):
            calls[_key] += 1
            return _inner(*a, **k)
        monkeypatch.setattr(functional, name, counting)
    torch.manual_seed(0)
    plain = getattr(torch.nn, mode)(input_size, 10, num_layers=num_layers, bidirectional=True)
    fused = getattr(rnnfuse, mode)(input_size, 10, num_layers=num_layers, bidirectional=True)
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(5, 3, input_size, requires_grad=True)
    expected, actual = plain(x), fused(x)
    assert calls == {"bidir": num_layers, "single": 0}
    for e, a in zip(torch.utils._pytree.tree_leaves(expected),
                    torch.utils._pytree.tree_leaves(actual)):
        torch.testing.assert_close(a, e)
    # and the gradients, through either projection
    wanted = [x, *plain.parameters()]
    expected_grads = torch.autograd.grad(expected[0].sum(), wanted)
    actual_grads = torch.autograd.grad(actual[0].sum(), [x, *fused.parameters()])
    for e, a in zip(expected_grads, actual_grads):
        torch.testing.assert_close(a, e)


# --------------------------------------------------------------------- opcheck
def _opcheck_args(mode, packed):
    kwargs = dict(proj=3) if mode == "LSTM" else dict(bias=True)
    return bidir_args(mode, 4, 3, 5, dtype=torch.float64, packed=packed, seed=21, **kwargs)


def opcheck_both_ops(mode, packed, to_device=lambda args: args):
    """opcheck of the forward (inference, training) and the backward op;
    to_device moves the arguments (test_cuda_bidir.py)."""
    fwd, bwd = (OPS.lstm_bidir_fwd, OPS.lstm_bidir_bwd) if mode == "LSTM" else (
        OPS.gru_bidir_fwd, OPS.gru_bidir_bwd)
    args = to_device(_opcheck_args(mode, packed))
    torch.library.opcheck(fwd, (*args, False))
    grad_args = tuple(a.clone().requires_grad_() if isinstance(a, torch.Tensor)
                      and a.is_floating_point() else a for a in args)
    torch.library.opcheck(fwd, (*grad_args, True))
    outs = fwd(*args, True)
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(t.shape, generator=gen, dtype=t.dtype).to(t.device) for t in outs[:-1]]
    if mode == "LSTM":
        _, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, batch_sizes = args
        torch.library.opcheck(bwd, (*grads, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, outs[0],
                                    outs[-1], batch_sizes))
    else:
        _, w_hh, w_hh_r, b_hh, b_hh_r, h0, batch_sizes = args
        torch.library.opcheck(bwd, (*grads, w_hh, w_hh_r, b_hh, b_hh_r, h0, outs[0], outs[-1],
                                    batch_sizes))


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck(mode, packed):
    opcheck_both_ops(mode, packed)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_inference_has_empty_workspace_and_refuses_backward(mode):
    fwd = OPS.lstm_bidir_fwd if mode == "LSTM" else OPS.gru_bidir_fwd
    args = bidir_args(mode, 3, 2, 4, dtype=torch.float64)
    leaf = args[0].clone().requires_grad_()
    outs = fwd(leaf, *args[1:], False)
    assert outs[-1].shape == (0,)
    with pytest.raises(RuntimeError, match="training=False and saved nothing"):
        outs[0].sum().backward()


# ------------------------------------------------------------ argument checks
def _bad(mode, **changes):
    args = list(bidir_args(mode, 2, 3, 4, dtype=torch.float32))
    names = (["x_proj", "w_hh", "w_hh_rev", "w_hr", "w_hr_rev", "h0", "c0", "batch_sizes"]
             if mode == "LSTM" else ["x_proj", "w_hh", "w_hh_rev", "b_hh", "b_hh_rev", "h0",
                                     "batch_sizes"])
    for name, value in changes.items():
        args[names.index(name)] = value
    return args


BAD = [
    ("LSTM", dict(h0=torch.randn(3, 4)), r"h0 must be \(2, batch, out\), one state per direction"),
    ("LSTM", dict(c0=torch.randn(1, 3, 4)), r"c0 must be \(2, batch, hidden\)"),
    ("LSTM", dict(x_proj=torch.randn(6, 16)), r"x_proj must have shape \[6, 32\]"),
    ("LSTM", dict(x_proj=torch.randn(6)), r"x_proj must be 2-D"),
    ("LSTM", dict(w_hh_rev=torch.randn(16, 3)), r"w_hh must have shape \[16, 4\]"),
    # A projection to 3 in one direction: its w_hh must then be (16, 3).
    ("LSTM", dict(w_hr_rev=torch.randn(3, 4)), r"w_hh must have shape \[16, 3\]"),
    ("LSTM", dict(w_hh_rev=torch.randn(16, 4, dtype=torch.float64)), r"w_hh has dtype Double"),
    ("GRU", dict(h0=torch.randn(3, 3, 4)), r"h0 must be \(2, batch, hidden\)"),
    ("GRU", dict(b_hh_rev=torch.randn(11)), r"b_hh must have shape \[12\]"),
    ("GRU", dict(batch_sizes=torch.tensor([3, 4])), r"non-increasing"),
]


@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("mode,changes,match", BAD, ids=lambda v: str(v)[:40])
def test_bad_arguments_raise_the_same_on_the_kernels_and_the_fake_path(mode, changes, match,
                                                                        device):
    args = _bad(mode, **changes)
    if device == "meta":  # the fake kernel and its Python checks
        args = [a.to("meta") if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                for a in args]
    fwd = OPS.lstm_bidir_fwd if mode == "LSTM" else OPS.gru_bidir_fwd
    with pytest.raises(RuntimeError, match=match):
        fwd(*args, False)
