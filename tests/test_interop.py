"""PyTorch tools that know torch.nn's classes, used on rnnfuse modules:
type checks, torch.compile, replacing torch.nn's classes globally,
parametrizations, checkpoints, TorchScript and eager-mode quantization.
Each is compared with what the same tool does with torch.nn."""
from __future__ import annotations

import io

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import rnnfuse
from conftest import TWINS, compare, make_twins, tensors_of


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(3, 5, num_layers=2)
        self.cell = nn.GRUCell(5, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.head(self.cell(y[-1]))


def _net_pair():
    torch.manual_seed(0)
    plain = Net().double()
    fused = Net().double()
    fused.load_state_dict(plain.state_dict())
    return plain, rnnfuse.convert(fused)


def _x(batch=2):
    return torch.randn(6, batch, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


# ------------------------------------------------------------- type checks
@pytest.mark.parametrize("mode", list(TWINS))
def test_isinstance_of_the_torch_nn_class(mode):
    plain_cls, fused_cls = TWINS[mode]
    assert isinstance(fused_cls(3, 5), plain_cls)
    module = rnnfuse.convert(plain_cls(3, 5))
    assert isinstance(module, plain_cls) and type(module) is fused_cls


def test_init_loops_that_dispatch_on_type_reach_rnnfuse_modules(layer_calls):
    plain, fused = _net_pair()

    def init(model):
        torch.manual_seed(5)
        for m in model.modules():
            if isinstance(m, nn.LSTM):
                for name, p in m.named_parameters():
                    nn.init.orthogonal_(p) if name.startswith("weight") else nn.init.zeros_(p)
            if isinstance(m, nn.GRUCell):
                nn.init.constant_(m.bias_hh, 0.5)

    init(plain), init(fused)
    for (name, p), q in zip(plain.state_dict().items(), fused.state_dict().values()):
        assert torch.equal(p, q), name
    compare("output", plain(_x()), fused(_x()), 1e-10)
    assert layer_calls["lstm_layer"] == 2 and layer_calls["gru_layer"] == 1


# ----------------------------------------------------------- torch.compile
@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_compile_fullgraph_of_a_model_with_rnnfuse_layers(fresh_dynamo, layer_calls):
    plain, fused = _net_pair()
    compiled = torch.compile(fused, fullgraph=True, backend="aot_eager")
    compare("output", plain(_x()), compiled(_x()), 1e-10)
    assert layer_calls["lstm_layer"] == 2


def test_compile_exemption_is_only_for_rnnfuse(fresh_dynamo):
    # dynamo's refusal of nn.LSTM stays in force for torch.nn's own modules,
    # and the user's allow_rnn setting is untouched.
    assert torch._dynamo.config.allow_rnn is False
    plain, fused = make_twins("LSTM", 3, 5)
    torch.compile(fused, fullgraph=True, backend="eager")(torch.randn(4, 2, 3))
    with pytest.raises(Exception, match="RNN, GRU, or LSTM|allow_rnn"):
        torch.compile(plain, fullgraph=True, backend="eager")(torch.randn(4, 2, 3))
    assert torch._dynamo.config.allow_rnn is False


# ------------------------------------------------- replacing torch.nn's classes
@pytest.mark.parametrize("mode", list(TWINS))
def test_torch_nn_classes_replaced_globally_do_not_loop(mode, monkeypatch):
    """``torch.nn.LSTM = rnnfuse.LSTM``: the calls rnnfuse hands to torch.nn
    (here: mismatched dtypes, which torch.nn rejects) reach torch.nn's own
    code, not rnnfuse's again (that was a RecursionError)."""
    plain_cls, fused_cls = TWINS[mode]
    cell = mode.endswith("Cell")
    x = torch.randn(*((2, 3) if cell else (4, 2, 3)))
    h = torch.zeros(*((2, 5) if cell else (1, 2, 5)), dtype=torch.float64)
    state = (h, h) if "LSTM" in mode else h  # float64 states, float32 input
    with pytest.raises(RuntimeError) as expected:
        plain_cls(3, 5)(x, state)
    monkeypatch.setattr(nn, mode, fused_cls)
    module = nn.__dict__[mode](3, 5)
    assert type(module) is fused_cls
    with pytest.raises(RuntimeError) as actual:
        module(x, state)
    assert str(actual.value) == str(expected.value)


# ----------------------------------------------------------- parametrizations
class WeightDrop(nn.Module):
    """AWD-LSTM's DropConnect on weight_hh, as a parametrization."""

    def forward(self, w):
        return nn.functional.dropout(w, 0.3, training=self.training)


@pytest.mark.parametrize("kind", ["weight_norm", "weight_drop"])
def test_convert_parametrized_modules(kind, layer_calls):
    plain, fused = make_twins("LSTM", 3, 5, dtype=torch.float64)
    rnnfuse.revert(fused)  # start from two torch.nn modules, as AWD-LSTM does
    for module in (plain, fused):
        if kind == "weight_norm":
            torch.nn.utils.parametrizations.weight_norm(module, "weight_hh_l0")
        else:
            parametrize.register_parametrization(module, "weight_hh_l0", WeightDrop())
    assert parametrize.type_before_parametrizations(fused) is nn.LSTM
    rnnfuse.convert(fused)
    assert parametrize.type_before_parametrizations(fused) is rnnfuse.LSTM
    assert parametrize.is_parametrized(fused, "weight_hh_l0")
    plain.load_state_dict(fused.state_dict())
    results = []
    for module in (plain, fused):
        torch.manual_seed(3)  # the same dropout mask for both
        x = _x().requires_grad_()
        out, (h, c) = module(x)
        (out.sum() + h.sum() + c.sum()).backward()
        results.append([out, x.grad, *(p.grad for p in module.parameters())])
    assert layer_calls["lstm_layer"] == 1
    for i, (e, a) in enumerate(zip(*results)):
        compare(f"tensor[{i}]", e, a, 1e-10)
    rnnfuse.revert(fused)
    assert parametrize.type_before_parametrizations(fused) is nn.LSTM


@pytest.mark.parametrize("kind", ["weight_norm", "weight_drop"])
@pytest.mark.parametrize("mode", ["LSTMCell", "GRUCell"])
def test_parametrized_cells_compute_with_the_parametrized_weight(mode, kind, layer_calls):
    """A cell reads its weights straight from the parameter dict when it can
    (per-call cost); a parametrized weight is not there and must still be
    the parametrization's value, as torch.nn's cell computes it."""
    plain, fused = make_twins(mode, 3, 5, dtype=torch.float64)
    rnnfuse.revert(fused)
    for module in (plain, fused):
        if kind == "weight_norm":
            torch.nn.utils.parametrizations.weight_norm(module, "weight_hh")
        else:
            parametrize.register_parametrization(module, "weight_hh", WeightDrop())
    rnnfuse.convert(fused)
    assert parametrize.type_before_parametrizations(fused) is TWINS[mode][1]
    assert "weight_hh" not in fused._parameters
    plain.load_state_dict(fused.state_dict())
    results = []
    for module in (plain, fused):
        torch.manual_seed(3)  # the same inputs and dropout mask for both
        x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
        h = torch.randn(4, 5, dtype=torch.float64)  # nonzero: w_hh must matter
        out = module(x, (h, h.flip(0)) if mode == "LSTMCell" else h)
        out = out[0] + out[1] if isinstance(out, tuple) else out
        out.sum().backward()
        results.append([out, x.grad, *(p.grad for p in module.parameters())])
    assert layer_calls["lstm_layer" if mode == "LSTMCell" else "gru_layer"] == 1
    for i, (e, a) in enumerate(zip(*results)):
        compare(f"tensor[{i}]", e, a, 1e-10)


# ------------------------------------------------------------- checkpoints
def test_checkpoint_loads_with_weights_only_where_torch_nn_does(layer_calls):
    plain, fused = _net_pair()
    allowed = [Net, nn.LSTM, nn.GRUCell, nn.Linear]
    loaded = {}
    for name, model in (("torch", plain), ("rnnfuse", fused)):
        buffer = io.BytesIO()
        torch.save(model, buffer)
        with pytest.raises(Exception, match="weights_only|Unsupported global"):
            buffer.seek(0)
            torch.load(buffer)  # nothing allowlisted: both refuse, as torch.nn does
        buffer.seek(0)
        with torch.serialization.safe_globals(allowed):  # what the torch.nn model needs
            loaded[name] = torch.load(buffer)
    assert type(loaded["rnnfuse"].rnn) is rnnfuse.LSTM
    assert type(loaded["rnnfuse"].cell) is rnnfuse.GRUCell
    compare("output", loaded["torch"](_x()), loaded["rnnfuse"](_x()), 1e-10)
    assert layer_calls["lstm_layer"] == 2


def test_bare_rnnfuse_module_checkpoint_loads_with_default_torch_load():
    _, fused = make_twins("GRU", 3, 5, dtype=torch.float64)
    buffer = io.BytesIO()
    torch.save(fused, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert type(loaded) is rnnfuse.GRU
    assert torch.equal(loaded(_x())[0], fused(_x())[0])


# ------------------------------------------------------------- TorchScript
def test_torch_jit_script_compiles_the_torch_nn_twins():
    plain, fused = _net_pair()
    with pytest.warns(UserWarning, match="torch.jit.script compiles the torch.nn twin"):
        scripted = torch.jit.script(fused)
    compare("output", plain(_x()), scripted(_x()), 1e-10)
    # The twin shares the parameters with the module it replaced.
    assert scripted.rnn.weight_hh_l0.data_ptr() == plain.rnn.weight_hh_l0.data_ptr() or \
        torch.equal(scripted.rnn.weight_hh_l0, plain.rnn.weight_hh_l0)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    compare("reloaded", plain(_x()), torch.jit.load(buffer)(_x()), 1e-10)


def test_torch_jit_trace_passes_its_check_and_records_torch_nn_ops():
    plain, fused = _net_pair()
    traced = torch.jit.trace(fused, (_x(),))  # check_trace=True re-runs and compares
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::lstm" in kinds and not any("rnnfuse" in k for k in kinds)
    compare("output", plain(_x(3)), traced(_x(3)), 1e-10)


def test_module_traced_under_no_grad_supports_backward():
    plain, fused = _net_pair()
    grads = []
    for model in (plain, fused):
        with torch.no_grad():
            traced = torch.jit.trace(model, (_x(),))
        traced(_x()).sum().backward()
        grads.append([p.grad for p in model.parameters()])
    for i, (e, a) in enumerate(zip(*grads)):
        compare(f"grad[{i}]", e, a, 1e-10)


# ------------------------------------------------------------ quantization
def test_quantize_dynamic_never_leaves_rnnfuse_silently_in_float():
    from torch.ao.quantization import quantize_dynamic
    plain, fused = _net_pair()
    quantized = quantize_dynamic(plain.float(), dtype=torch.qint8)
    assert type(quantized.rnn).__module__.startswith("torch.ao.nn.quantized.dynamic")
    # torch.ao finds modules by exact type: ours are passed over, and say so.
    with pytest.warns(UserWarning, match="left in floating point by quantization") as seen:
        quantize_dynamic(fused.float(), dtype=torch.qint8)
    assert {str(w.message).split()[0] for w in seen} >= {"rnnfuse.LSTM", "rnnfuse.GRUCell"}
    # Selected by name, it cannot be quantized: an error, not a float module.
    with pytest.raises(RuntimeError, match="rnnfuse.LSTM cannot be quantized"):
        quantize_dynamic(fused, {"rnn": torch.ao.quantization.default_dynamic_qconfig})
    # Reverting first is the documented way, and then quantizes like torch.nn.
    reverted = quantize_dynamic(rnnfuse.revert(fused), dtype=torch.qint8)
    assert type(reverted.rnn) is type(quantized.rnn)
    assert type(reverted.cell) is type(quantized.cell)


def test_rnnfuse_module_selected_for_quantization_raises():
    _, fused = make_twins("LSTM", 3, 5)
    fused.qconfig = torch.ao.quantization.default_dynamic_qconfig
    with pytest.raises(RuntimeError, match="cannot be quantized"):
        fused(torch.randn(4, 2, 3))


def test_quantization_check_passes_plain_modules(layer_calls):
    _, fused = make_twins("GRUCell", 3, 5)
    fused(torch.randn(2, 3))
    assert not hasattr(fused, "qconfig") and layer_calls["gru_layer"] == 1
    assert [t.shape for t in tensors_of(fused(torch.randn(2, 3)))] == [(2, 5)]


def test_compile_exemption_when_dynamo_was_imported_before_rnnfuse():
    # The hook wraps dynamo's check when dynamo is imported later (the usual
    # case, above) or at once when it already is: here, in a fresh process.
    import subprocess
    import sys
    code = ("import torch, torch._dynamo\n"
            "import rnnfuse\n"
            "m, x = rnnfuse.GRU(3, 4), torch.randn(5, 2, 3)\n"
            "out = torch.compile(m, fullgraph=True, backend='eager')(x)[0]\n"
            "assert torch.allclose(out, m(x)[0])\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_distributed_data_parallel_gradients_match_torch_nn(tmp_path, layer_calls):
    # One process, gloo: DDP's gradient hooks see the same gradients as for torch.nn.
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0,
                            world_size=1)
    try:
        grads = []
        for model in _net_pair():
            wrapped = DDP(model)
            wrapped(_x()).pow(2).sum().backward()
            grads.append([p.grad for p in model.parameters()])
    finally:
        dist.destroy_process_group()
    assert layer_calls["lstm_layer"] == 2
    for i, (e, a) in enumerate(zip(*grads)):
        compare(f"grad[{i}]", e, a, 1e-10)
