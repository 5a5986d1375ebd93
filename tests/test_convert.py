"""rnnfuse.convert / rnnfuse.revert on nested models and on a bare RNN."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnfuse
from conftest import compare, requires_cuda, tensors_of


class CustomLSTM(nn.LSTM):
    """A user subclass with its own forward: convert must leave it alone."""

    def forward(self, input, hx=None):
        out, state = super().forward(input, hx)
        return out * 2, state


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.LSTM(4, 8, num_layers=2, bidirectional=True, batch_first=True)
        self.blocks = nn.ModuleList([nn.Sequential(nn.Linear(16, 6), nn.Tanh()), nn.GRU(6, 5)])
        self.cells = nn.ModuleDict({"lstm": nn.LSTMCell(5, 7), "gru": nn.GRUCell(7, 3)})
        self.custom = CustomLSTM(3, 3)
        self.shared_gru = self.blocks[1]  # one module reachable under two names

    def forward(self, x):
        y, _ = self.encoder(x)                       # (B, T, 16)
        y = self.blocks[0](y).transpose(0, 1)        # (T, B, 6)
        y, _ = self.shared_gru(y)                    # (T, B, 5)
        h, c = self.cells["lstm"](y[-1])
        g = self.cells["gru"](h)
        z, _ = self.custom(g.unsqueeze(0))
        return z, c


RNN_CLASSES = {nn.LSTM: rnnfuse.LSTM, nn.GRU: rnnfuse.GRU, nn.LSTMCell: rnnfuse.LSTMCell,
               nn.GRUCell: rnnfuse.GRUCell}


def make_net():
    torch.manual_seed(0)
    net = Net().double()
    net.cells.eval()  # mixed training modes must survive conversion
    return net


def convert_net(net):
    """Convert; the user subclass stays on torch.nn and convert says so."""
    with pytest.warns(UserWarning, match=r"left custom \(CustomLSTM\) unchanged"):
        return rnnfuse.convert(net)


def snapshot(model):
    return {
        "params": [(n, id(p)) for n, p in model.named_parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": {n: m.training for n, m in model.named_modules()},
        "dtypes": {p.dtype for p in model.parameters()},
    }


def assert_snapshot_kept(before, model):
    after = snapshot(model)
    assert after["params"] == before["params"]  # the very same Parameter objects
    assert after["training"] == before["training"]
    assert after["dtypes"] == before["dtypes"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


def test_convert_nested_model(layer_calls):
    net = make_net()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    expected = net(x)
    before = snapshot(net)

    assert convert_net(net) is net
    assert type(net.encoder) is rnnfuse.LSTM
    assert type(net.blocks[1]) is rnnfuse.GRU and net.shared_gru is net.blocks[1]
    assert type(net.cells["lstm"]) is rnnfuse.LSTMCell
    assert type(net.cells["gru"]) is rnnfuse.GRUCell
    assert type(net.custom) is CustomLSTM
    assert type(net.blocks[0][0]) is nn.Linear
    assert_snapshot_kept(before, net)

    actual = net(x)
    assert layer_calls == {"lstm_layer": 4 + 1 + 0, "gru_layer": 1 + 1}
    for i, (e, a) in enumerate(zip(tensors_of(expected), tensors_of(actual), strict=True)):
        compare(f"output[{i}]", e, a, 1e-10)


def test_revert_restores_torch_nn_exactly():
    net = make_net()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    expected = net(x)
    before = snapshot(net)
    convert_net(net)
    assert rnnfuse.revert(net) is net
    for module in net.modules():
        assert type(module) not in RNN_CLASSES.values()
    assert type(net.encoder) is nn.LSTM and type(net.cells["gru"]) is nn.GRUCell
    assert type(net.custom) is CustomLSTM
    assert_snapshot_kept(before, net)
    for e, a in zip(tensors_of(expected), tensors_of(net(x)), strict=True):
        assert torch.equal(e, a)  # torch.nn again: bit for bit


@pytest.mark.parametrize("plain_cls", list(RNN_CLASSES))
def test_convert_a_bare_rnn(plain_cls):
    module = plain_cls(3, 4).double()
    module.eval()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    x = x if plain_cls in (nn.LSTM, nn.GRU) else x[0]
    expected = module(x)
    assert rnnfuse.convert(module) is module
    assert type(module) is RNN_CLASSES[plain_cls] and not module.training
    for e, a in zip(tensors_of(expected), tensors_of(module(x)), strict=True):
        compare("output", e, a, 1e-10)
    assert rnnfuse.convert(module) is module  # idempotent
    assert type(module) is RNN_CLASSES[plain_cls]
    assert type(rnnfuse.revert(module)) is plain_cls
    assert type(rnnfuse.revert(module)) is plain_cls


def test_optimizer_and_hooks_survive_conversion():
    net = make_net()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    seen = []
    net.encoder.register_forward_hook(lambda m, args, out: seen.append(type(m)))
    convert_net(net)

    x = torch.randn(2, 5, 4, dtype=torch.float64)
    before = net.encoder.weight_hh_l1.detach().clone()
    z, c = net(x)
    (z.sum() + c.sum()).backward()
    optimizer.step()
    assert seen == [rnnfuse.LSTM]
    assert not torch.equal(net.encoder.weight_hh_l1, before)


@requires_cuda
def test_convert_keeps_device():
    net = make_net().cuda()
    x = torch.randn(2, 5, 4, dtype=torch.float64, device="cuda")
    expected = net(x)
    convert_net(net)
    assert all(p.is_cuda for p in net.parameters())
    for e, a in zip(tensors_of(expected), tensors_of(net(x)), strict=True):
        compare("output", e, a, 1e-10)
