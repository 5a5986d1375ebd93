"""rnnfuse.LSTM / rnnfuse.GRU against torch.nn: outputs, final states and every
gradient, over a seeded random sweep of configurations (CPU, float64), plus
dropout, empty batches, inference mode and, on a GPU, reduced precision."""
from __future__ import annotations

import dataclasses
import random
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import (compare, compare_runs, forward_backward, make_twins, max_err,
                      requires_cuda, tensors_of, weighted_loss)

F64_ATOL = 1e-10
LAYOUTS = ("padded", "unbatched", "packed", "packed_unsorted")


@dataclasses.dataclass(frozen=True)
class Case:
    mode: str
    layout: str
    num_layers: int
    bias: bool
    batch_first: bool
    bidirectional: bool
    proj_size: int
    with_state: bool
    strided_state: bool  # initial states passed as non-contiguous views
    input_grad: bool
    T: int
    B: int
    I: int
    H: int
    seed: int

    def __str__(self):
        flags = [self.mode, self.layout, f"L{self.num_layers}", f"T{self.T}", f"B{self.B}",
                 f"I{self.I}", f"H{self.H}"]
        flags += [f"P{self.proj_size}"] if self.proj_size else []
        flags += ["bi"] if self.bidirectional else []
        flags += ["nobias"] if not self.bias else []
        flags += ["bf"] if self.batch_first else []
        flags += (["h0strided" if self.strided_state else "h0"]) if self.with_state else []
        flags += [] if self.input_grad else ["xnograd"]
        return "-".join(flags)

    @property
    def module_kwargs(self):
        kw = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                  bidirectional=self.bidirectional)
        if self.proj_size:
            kw["proj_size"] = self.proj_size
        return kw


def sweep(n: int = 64, seed: int = 20240612) -> list[Case]:
    """Modes alternate and layouts cycle so both are balanced; the rest is
    drawn at random (test_sweep_covers_every_option checks the coverage)."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        mode = ("LSTM", "GRU")[i % 2]
        layout = LAYOUTS[(i // 2) % len(LAYOUTS)]
        H = rng.choice([1, 5, 8, 13, 33])
        proj = 0
        if mode == "LSTM" and H > 1 and rng.random() < 0.4:
            proj = rng.randint(1, H - 1)
        with_state = rng.random() < 0.6
        cases.append(Case(
            mode=mode, layout=layout, num_layers=rng.randint(1, 3), bias=rng.random() < 0.75,
            batch_first=rng.random() < 0.5, bidirectional=rng.random() < 0.5, proj_size=proj,
            with_state=with_state, strided_state=with_state and rng.random() < 0.3,
            input_grad=rng.random() < 0.85, T=rng.choice([1, 2, 5, 12]),
            B=1 if layout == "unbatched" else rng.choice([1, 2, 3, 4, 7]),
            I=rng.choice([1, 3, 7, 10]), H=H, seed=1000 + i))
    return cases


CASES = sweep()


def build_inputs(case: Case, dtype=torch.float64, device="cpu"):
    """(leaves, call_args): the input tensors by name, and a function that
    builds the module arguments from them (packing happens inside, so the
    gradient reaches the padded leaf)."""
    gen = torch.Generator().manual_seed(case.seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64).to(device, dtype)

    dirs = 2 if case.bidirectional else 1
    out = case.proj_size or case.H
    batched = case.layout != "unbatched"
    x_shape = (case.T, case.I)
    if batched:
        x_shape = (case.B, case.T, case.I) if case.batch_first else (case.T, case.B, case.I)
    leaves = {"x": rand(*x_shape).requires_grad_(case.input_grad)}

    def state(size):
        shape = (case.num_layers * dirs, case.B, size) if batched else (case.num_layers * dirs, size)
        if case.strided_state:  # same values' layout, transposed storage
            return rand(*reversed(shape)).permute(*reversed(range(len(shape)))).detach()
        return rand(*shape)

    if case.with_state:
        leaves["h0"] = state(out).requires_grad_()
        if case.mode == "LSTM":
            leaves["c0"] = state(case.H).requires_grad_()

    lengths = None
    if case.layout.startswith("packed"):
        lengths = torch.randint(1, case.T + 1, (case.B,), generator=gen)
        lengths[torch.randint(0, case.B, (1,), generator=gen)] = case.T
        if case.layout == "packed":
            lengths = lengths.sort(descending=True).values

    def call_args():
        x = leaves["x"]
        if lengths is not None:
            x = pack_padded_sequence(x, lengths, batch_first=case.batch_first,
                                     enforce_sorted=case.layout == "packed")
        if not case.with_state:
            return (x,)
        if case.mode == "LSTM":
            return (x, (leaves["h0"], leaves["c0"]))
        return (x, leaves["h0"])

    return leaves, call_args


def run_twins(case: Case, plain, fused):
    leaves, call_args = build_inputs(case)
    expected = forward_backward(plain, leaves, lambda: plain(*call_args()))
    actual = forward_backward(fused, leaves, lambda: fused(*call_args()))
    return expected, actual


def test_sweep_covers_every_option():
    for mode in ("LSTM", "GRU"):
        cases = [c for c in CASES if c.mode == mode]
        seen = lambda f: {getattr(c, f) for c in cases}  # noqa: E731
        assert seen("layout") == set(LAYOUTS)
        assert seen("num_layers") == {1, 2, 3}
        for flag in ("bias", "batch_first", "bidirectional", "with_state", "strided_state",
                     "input_grad"):
            assert seen(flag) == {False, True}, flag
        assert {1, 2}.issubset(seen("B")) and any(b % 2 and b > 1 for b in seen("B"))
        assert {1, 12}.issubset(seen("T")) and {5, 13, 33}.issubset(seen("H"))
        # the options that interact the most: packed x bidirectional x layers
        assert any(c.layout == "packed_unsorted" and c.bidirectional and c.num_layers > 1
                   and c.with_state for c in cases)
    lstm = [c for c in CASES if c.mode == "LSTM"]
    assert any(c.proj_size and c.bidirectional for c in lstm)
    assert any(c.proj_size and c.layout.startswith("packed") for c in lstm)


def ran(layer_calls) -> dict:
    return {name: n for name, n in layer_calls.items() if n}


def layers_run(case: Case) -> dict:
    """The per-layer op calls one forward of ``case`` makes."""
    dirs = 2 if case.bidirectional else 1
    return {"lstm_layer" if case.mode == "LSTM" else "gru_layer": case.num_layers * dirs}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity_float64(case, layer_calls):
    plain, fused = make_twins(case.mode, case.I, case.H, seed=case.seed,
                              dtype=torch.float64, **case.module_kwargs)
    print(case)
    expected, actual = run_twins(case, plain, fused)
    assert ran(layer_calls) == layers_run(case)
    compare_runs(expected, actual, atol=F64_ATOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("grad_mode", ["no_grad", "inference_mode"])
def test_inference_parity(mode, grad_mode, layer_calls):
    # Without autograd the ops take their no-workspace path.
    case = dataclasses.replace(CASES[0 if mode == "LSTM" else 1], with_state=True,
                               layout="packed_unsorted", bidirectional=True, num_layers=2)
    plain, fused = make_twins(mode, case.I, case.H, dtype=torch.float64, **case.module_kwargs)
    _, call_args = build_inputs(case)
    ctx = torch.no_grad if grad_mode == "no_grad" else torch.inference_mode
    with ctx():
        expected, actual = plain(*call_args()), fused(*call_args())
    assert ran(layer_calls) == layers_run(case)
    for i, (e, a) in enumerate(zip(tensors_of(expected), tensors_of(actual))):
        assert not a.requires_grad
        compare(f"output[{i}]", e, a, F64_ATOL)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch(mode, batch_first, layer_calls):
    # torch.nn accepts B = 0 and returns empty outputs with the right shapes.
    case = dataclasses.replace(CASES[0 if mode == "LSTM" else 1], layout="padded", B=0,
                               with_state=True, strided_state=False, bidirectional=True,
                               num_layers=2, batch_first=batch_first)
    plain, fused = make_twins(mode, case.I, case.H, dtype=torch.float64, **case.module_kwargs)
    leaves, call_args = build_inputs(case)
    args = call_args()
    compare_runs(forward_backward(plain, leaves, lambda: plain(*args)),
                 forward_backward(fused, leaves, lambda: fused(*args)), atol=0)
    assert ran(layer_calls) == layers_run(case)


# ----------------------------------------------------------------------- dropout
def _dropout_case(mode, num_layers):
    return dataclasses.replace(CASES[0 if mode == "LSTM" else 1], num_layers=num_layers,
                               layout="padded", T=5, B=3, H=8, proj_size=0,
                               bidirectional=True, with_state=True, strided_state=False)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_eval_matches_torch(mode, layer_calls):
    case = _dropout_case(mode, num_layers=3)
    plain, fused = make_twins(mode, case.I, case.H, dropout=0.5, dtype=torch.float64,
                              **case.module_kwargs)
    plain.eval(), fused.eval()
    compare_runs(*run_twins(case, plain, fused), atol=F64_ATOL)
    assert ran(layer_calls) == layers_run(case)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_one_in_training_matches_torch(mode, layer_calls):
    # p = 1 is deterministic (everything between layers is zeroed), so the
    # training-mode result, gradients included, must equal torch.nn's; and
    # the output is not zero, so the last layer's output was not dropped.
    case = _dropout_case(mode, num_layers=2)
    plain, fused = make_twins(mode, case.I, case.H, dropout=1.0, dtype=torch.float64,
                              **case.module_kwargs)
    expected, actual = run_twins(case, plain, fused)
    compare_runs(expected, actual, atol=F64_ATOL)
    assert ran(layer_calls) == layers_run(case)
    assert tensors_of(actual[0])[0].abs().min() > 0


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_training_differs_from_eval(mode):
    case = _dropout_case(mode, num_layers=2)
    _, fused = make_twins(mode, case.I, case.H, dropout=0.5, dtype=torch.float64,
                          **case.module_kwargs)
    _, call_args = build_inputs(case)
    args = call_args()
    torch.manual_seed(0)
    train_out = fused.train()(*args)
    eval_out = fused.eval()(*args)
    assert max_err(tensors_of(train_out)[0], tensors_of(eval_out)[0]) > 1e-3
    # a different mask in each training call
    torch.manual_seed(1)
    assert max_err(tensors_of(fused.train()(*args))[0], tensors_of(train_out)[0]) > 1e-3


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_dropout_single_layer_is_inert_and_warns_like_torch(mode):
    case = _dropout_case(mode, num_layers=1)
    with warnings.catch_warnings(record=True) as plain_warnings:
        warnings.simplefilter("always")
        plain, _ = make_twins(mode, case.I, case.H, dropout=0.5, **case.module_kwargs)
    assert plain_warnings, "torch.nn no longer warns; revisit this test"
    expected = str(plain_warnings[0].message)
    with pytest.warns(UserWarning) as record:
        _, fused = make_twins(mode, case.I, case.H, dropout=0.5, dtype=torch.float64,
                              **case.module_kwargs)
    assert expected in [str(w.message) for w in record]
    _, call_args = build_inputs(case)
    args = call_args()
    train_out, eval_out = fused.train()(*args), fused.eval()(*args)
    for t, e in zip(tensors_of(train_out), tensors_of(eval_out)):
        assert torch.equal(t, e)


# ------------------------------------------------------------- CUDA (on a GPU box)
def _cuda_case(mode, layout, num_layers, bidirectional, proj_size, T, B, I, H, seed, *,
               bias=True, batch_first=False, strided_state=False):
    return Case(mode=mode, layout=layout, num_layers=num_layers, bias=bias,
                batch_first=batch_first, bidirectional=bidirectional, proj_size=proj_size,
                with_state=True, strided_state=strided_state, input_grad=True,
                T=T, B=B, I=I, H=H, seed=seed)


# Chosen, not drawn: sizes where the GPU kernels' tiling matters (H not a
# multiple of 32, odd B), each layout, projections, and the T = 1, B = 1 corner.
CUDA_CASES = [
    _cuda_case("LSTM", "padded", 2, True, 0, T=12, B=7, I=10, H=33, seed=1, strided_state=True),
    _cuda_case("LSTM", "packed_unsorted", 2, True, 5, T=9, B=5, I=7, H=13, seed=2,
               batch_first=True),
    _cuda_case("LSTM", "unbatched", 1, False, 0, T=12, B=1, I=3, H=40, seed=3, bias=False),
    _cuda_case("GRU", "padded", 3, False, 0, T=12, B=4, I=3, H=33, seed=4),
    _cuda_case("GRU", "packed", 2, True, 0, T=10, B=6, I=5, H=13, seed=5, batch_first=True),
    _cuda_case("GRU", "padded", 1, False, 0, T=1, B=1, I=5, H=5, seed=6, bias=False),
]


@requires_cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_parity_cuda_float64(case, layer_calls):
    plain, fused = make_twins(case.mode, case.I, case.H, seed=case.seed,
                              dtype=torch.float64, **case.module_kwargs)
    fused.cuda()
    leaves_cpu, call_cpu = build_inputs(case)
    leaves_gpu, call_gpu = build_inputs(case, device="cuda")
    expected = forward_backward(plain, leaves_cpu, lambda: plain(*call_cpu()))
    actual = forward_backward(fused, leaves_gpu, lambda: fused(*call_gpu()))
    assert ran(layer_calls) == layers_run(case)
    compare_runs(expected, actual, atol=F64_ATOL)


def _errors(reference, run):
    """Max abs error of each output and gradient of ``run`` against ``reference``."""
    (out_r, grads_r), (out_x, grads_x) = reference, run
    errs = {f"output[{i}]": max_err(r, x)
            for i, (r, x) in enumerate(zip(tensors_of(out_r), tensors_of(out_x)))}
    errs.update({k: max_err(v, grads_x[k]) for k, v in grads_r.items() if v is not None})
    return errs


@pytest.fixture
def no_tf32():
    """fp32 comparisons run in true fp32, for us and for cuDNN."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16],
                         ids=str)
@pytest.mark.parametrize("case", CUDA_CASES, ids=str)
def test_reduced_precision_cuda_vs_cudnn(case, dtype, layer_calls, no_tf32):
    """flash-attention's rule: against a float64 reference run with the same
    rounded weights and inputs, our error is at most 2x cuDNN's (3x for
    gradients) plus a small epsilon."""
    # cuDNN rejects strided initial states ("rnn: hx is not contiguous");
    # rnnfuse takes them (test_parity_cuda_float64 covers that).
    case = dataclasses.replace(case, strided_state=False)
    eps = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}[dtype]
    plain, fused = make_twins(case.mode, case.I, case.H, seed=case.seed, dtype=dtype,
                              device="cuda", **case.module_kwargs)
    reference, _ = make_twins(case.mode, case.I, case.H, dtype=torch.float64,
                              **case.module_kwargs)
    reference.load_state_dict({k: v.double().cpu() for k, v in plain.state_dict().items()})
    leaves_ref, call_ref = build_inputs(case)
    leaves_gpu, call_gpu = build_inputs(case, dtype=dtype, device="cuda")
    with torch.no_grad():  # round the reference's inputs like the GPU's
        for k, v in leaves_ref.items():
            v.copy_(leaves_gpu[k].double().cpu())
    ref = forward_backward(reference, leaves_ref, lambda: reference(*call_ref()))
    ours = _errors(ref, forward_backward(fused, leaves_gpu, lambda: fused(*call_gpu())))
    assert ran(layer_calls) == layers_run(case)
    cudnn = _errors(ref, forward_backward(plain, leaves_gpu, lambda: plain(*call_gpu())))
    for name, err in ours.items():
        factor = 2 if name.startswith("output") else 3
        print(f"  {name:32s} rnnfuse {err:.3e}  cuDNN {cudnn[name]:.3e}")
        assert err <= factor * cudnn[name] + eps, name


@requires_cuda
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_autocast_cuda_matches_torch_dtypes(mode, layer_calls):
    case = _dropout_case(mode, num_layers=2)
    plain, fused = make_twins(mode, case.I, case.H, device="cuda", **case.module_kwargs)
    _, call_args = build_inputs(case, dtype=torch.float32, device="cuda")
    args = call_args()
    with torch.autocast("cuda", dtype=torch.float16):
        expected, actual = plain(*args), fused(*args)
        weighted_loss(actual).backward()
    assert ran(layer_calls) == layers_run(case)
    for e, a in zip(tensors_of(expected), tensors_of(actual)):
        assert a.dtype == e.dtype
        assert max_err(e, a) < 1e-2
