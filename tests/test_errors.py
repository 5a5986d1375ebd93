"""Bad input: rnnfuse must raise what torch.nn raises (same type, same message),
and where torch.nn accepts an odd input, return what torch.nn returns.

The expected errors are never written down here: each case runs torch.nn on
the same input and takes its exception. ``raises`` only records whether
torch.nn currently rejects the case, so a change there shows up instead of
silently turning an error test into a value test.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import TWINS, compare, requires_cuda, tensors_of

D = torch.float64
CASES = {}


def case(name, mode, raises=True, module=None, tamper=None):
    """Register ``args_fn`` as a bad-input case for ``mode``.

    module: constructor kwargs (defaults per mode below); tamper: applied to
    both modules after construction (e.g. to swap a weight)."""
    def register(args_fn):
        CASES[f"{mode}: {name}"] = (mode, raises, module or {}, tamper, args_fn)
        return args_fn
    return register


def r(*shape, dtype=D):
    return torch.randn(*shape, dtype=torch.float64).to(dtype)


def packed(lengths, dtype=D, features=4, enforce_sorted=True):
    x = r(max(lengths), len(lengths), features, dtype=dtype)
    return pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=enforce_sorted)


def replace_param(name, value):
    def tamper(m):
        delattr(m, name)
        setattr(m, name, nn.Parameter(value))
    return tamper


# ---------------------------------------------------- LSTM(4, 6, num_layers=2)
def lstm_hx(layers=2, batch=3, hidden=6, cell=6, dtype=D, cell_dtype=None):
    return (r(layers, batch, hidden, dtype=dtype), r(layers, batch, cell, dtype=cell_dtype or dtype))


case("input 1-D", "LSTM")(lambda: (r(4),))
case("input 4-D", "LSTM")(lambda: (r(2, 5, 3, 4),))
case("wrong feature size", "LSTM")(lambda: (r(5, 3, 3),))
case("wrong feature size, unbatched", "LSTM")(lambda: (r(5, 3),))
case("float32 input", "LSTM")(lambda: (r(5, 3, 4, dtype=torch.float32),))
case("int64 input", "LSTM")(lambda: (torch.ones(5, 3, 4, dtype=torch.long),))
case("empty sequence", "LSTM")(lambda: (r(0, 3, 4),))
case("empty sequence, unbatched", "LSTM")(lambda: (r(0, 4),))
case("empty sequence, batch_first", "LSTM", module={"batch_first": True})(
    lambda: (r(3, 0, 4),))
case("empty sequence and batch", "LSTM")(lambda: (r(0, 0, 4),))
case("h0 wrong batch", "LSTM")(lambda: (r(5, 3, 4), lstm_hx(batch=2)))
case("h0 wrong layers", "LSTM")(lambda: (r(5, 3, 4), lstm_hx(layers=1)))
case("h0 wrong hidden", "LSTM")(lambda: (r(5, 3, 4), (r(2, 3, 5), r(2, 3, 6))))
case("c0 wrong hidden", "LSTM")(lambda: (r(5, 3, 4), lstm_hx(cell=5)))
case("h0 2-D for batched input", "LSTM")(lambda: (r(5, 3, 4), (r(3, 6), r(2, 3, 6))))
case("states 3-D for unbatched input", "LSTM")(lambda: (r(5, 4), lstm_hx(batch=1)))
case("states wrong hidden, unbatched", "LSTM")(lambda: (r(5, 4), (r(2, 5), r(2, 6))))
case("hx a tensor, not a tuple", "LSTM")(lambda: (r(5, 3, 4), r(2, 3, 6)))
case("hx with three states", "LSTM")(lambda: (r(5, 3, 4), lstm_hx() + (r(2, 3, 6),)))
case("hx with one state", "LSTM")(lambda: (r(5, 3, 4), (r(2, 3, 6),)))
case("hx a list, not a tuple", "LSTM", raises=False)(lambda: (r(5, 3, 4), list(lstm_hx())))
case("float32 h0", "LSTM")(lambda: (r(5, 3, 4), lstm_hx(dtype=torch.float32, cell_dtype=D)))
case("float32 h0, no bias", "LSTM", module={"bias": False})(
    lambda: (r(5, 3, 4), lstm_hx(dtype=torch.float32, cell_dtype=D)))
# ATen promotes a lower-precision c0 to the input's dtype and computes.
case("float32 c0", "LSTM", raises=False)(
    lambda: (r(5, 3, 4), lstm_hx(cell_dtype=torch.float32)))
case("packed, wrong feature size", "LSTM")(lambda: (packed([5, 3, 2], features=3),))
case("packed, float32 input", "LSTM")(lambda: (packed([5, 3, 2], dtype=torch.float32),))
case("packed, h0 wrong batch", "LSTM")(lambda: (packed([5, 3, 2]), lstm_hx(batch=2)))
case("packed, h0 wrong hidden", "LSTM")(lambda: (packed([5, 3, 2]), (r(2, 3, 5), r(2, 3, 6))))
case("packed, c0 wrong hidden", "LSTM")(lambda: (packed([5, 3, 2]), lstm_hx(cell=5)))
case("packed, h0 2-D", "LSTM")(lambda: (packed([5, 3, 2]), (r(3, 6), r(3, 6))))
case("packed, float32 h0", "LSTM")(lambda: (packed([5, 3, 2]), lstm_hx(dtype=torch.float32)))
case("packed unsorted, h0 batch too small", "LSTM")(
    lambda: (packed([2, 5, 3], enforce_sorted=False), lstm_hx(batch=2)))
# The permutation picks three of the four rows, and torch.nn goes on.
case("packed unsorted, h0 batch too large", "LSTM", raises=False)(
    lambda: (packed([2, 5, 3], enforce_sorted=False), lstm_hx(batch=4)))
case("proj: h0 of hidden size", "LSTM", module={"proj_size": 2})(
    lambda: (r(5, 3, 4), lstm_hx(hidden=6)))
case("proj: c0 of proj size", "LSTM", module={"proj_size": 2})(
    lambda: (r(5, 3, 4), lstm_hx(hidden=2, cell=2)))
case("bidirectional: h0 for one direction", "LSTM", module={"bidirectional": True})(
    lambda: (r(5, 3, 4), lstm_hx()))
case("weight of another dtype", "LSTM",
     tamper=replace_param("weight_hh_l1", r(24, 6, dtype=torch.float32)))(
    lambda: (r(5, 3, 4),))
case("weight of another shape", "LSTM", tamper=replace_param("weight_hh_l0", r(24, 5)))(
    lambda: (r(5, 3, 4),))
case("bias of another shape", "LSTM", tamper=replace_param("bias_hh_l1", r(23)))(
    lambda: (r(5, 3, 4),))


# ----------------------------------------------------- GRU(4, 6, num_layers=2)
case("input 1-D", "GRU")(lambda: (r(4),))
case("input 4-D", "GRU")(lambda: (r(2, 5, 3, 4),))
case("wrong feature size", "GRU")(lambda: (r(5, 3, 3),))
case("float32 input", "GRU")(lambda: (r(5, 3, 4, dtype=torch.float32),))
case("int64 input", "GRU")(lambda: (torch.ones(5, 3, 4, dtype=torch.long),))
case("empty sequence", "GRU")(lambda: (r(0, 3, 4),))
case("empty sequence, unbatched", "GRU")(lambda: (r(0, 4),))
case("h0 wrong batch", "GRU")(lambda: (r(5, 3, 4), r(2, 2, 6)))
case("h0 wrong layers", "GRU")(lambda: (r(5, 3, 4), r(1, 3, 6)))
case("h0 wrong hidden", "GRU")(lambda: (r(5, 3, 4), r(2, 3, 5)))
case("h0 2-D for batched input", "GRU")(lambda: (r(5, 3, 4), r(3, 6)))
case("h0 3-D for unbatched input", "GRU")(lambda: (r(5, 4), r(2, 1, 6)))
case("h0 wrong hidden, unbatched", "GRU")(lambda: (r(5, 4), r(2, 5)))
case("hx a tuple", "GRU")(lambda: (r(5, 3, 4), (r(2, 3, 6),)))
case("float32 h0", "GRU")(lambda: (r(5, 3, 4), r(2, 3, 6, dtype=torch.float32)))
case("float32 h0, no bias", "GRU", module={"bias": False})(
    lambda: (r(5, 3, 4), r(2, 3, 6, dtype=torch.float32)))
case("packed, wrong feature size", "GRU")(lambda: (packed([5, 3, 2], features=3),))
case("packed, float32 input", "GRU")(lambda: (packed([5, 3, 2], dtype=torch.float32),))
case("packed, h0 wrong batch", "GRU")(lambda: (packed([5, 3, 2]), r(2, 2, 6)))
case("packed, h0 2-D", "GRU")(lambda: (packed([5, 3, 2]), r(3, 6)))
case("packed, float32 h0", "GRU")(lambda: (packed([5, 3, 2]), r(2, 3, 6, dtype=torch.float32)))
case("packed unsorted, h0 batch too small", "GRU")(
    lambda: (packed([2, 5, 3], enforce_sorted=False), r(2, 2, 6)))
case("packed unsorted, h0 batch too large", "GRU", raises=False)(
    lambda: (packed([2, 5, 3], enforce_sorted=False), r(2, 4, 6)))
case("bidirectional: h0 for one direction", "GRU", module={"bidirectional": True})(
    lambda: (r(5, 3, 4), r(2, 3, 6)))
case("weight of another dtype", "GRU",
     tamper=replace_param("weight_ih_l0", r(18, 4, dtype=torch.float32)))(
    lambda: (r(5, 3, 4),))
case("weight of another shape", "GRU", tamper=replace_param("weight_hh_l1", r(18, 7)))(
    lambda: (r(5, 3, 4),))


# ------------------------------------------------------------------ cells (4, 6)
for cell in ("LSTMCell", "GRUCell"):
    def state(*shape, dtype=D, cell=cell):
        h = r(*shape, dtype=dtype)
        return (h, r(*shape)) if cell == "LSTMCell" else h

    case("input 0-D", cell)(lambda: (r(()),))
    case("input 3-D", cell)(lambda: (r(2, 3, 4),))
    case("wrong feature size", cell)(lambda state=state: (r(3, 3), state(3, 6)))
    case("wrong feature size, unbatched", cell)(lambda: (r(3),))
    case("float32 input", cell)(lambda state=state: (r(3, 4, dtype=torch.float32), state(3, 6)))
    case("float32 input, no hx", cell)(lambda: (r(3, 4, dtype=torch.float32),))
    case("int64 input", cell)(lambda: (torch.ones(3, 4, dtype=torch.long),))
    case("hx wrong batch", cell)(lambda state=state: (r(3, 4), state(2, 6)))
    case("hx wrong hidden", cell)(lambda state=state: (r(3, 4), state(3, 5)))
    case("hx 3-D", cell)(lambda state=state: (r(3, 4), state(1, 3, 6)))
    case("unbatched input, batched hx", cell)(lambda state=state: (r(4), state(3, 6)))
    case("batched input, unbatched hx", cell)(lambda state=state: (r(3, 4), state(6)))
    case("float32 hx", cell)(lambda state=state: (r(3, 4), state(3, 6, dtype=torch.float32)))
    case("float32 hx, no bias", cell, module={"bias": False})(
        lambda state=state: (r(3, 4), state(3, 6, dtype=torch.float32)))
    case("weight of another shape", cell,
         tamper=replace_param("weight_hh", r(6 * (4 if cell == "LSTMCell" else 3), 5)))(
        lambda: (r(3, 4),))

case("hx a tensor, not a tuple", "LSTMCell")(lambda: (r(3, 4), r(3, 6)))
case("hx with three states", "LSTMCell")(lambda: (r(3, 4), (r(3, 6),) * 3))
case("hx with one state", "LSTMCell")(lambda: (r(3, 4), (r(3, 6),)))
case("c0 wrong hidden", "LSTMCell")(lambda: (r(3, 4), (r(3, 6), r(3, 5))))
case("float32 c0", "LSTMCell", raises=False)(
    lambda: (r(3, 4), (r(3, 6), r(3, 6, dtype=torch.float32))))

DEFAULT_MODULE = {
    "LSTM": dict(input_size=4, hidden_size=6, num_layers=2),
    "GRU": dict(input_size=4, hidden_size=6, num_layers=2),
    "LSTMCell": dict(input_size=4, hidden_size=6),
    "GRUCell": dict(input_size=4, hidden_size=6),
}


def outcome(fn):
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 (comparing whatever torch.nn raises)
        return None, e


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_like_torch(name):
    mode, raises, module_kwargs, tamper, args_fn = CASES[name]
    plain_cls, fused_cls = TWINS[mode]
    kwargs = {**DEFAULT_MODULE[mode], "dtype": D, **module_kwargs}
    torch.manual_seed(0)
    plain = plain_cls(**kwargs)
    fused = fused_cls(**kwargs)
    fused.load_state_dict(plain.state_dict())
    if tamper is not None:
        tamper(plain), tamper(fused)
        fused.load_state_dict(plain.state_dict())
    args = args_fn()

    expected, expected_error = outcome(lambda: plain(*args))
    actual, actual_error = outcome(lambda: fused(*args))
    assert (expected_error is not None) == raises, (
        f"torch.nn {'accepts' if raises else 'rejects'} this input now: {expected_error!r}")
    if expected_error is not None:
        print(f"torch.nn: {type(expected_error).__name__}: {expected_error}")
        assert actual_error is not None, "rnnfuse accepted what torch.nn rejects"
        assert type(actual_error) is type(expected_error)
        assert str(actual_error) == str(expected_error)
    else:
        if actual_error is not None:
            raise actual_error
        for i, (e, a) in enumerate(zip(tensors_of(expected), tensors_of(actual), strict=True)):
            compare(f"output[{i}]", e, a, 1e-10)


# ------------------------------------------------------------ constructor checks
CTOR_CASES = [
    ("GRU", dict(input_size=4, hidden_size=6, proj_size=2)),
    ("LSTM", dict(input_size=4, hidden_size=6, proj_size=6)),
    ("LSTM", dict(input_size=4, hidden_size=6, proj_size=-1)),
    ("LSTM", dict(input_size=4, hidden_size=6, dropout=1.5)),
    ("GRU", dict(input_size=4, hidden_size=6, dropout=True)),
    ("GRU", dict(input_size=4, hidden_size=0)),
    ("LSTM", dict(input_size=4.0, hidden_size=6)),
    ("LSTM", dict(input_size=4, hidden_size=6, num_layers=0)),
    ("GRU", dict(input_size=4, hidden_size=6, bias=1)),
    ("LSTM", dict(input_size=4, hidden_size=6, batch_first="yes")),
]


@pytest.mark.parametrize("mode,kwargs", CTOR_CASES, ids=lambda v: str(v))
def test_bad_constructor_args_like_torch(mode, kwargs):
    plain_cls, fused_cls = TWINS[mode]
    _, expected = outcome(lambda: plain_cls(**kwargs))
    assert expected is not None
    with pytest.raises(type(expected)) as info:
        fused_cls(**kwargs)
    assert str(info.value) == str(expected)


@requires_cuda
@pytest.mark.parametrize("mode", list(TWINS))
def test_input_on_other_device_like_torch(mode):
    plain_cls, fused_cls = TWINS[mode]
    plain = plain_cls(**DEFAULT_MODULE[mode]).cuda()
    fused = fused_cls(**DEFAULT_MODULE[mode]).cuda()
    shape = (5, 3, 4) if mode in ("LSTM", "GRU") else (3, 4)
    x = torch.randn(shape)  # on the CPU
    _, expected = outcome(lambda: plain(x))
    _, actual = outcome(lambda: fused(x))
    assert expected is not None and actual is not None
    assert type(actual) is type(expected) and str(actual) == str(expected)
