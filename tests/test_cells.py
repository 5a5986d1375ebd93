"""rnnfuse.LSTMCell / rnnfuse.GRUCell against torch.nn: the new state and the
gradients of the input, the state and every parameter (CPU, float64)."""
from __future__ import annotations

import itertools

import pytest
import torch

from conftest import compare, compare_runs, forward_backward, make_twins, requires_cuda

F64_ATOL = 1e-10

# (mode, batch, bias, hx given, input size, hidden size); batch None = unbatched
CELL_CASES = [
    (mode, batch, bias, with_hx, size_in, hidden)
    for mode, (batch, bias, with_hx, size_in, hidden) in itertools.product(
        ["LSTMCell", "GRUCell"],
        [(None, True, True, 3, 5), (None, False, False, 7, 13), (1, True, False, 1, 33),
         (4, True, True, 10, 5), (7, False, True, 3, 13), (3, True, False, 7, 1),
         (0, True, True, 3, 5)])
]


def _cell_inputs(mode, batch, with_hx, size_in, hidden, dtype=torch.float64, device="cpu",
                 seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        shape = shape if batch is not None else shape[1:]
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return x.to(device, dtype).requires_grad_()

    inputs = {"x": rand(batch, size_in)}
    if with_hx:
        inputs["h0"] = rand(batch, hidden)
        if mode == "LSTMCell":
            inputs["c0"] = rand(batch, hidden)

    def call_args():
        if not with_hx:
            return (inputs["x"],)
        if mode == "LSTMCell":
            return (inputs["x"], (inputs["h0"], inputs["c0"]))
        return (inputs["x"], inputs["h0"])

    return inputs, call_args


def expected_calls(mode, steps):
    """A cell step is one single-step call of the layer op."""
    op = "lstm_layer" if mode == "LSTMCell" else "gru_layer"
    return {"lstm_layer": 0, "gru_layer": 0, op: steps}


@pytest.mark.parametrize("mode,batch,bias,with_hx,size_in,hidden", CELL_CASES)
def test_cell_parity_float64(mode, batch, bias, with_hx, size_in, hidden, layer_calls):
    plain, fused = make_twins(mode, size_in, hidden, bias=bias, dtype=torch.float64)
    inputs, call_args = _cell_inputs(mode, batch, with_hx, size_in, hidden)
    expected = forward_backward(plain, inputs, lambda: plain(*call_args()))
    actual = forward_backward(fused, inputs, lambda: fused(*call_args()))
    assert layer_calls == expected_calls(mode, 1)
    compare_runs(expected, actual, atol=F64_ATOL)


@pytest.mark.parametrize("mode", ["LSTMCell", "GRUCell"])
def test_cell_unrolled_sequence_matches_torch(mode, layer_calls):
    # The usual way cells are used: the state of one step feeds the next.
    plain, fused = make_twins(mode, 6, 9, dtype=torch.float64)
    inputs, _ = _cell_inputs(mode, 3, True, 6, 9)
    xs = torch.randn(5, 3, 6, dtype=torch.float64, requires_grad=True)
    inputs["xs"] = xs

    def unroll(cell):
        state = (inputs["h0"], inputs["c0"]) if mode == "LSTMCell" else inputs["h0"]
        outs = []
        for x in xs:
            state = cell(x, state)
            outs.append(state[0] if mode == "LSTMCell" else state)
        return torch.stack(outs)

    compare_runs(forward_backward(plain, inputs, lambda: unroll(plain)),
                 forward_backward(fused, inputs, lambda: unroll(fused)), atol=F64_ATOL)
    assert layer_calls == expected_calls(mode, len(xs))


@pytest.mark.parametrize("mode", ["LSTMCell", "GRUCell"])
def test_cell_no_grad_matches_torch(mode, layer_calls):
    plain, fused = make_twins(mode, 4, 6, dtype=torch.float64)
    inputs, call_args = _cell_inputs(mode, 3, True, 4, 6)
    with torch.no_grad():
        expected, actual = plain(*call_args()), fused(*call_args())
    assert layer_calls == expected_calls(mode, 1)
    expected = expected if isinstance(expected, tuple) else (expected,)
    actual = actual if isinstance(actual, tuple) else (actual,)
    for i, (e, a) in enumerate(zip(expected, actual)):
        compare(f"state[{i}]", e, a, F64_ATOL)


@requires_cuda
@pytest.mark.parametrize("mode,batch,bias,with_hx,size_in,hidden", CELL_CASES[::2])
def test_cell_parity_cuda_float64(mode, batch, bias, with_hx, size_in, hidden, layer_calls):
    plain, fused = make_twins(mode, size_in, hidden, bias=bias, dtype=torch.float64)
    fused.cuda()
    inputs_cpu, call_cpu = _cell_inputs(mode, batch, with_hx, size_in, hidden)
    inputs_gpu, call_gpu = _cell_inputs(mode, batch, with_hx, size_in, hidden, device="cuda")
    expected = forward_backward(plain, inputs_cpu, lambda: plain(*call_cpu()))
    actual = forward_backward(fused, inputs_gpu, lambda: fused(*call_gpu()))
    assert layer_calls == expected_calls(mode, 1)
    compare_runs(expected, actual, atol=F64_ATOL)
