"""ONNX export of a model built on rnnfuse gives the graph the same model with
torch.nn layers gives (standard ONNX LSTM / GRU nodes), and onnxruntime runs
it to the PyTorch result. Both exporters: the torch.export-based one
(``dynamo=True``, the default) and the legacy TorchScript-based one."""
from __future__ import annotations

import copy
import io
import warnings

import pytest
import torch
from torch import nn

import rnnfuse

onnx = pytest.importorskip("onnx")
pytestmark = pytest.mark.filterwarnings(
    "ignore:The tensor attributes .*_flat_weights")  # torch.nn models warn the same


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.decoder = nn.GRU(16, 5)
        self.lstm_cell = nn.LSTMCell(5, 6)
        self.gru_cell = nn.GRUCell(6, 3)

    def forward(self, x):
        y, (h, c) = self.encoder(x)
        z, g = self.decoder(y.transpose(0, 1))
        hc, cc = self.lstm_cell(z[-1])
        return z, h, c, g, self.gru_cell(hc), cc


def export(model, x, dynamo):
    if dynamo:
        return torch.onnx.export(model, (x,), dynamo=True, verbose=False).model_proto
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(model, (x,), buffer, dynamo=False)
    return onnx.load_from_string(buffer.getvalue())


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    plain = Net().eval()
    fused = rnnfuse.convert(copy.deepcopy(plain))
    assert type(fused.encoder) is rnnfuse.LSTM and type(fused.gru_cell) is rnnfuse.GRUCell
    return plain, fused, torch.randn(3, 5, 4)


@pytest.mark.parametrize("dynamo", [True, False], ids=["dynamo", "torchscript"])
def test_onnx_graph_matches_torch_nn(models, dynamo, layer_calls):
    plain, fused, x = models
    expected = export(plain, x, dynamo)
    actual = export(fused, x, dynamo)
    assert sum(layer_calls.values()) == 0  # exporting took torch.nn's path
    ops = [node.op_type for node in actual.graph.node]
    print(ops)
    assert ops == [node.op_type for node in expected.graph.node]
    assert ops.count("LSTM") == 2 and ops.count("GRU") == 1  # LSTM: one per layer
    onnx.checker.check_model(actual)

    # Outside export, the modules are back on the rnnfuse ops.
    with torch.no_grad():
        fused(x)
    assert layer_calls["lstm_layer"] == 5 and layer_calls["gru_layer"] == 2

    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(actual.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    results = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        reference = plain(x)
    assert len(results) == len(reference)
    for i, (r, e) in enumerate(zip(results, reference)):
        err = (torch.from_numpy(r) - e).abs().max().item()
        print(f"  output[{i}] onnxruntime vs PyTorch max abs err {err:.3e}")
        assert r.shape == tuple(e.shape) and err < 1e-5
