"""Parameters of the rnnfuse modules are torch.nn's: state_dict in both
directions (strict), names, shapes, order, repr, pickling, dtype moves,
flatten_parameters and torch.func.functional_call."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from conftest import TWINS, compare, requires_cuda, tensors_of

CONFIGS = [
    ("LSTM", dict(input_size=3, hidden_size=5)),
    ("LSTM", dict(input_size=3, hidden_size=5, num_layers=3, bidirectional=True)),
    ("LSTM", dict(input_size=3, hidden_size=5, num_layers=2, proj_size=2, bias=False)),
    ("LSTM", dict(input_size=3, hidden_size=5, num_layers=2, proj_size=4, bidirectional=True)),
    ("GRU", dict(input_size=3, hidden_size=5)),
    ("GRU", dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, bias=False)),
    ("LSTMCell", dict(input_size=3, hidden_size=5)),
    ("LSTMCell", dict(input_size=3, hidden_size=5, bias=False)),
    ("GRUCell", dict(input_size=3, hidden_size=5)),
    ("GRUCell", dict(input_size=3, hidden_size=5, bias=False)),
]
IDS = [f"{mode}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for mode, kw in CONFIGS]


def sample_input(mode, kwargs, dtype=torch.float64, device="cpu"):
    gen = torch.Generator().manual_seed(7)
    shape = (4, 2, kwargs["input_size"]) if mode in ("LSTM", "GRU") else (2, kwargs["input_size"])
    return torch.randn(shape, generator=gen, dtype=torch.float64).to(device, dtype)


def assert_same_outputs(a, b, atol=1e-10):
    for i, (x, y) in enumerate(zip(tensors_of(a), tensors_of(b), strict=True)):
        compare(f"output[{i}]", x, y, atol)


@pytest.mark.parametrize("mode,kwargs", CONFIGS, ids=IDS)
def test_state_dict_round_trips_strict(mode, kwargs):
    plain_cls, fused_cls = TWINS[mode]
    torch.manual_seed(0)
    plain, fused = plain_cls(**kwargs), fused_cls(**kwargs)
    # Same construction, same names, shapes and order.
    assert [(n, p.shape) for n, p in plain.named_parameters()] == \
        [(n, p.shape) for n, p in fused.named_parameters()]
    assert list(plain.state_dict()) == list(fused.state_dict())

    # torch.nn -> rnnfuse through a serialized file, then rnnfuse -> a fresh torch.nn.
    buffer = io.BytesIO()
    torch.save(plain.state_dict(), buffer)
    buffer.seek(0)
    assert not fused.load_state_dict(torch.load(buffer), strict=True).missing_keys
    back = plain_cls(**kwargs)
    back.load_state_dict(fused.state_dict(), strict=True)
    for (name, p), q in zip(plain.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name

    plain, fused, back = plain.double(), fused.double(), back.double()
    x = sample_input(mode, kwargs)
    assert_same_outputs(plain(x), fused(x))
    assert_same_outputs(plain(x), back(x), atol=0)


@pytest.mark.parametrize("mode,kwargs", CONFIGS, ids=IDS)
def test_load_state_dict_rejects_what_torch_rejects(mode, kwargs):
    plain_cls, fused_cls = TWINS[mode]
    state = plain_cls(**kwargs).state_dict()
    state.pop(next(iter(state)))
    errors = []
    for cls in (plain_cls, fused_cls):
        with pytest.raises(RuntimeError) as info:
            cls(**kwargs).load_state_dict(state, strict=True)
        errors.append(str(info.value).replace(cls.__name__, "<cls>"))
    assert errors[0] == errors[1]


@pytest.mark.parametrize("mode,kwargs", CONFIGS, ids=IDS)
def test_repr_pickle_copy_and_dtype_moves(mode, kwargs):
    plain_cls, fused_cls = TWINS[mode]
    torch.manual_seed(0)
    plain = plain_cls(**kwargs)
    fused = fused_cls(**kwargs)
    fused.load_state_dict(plain.state_dict())
    assert repr(fused) == repr(plain)

    # Built in float32, moved to float64 afterwards: forward must see the new weights.
    plain.double(), fused.double()
    x = sample_input(mode, kwargs)
    assert_same_outputs(plain(x), fused(x))

    buffer = io.BytesIO()
    torch.save(fused, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert type(loaded) is fused_cls
    assert_same_outputs(fused(x), loaded(x), atol=0)
    assert_same_outputs(fused(x), copy.deepcopy(fused)(x), atol=0)


@pytest.mark.parametrize("mode,kwargs", [c for c in CONFIGS if c[0] in ("LSTM", "GRU")],
                         ids=[i for i, c in zip(IDS, CONFIGS) if c[0] in ("LSTM", "GRU")])
def test_flatten_parameters_is_harmless(mode, kwargs):
    plain_cls, fused_cls = TWINS[mode]
    plain = plain_cls(**kwargs, dtype=torch.float64)
    fused = fused_cls(**kwargs, dtype=torch.float64)
    fused.load_state_dict(plain.state_dict())
    fused.flatten_parameters()
    x = sample_input(mode, kwargs)
    assert_same_outputs(plain(x), fused(x))


@pytest.mark.parametrize("mode,kwargs", CONFIGS, ids=IDS)
def test_functional_call_uses_the_given_parameters(mode, kwargs, layer_calls):
    # torch.func swaps parameters in for one call; the forward must use them
    # (torch.nn re-reads its flat weight list for this).
    plain_cls, fused_cls = TWINS[mode]
    torch.manual_seed(0)
    plain = plain_cls(**kwargs, dtype=torch.float64)
    fused = fused_cls(**kwargs, dtype=torch.float64)
    fused.load_state_dict(plain.state_dict())
    params = {n: torch.randn_like(p) for n, p in plain.named_parameters()}
    x = sample_input(mode, kwargs)
    expected = torch.func.functional_call(plain, params, (x,))
    actual = torch.func.functional_call(fused, params, (x,))
    assert sum(layer_calls.values()) > 0
    assert_same_outputs(expected, actual)
    assert (tensors_of(actual)[0] - tensors_of(fused(x))[0]).abs().max() > 1e-3


@requires_cuda
@pytest.mark.parametrize("mode,kwargs", [c for c in CONFIGS if c[0] in ("LSTM", "GRU")],
                         ids=[i for i, c in zip(IDS, CONFIGS) if c[0] in ("LSTM", "GRU")])
def test_flatten_parameters_cuda(mode, kwargs):
    # On CUDA flatten_parameters packs the weights into one cuDNN buffer and
    # makes the parameters views of it; our forward must still be right.
    plain_cls, fused_cls = TWINS[mode]
    plain = plain_cls(**kwargs, dtype=torch.float64)
    fused = fused_cls(**kwargs, dtype=torch.float64)
    fused.load_state_dict(plain.state_dict())
    fused.cuda().flatten_parameters()
    x = sample_input(mode, kwargs)
    assert_same_outputs(plain(x), fused(x.cuda()))


def test_class_hierarchy():
    # Each module subclasses its torch.nn twin (isinstance holds) and adds
    # only forward and the twin plumbing of rnnfuse/_twin.py: every other
    # method, __init__ included, is torch.nn's own.
    allowed = {"forward", "_torch_class", "__doc__", "__module__", "__qualname__",
               "__firstlineno__", "__static_attributes__"}
    for mode, (plain_cls, fused_cls) in TWINS.items():
        assert issubclass(fused_cls, plain_cls) and fused_cls._torch_class is plain_cls
        assert fused_cls.__init__ is plain_cls.__init__
        assert set(vars(fused_cls)) <= allowed, set(vars(fused_cls)) - allowed
        if mode in ("LSTM", "GRU"):
            assert fused_cls(3, 5).mode == plain_cls(3, 5).mode
