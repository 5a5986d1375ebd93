"""Gradients beyond one reverse pass: double backward, forward-mode AD and
torch.func, against torch.nn on the CPU (which supports them all) in float64.

Where these run on the differentiable composite path (rnnfuse/_composite.py)
the arithmetic is torch.nn's up to summation order, so float64 agreement is
near machine precision; F64_TOL leaves room for sums over T steps.
"""
from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD
from torch.func import functional_call, grad, hessian, jacfwd, jacrev, jvp, vmap
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import make_twins, requires_cuda, tensors_of

F64_TOL = 1e-10

MODULE_CASES = {
    "LSTM": dict(),
    "LSTM-proj": dict(proj_size=3),
    "LSTM-bidir-2layer": dict(bidirectional=True, num_layers=2),
    "GRU": dict(),
    "GRU-nobias-bidir": dict(bias=False, bidirectional=True),
    "LSTMCell": dict(),
    "GRUCell": dict(),
}


def _mode(case):
    return case.split("-")[0]


def _input(case, requires_grad=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (4, 3) if _mode(case).endswith("Cell") else (5, 4, 3)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(requires_grad)


def _twins(case):
    return make_twins(_mode(case), 3, 5, dtype=torch.float64, **MODULE_CASES[case])


def _outputs(module, x):
    """Every output tensor of ``module(x)`` (y, then the final states)."""
    return tensors_of(module(x))


def _second_order(module, x):
    """Gradients w.r.t. the input and every parameter of a gradient penalty:
    the squared norm of d(loss)/d(input, params), loss reaching every output."""
    params = list(module.parameters())
    outs = _outputs(module, x)
    loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view(o.shape)).sum()
               for o in outs)
    first = torch.autograd.grad(loss, [x, *params], create_graph=True)
    penalty = sum((g ** 2).sum() for g in first)
    return torch.autograd.grad(penalty, [x, *params])


def _assert_close(name, expected, actual, tol=F64_TOL):
    err = (expected - actual).abs().max().item() if expected.numel() else 0.0
    print(f"  {name:24s} max abs err {err:.3e}  (magnitude {expected.abs().max().item():.2e})")
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
    assert err <= tol * max(1.0, expected.abs().max().item()), name


# ------------------------------------------------------------ double backward
@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_double_backward_matches_torch_nn(case, layer_calls):
    plain, fused = _twins(case)
    expected = _second_order(plain, _input(case))
    actual = _second_order(fused, _input(case))
    assert sum(layer_calls.values()) > 0
    names = ["input"] + [n for n, _ in fused.named_parameters()]
    for name, e, a in zip(names, expected, actual):
        assert a.abs().max() > 0 or e.abs().max() == 0, f"{name}: all-zero second-order gradient"
        _assert_close(name, e, a)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_double_backward_packed_matches_torch_nn(mode, layer_calls):
    plain, fused = make_twins(mode, 3, 5, dtype=torch.float64, bidirectional=True)
    results = []
    for module in (plain, fused):
        x = _input(mode)
        packed = pack_padded_sequence(x, [5, 3, 3, 1])
        out, state = module(packed)
        h_n = state[0] if isinstance(state, tuple) else state
        loss = (out.data ** 2).sum() + (h_n ** 3).sum()
        first = torch.autograd.grad(loss, [x, *module.parameters()], create_graph=True)
        results.append(torch.autograd.grad(sum((g ** 2).sum() for g in first),
                                           [x, *module.parameters()]))
    assert sum(layer_calls.values()) > 0
    for i, (e, a) in enumerate(zip(*results)):
        _assert_close(f"grad[{i}]", e, a)


def test_triple_backward_matches_torch_nn(layer_calls):
    # The create_graph path recomputes through differentiable ops, so any order works.
    plain, fused = _twins("GRU")
    results = []
    for module in (plain, fused):
        x = _input("GRU")
        (g1,) = torch.autograd.grad(module(x)[0].pow(3).sum(), x, create_graph=True)
        (g2,) = torch.autograd.grad(g1.pow(2).sum(), x, create_graph=True)
        results.append(torch.autograd.grad(g2.sum(), x)[0])
    assert layer_calls["gru_layer"] > 0
    _assert_close("third order", *results)


def test_create_graph_first_order_matches_plain_backward(layer_calls):
    # create_graph=True takes the recompute path; its first-order values must
    # equal the fused backward's.
    _, fused = _twins("LSTM-proj")
    x = _input("LSTM")
    loss = lambda: sum(o.sum() for o in _outputs(fused, x))  # noqa: E731
    fast = torch.autograd.grad(loss(), [x, *fused.parameters()])
    graph = torch.autograd.grad(loss(), [x, *fused.parameters()], create_graph=True)
    for i, (e, a) in enumerate(zip(fast, graph)):
        assert a.requires_grad
        _assert_close(f"grad[{i}]", e, a.detach())


# ------------------------------------------------------ forward-mode AD, func
@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_forward_mode_ad_matches_torch_nn(case, layer_calls):
    plain, fused = _twins(case)
    x = _input(case, requires_grad=False)
    tangent = _input(case, requires_grad=False, seed=1)
    results = []
    for module in (plain, fused):
        with fwAD.dual_level():
            outs = _outputs(module, fwAD.make_dual(x, tangent))
            results.append([fwAD.unpack_dual(o).tangent for o in outs])
    assert sum(layer_calls.values()) > 0
    for i, (e, a) in enumerate(zip(*results)):
        assert a is not None, f"output {i}: no tangent"
        _assert_close(f"tangent[{i}]", e, a)


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_func_jvp_and_jacfwd_match_torch_nn(case, layer_calls):
    plain, fused = _twins(case)
    x = _input(case, requires_grad=False)
    v = _input(case, requires_grad=False, seed=1)
    expected = jvp(lambda x: tuple(_outputs(plain, x)), (x,), (v,))[1]
    actual = jvp(lambda x: tuple(_outputs(fused, x)), (x,), (v,))[1]
    for i, (e, a) in enumerate(zip(expected, actual)):
        assert a.abs().max() > 0, f"tangent {i} is all zeros"
        _assert_close(f"jvp[{i}]", e, a)
    first = lambda m: lambda x: _outputs(m, x)[0]  # noqa: E731
    _assert_close("jacfwd", jacfwd(first(plain))(x), jacfwd(first(fused))(x))
    assert sum(layer_calls.values()) > 0


@pytest.mark.parametrize("case", list(MODULE_CASES))
def test_func_grad_jacrev_hessian_match_torch_nn(case, layer_calls):
    plain, fused = _twins(case)
    x = _input(case, requires_grad=False)

    def loss(module):
        def f(params, x):
            outs = functional_call(module, params, (x,))
            return sum((o.tanh() ** 2).sum() for o in tensors_of(outs))
        return f

    params = {k: v.detach() for k, v in plain.named_parameters()}
    for name, transform in (("grad", grad(lambda p, x, m: loss(m)(p, x))),
                            ("jacrev", jacrev(lambda p, x, m: loss(m)(p, x)))):
        expected, actual = transform(params, x, plain), transform(params, x, fused)
        for k in params:
            _assert_close(f"{name} {k}", expected[k], actual[k])
    h_expected = hessian(lambda x: loss(plain)(params, x))(x)
    h_actual = hessian(lambda x: loss(fused)(params, x))(x)
    _assert_close("hessian", h_expected, h_actual)
    assert sum(layer_calls.values()) > 0


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_vmap_runs_the_fused_ops_and_matches_a_loop(mode, layer_calls):
    # torch.nn's modules cannot be vmapped (no batching rule for aten.lstm);
    # rnnfuse's can, through the fused kernels, and backward through it works.
    plain, fused = make_twins(mode, 3, 5, dtype=torch.float64)
    xs = torch.randn(3, 5, 2, 3, dtype=torch.float64)
    actual = vmap(lambda x: fused(x)[0])(xs)
    assert layer_calls[mode.lower() + "_layer"] > 0
    expected = torch.stack([plain(x)[0] for x in xs])
    _assert_close("vmap output", expected, actual)
    actual.sum().backward()
    expected.sum().backward()
    _assert_close("vmap grad w_hh", plain.weight_hh_l0.grad, fused.weight_hh_l0.grad)


# ------------------------------------------------------------------ raw ops
def _raw_lstm_args(packed):
    gen = torch.Generator().manual_seed(3)
    rand = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    batch_sizes = torch.tensor([3, 3, 2, 1]) if packed else None
    rows = 9 if packed else 12
    return (rand(rows, 16), rand(16, 2) * 0.5, rand(2, 4) * 0.5, rand(3, 2), rand(3, 4),
            batch_sizes)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_raw_op_jvp_matches_finite_differences(packed, reverse):
    """torch.func.jvp of the raw op (it used to return zero tangents)."""
    x_proj, w_hh, w_hr, h0, c0, batch_sizes = _raw_lstm_args(packed)
    primals = (x_proj, w_hh, w_hr, h0, c0)
    tangents = tuple(torch.randn_like(p) for p in primals)

    def f(*p):
        return torch.ops.rnnfuse.lstm_fwd(*p, batch_sizes, reverse, False)[:3]

    _, actual = jvp(f, primals, tangents)
    eps = 1e-6
    plus = f(*(p + eps * t for p, t in zip(primals, tangents)))
    minus = f(*(p - eps * t for p, t in zip(primals, tangents)))
    for i, (a, p, m) in enumerate(zip(actual, plus, minus)):
        fd = (p - m) / (2 * eps)
        assert a.abs().max() > 0
        _assert_close(f"jvp output {i}", fd, a, tol=1e-7)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_backward_ops_pass_gradcheck(mode, packed):
    """lstm_bwd / gru_bwd are differentiable ops in their own right."""
    gen = torch.Generator().manual_seed(5)
    rand = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    batch_sizes = torch.tensor([3, 2, 2, 1]) if packed else None
    rows = 8 if packed else 12
    if mode == "LSTM":
        fwd_args = (rand(rows, 16), rand(16, 4) * 0.5, None, rand(3, 4), rand(3, 4))
        y, _, _, ws = torch.ops.rnnfuse.lstm_fwd(*fwd_args, batch_sizes, True, True)
        _, w_hh, _, h0, c0 = fwd_args
        args = [rand(rows, 4), rand(3, 4), rand(3, 4), w_hh, None, h0, c0, y, ws]
        op = torch.ops.rnnfuse.lstm_bwd
    else:
        fwd_args = (rand(rows, 12), rand(12, 4) * 0.5, rand(12), rand(3, 4))
        y, _, ws = torch.ops.rnnfuse.gru_fwd(*fwd_args, batch_sizes, True, True)
        _, w_hh, b_hh, h0 = fwd_args
        args = [rand(rows, 4), rand(3, 4), w_hh, b_hh, h0, y, ws]
        op = torch.ops.rnnfuse.gru_bwd
    args = [a.detach().requires_grad_() if a is not None else None for a in args]
    diff = [i for i, a in enumerate(args) if a is not None]

    def call(*d):
        full = list(args)
        for i, t in zip(diff, d):
            full[i] = t
        return op(*full, batch_sizes, True)

    assert torch.autograd.gradcheck(call, [args[i] for i in diff], eps=1e-6, atol=1e-7)


# ------------------------------------------------------------------- CUDA
@requires_cuda
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_double_backward_on_cuda_raises_like_cudnn(mode, layer_calls):
    plain, fused = make_twins(mode, 3, 5, device="cuda")
    for module in (plain, fused):
        x = torch.randn(5, 4, 3, device="cuda", requires_grad=True)
        (g,) = torch.autograd.grad(module(x)[0].sum(), x, create_graph=True)
        with pytest.raises(RuntimeError):
            torch.autograd.grad(g.pow(2).sum(), x)
    assert layer_calls[mode.lower() + "_layer"] > 0


# --------------------------------------------------------- in-place editing
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_output_edited_in_place_before_backward_like_torch_cpu(mode, layer_calls):
    """torch.nn on the CPU lets a caller edit the outputs in place before
    backward (F.relu(out, inplace=True)); so must rnnfuse, with the same
    gradients."""
    plain, fused = make_twins(mode, 3, 5, dtype=torch.float64, **(
        {} if mode.endswith("Cell") else dict(num_layers=2)))
    results = []
    for module in (plain, fused):
        x = _input(mode)
        outs = _outputs(module, x)
        for o in outs:
            torch.nn.functional.relu(o, inplace=True)
        sum((o * o).sum() for o in outs).backward()
        results.append([x.grad, *(p.grad for p in module.parameters())])
    assert sum(layer_calls.values()) > 0
    for i, (e, a) in enumerate(zip(*results)):
        _assert_close(f"grad[{i}]", e, a)
