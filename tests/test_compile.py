"""torch.compile(fullgraph=True) traces models built on the rnnfuse modules
without graph breaks, and the compiled forward and backward match eager;
torch.export gives the graph torch.nn gives.

These compile with inductor (the default backend; on the CPU it needs a C++
compiler), so they take seconds each: shapes are tiny.
"""
from __future__ import annotations

import pytest
import torch

from conftest import compare_runs, forward_backward, make_twins

COMPILE_ATOL = 1e-10  # float64: inductor's fusion only reorders a few sums


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _inputs(mode, dtype=torch.float64, batch=3, steps=4, size_in=3, hidden=5, layers=2, dirs=2):
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype)
        return x.requires_grad_()

    if mode in ("LSTM", "GRU"):
        inputs = {"x": rand(batch, steps, size_in), "h0": rand(layers * dirs, batch, hidden)}
        if mode == "LSTM":
            inputs["c0"] = rand(layers * dirs, batch, hidden)
    else:
        inputs = {"x": rand(batch, size_in), "h0": rand(batch, hidden)}
        if mode == "LSTMCell":
            inputs["c0"] = rand(batch, hidden)
    state = (inputs["h0"], inputs["c0"]) if "c0" in inputs else inputs["h0"]
    return inputs, (inputs["x"], state)


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_compile_fullgraph_matches_eager(mode, layer_calls):
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True) \
        if mode in ("LSTM", "GRU") else {}
    _, fused = make_twins(mode, 3, 5, dtype=torch.float64, **kwargs)
    inputs, args = _inputs(mode)

    eager = forward_backward(fused, inputs, lambda: fused(*args))
    calls_eager = dict(layer_calls)
    compiled_module = torch.compile(fused, fullgraph=True)
    compiled = forward_backward(fused, inputs, lambda: compiled_module(*args))
    # The traced forward went through the rnnfuse ops, not torch.nn's (dynamo
    # replays the counter's increments from the trace).
    assert all(layer_calls[k] == 2 * v for k, v in calls_eager.items()), layer_calls
    compare_runs(eager, compiled, atol=COMPILE_ATOL)
    # Again, from the cached graph.
    compare_runs(eager, forward_backward(fused, inputs, lambda: compiled_module(*args)),
                 atol=COMPILE_ATOL)


@pytest.mark.filterwarnings("ignore:The tensor attributes .*_flat_weights")  # torch.nn's too
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_torch_export_gives_torch_nn_graph(mode, layer_calls):
    # Exported programs must not depend on the rnnfuse library: under
    # torch.export the modules take torch.nn's path (aten.lstm, aten.gru, ...).
    kwargs = dict(num_layers=2, bidirectional=True, batch_first=True) \
        if mode in ("LSTM", "GRU") else {}
    plain, fused = make_twins(mode, 3, 5, **kwargs)
    _, args = _inputs(mode, dtype=torch.float32)

    def targets(module):
        program = torch.export.export(module, args, strict=False)
        return [str(node.target) for node in program.graph.nodes]

    expected, actual = targets(plain), targets(fused)
    assert sum(layer_calls.values()) == 0
    assert actual == expected
    assert not any("rnnfuse" in t for t in actual)
