"""Helpers shared by the module tests: twin construction, losses, comparisons.

Every module test builds a torch.nn module and its rnnfuse twin with the same
weights (copied with a strict load_state_dict), runs both on the same inputs
and compares outputs and every gradient.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

import rnnfuse

TWINS = {
    "LSTM": (nn.LSTM, rnnfuse.LSTM),
    "GRU": (nn.GRU, rnnfuse.GRU),
    "LSTMCell": (nn.LSTMCell, rnnfuse.LSTMCell),
    "GRUCell": (nn.GRUCell, rnnfuse.GRUCell),
}

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def layer_calls(monkeypatch):
    """Counts calls of the per-layer ops, by name. The modules hand inputs
    they cannot take back to torch.nn, so a parity test must also check that
    the rnnfuse path ran, or it would pass by comparing torch.nn to itself."""
    from rnnfuse import functional

    calls = {"lstm_layer": 0, "gru_layer": 0}
    # Counted per layer-direction: a bidirectional layer's call (both
    # directions in one op) counts two. A cell call is one step of a layer:
    # counted as that layer's.
    counter_of = {"lstm_layer": ("lstm_layer", 1), "gru_layer": ("gru_layer", 1),
                  "lstm_bidir_layer": ("lstm_layer", 2), "gru_bidir_layer": ("gru_layer", 2),
                  "lstm_cell": ("lstm_layer", 1), "gru_cell": ("gru_layer", 1)}

    def counting(name):
        inner = getattr(functional, name)
        counter, weight = counter_of[name]

        def wrapper(*args, **kwargs):
            calls[counter] += weight
            return inner(*args, **kwargs)
        return wrapper

    for name in counter_of:
        monkeypatch.setattr(functional, name, counting(name))
    return calls


def make_twins(kind: str, *args, seed: int = 0, **kwargs):
    """(torch.nn module, rnnfuse module) with identical weights."""
    plain_cls, fused_cls = TWINS[kind]
    torch.manual_seed(seed)
    plain = plain_cls(*args, **kwargs)
    fused = fused_cls(*args, **kwargs)
    fused.load_state_dict(plain.state_dict(), strict=True)
    return plain, fused


def tensors_of(out):
    """The tensors of a module's output, in order; a PackedSequence gives its data."""
    if isinstance(out, PackedSequence):
        return [out.data]
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in tensors_of(o)]


def weighted_loss(out, seed: int = 1234):
    """A scalar that depends on every output element with a distinct random
    weight, so each gradient path (y, h_n, c_n) is exercised."""
    gen = torch.Generator().manual_seed(seed)
    loss = 0
    for t in tensors_of(out):
        w = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.device, t.dtype)
        loss = loss + (t * w).sum()
    return loss


def forward_backward(module, inputs, call):
    """Run ``call()`` (which uses ``module`` and the ``inputs``), backprop a
    weighted loss, and return (outputs, {name: gradient}) for the parameters
    and the inputs that require grad."""
    leaves = {k: v for k, v in inputs.items() if v.requires_grad}
    module.zero_grad(set_to_none=True)
    for leaf in leaves.values():
        leaf.grad = None
    out = call()
    weighted_loss(out).backward()
    grads = {f"input:{k}": v.grad for k, v in leaves.items()}
    grads.update({f"param:{k}": p.grad for k, p in module.named_parameters()})
    return out, grads


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:
        return 0.0
    return (a.double().cpu() - b.double().cpu()).abs().max().item()


def compare(name: str, expected, actual, atol: float) -> float:
    """Assert shapes, dtypes and values match within atol; print the error."""
    assert isinstance(actual, torch.Tensor), f"{name}: got {type(actual)}"
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{name}: dtype {actual.dtype} != {expected.dtype}"
    err = max_err(expected, actual)
    print(f"  {name:32s} max abs err {err:.3e}")
    assert err <= atol, f"{name}: max abs err {err:.3e} > {atol:.1e}"
    return err


def compare_runs(expected, actual, atol: float):
    """Compare two (outputs, grads) results from forward_backward."""
    (out_e, grads_e), (out_a, grads_a) = expected, actual
    assert type(out_a) is type(out_e)
    if isinstance(out_e, PackedSequence):
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            e, a = getattr(out_e, field), getattr(out_a, field)
            assert (e is None and a is None) or torch.equal(e, a), field
    flat_e, flat_a = tensors_of(out_e), tensors_of(out_a)
    assert len(flat_e) == len(flat_a)
    for i, (e, a) in enumerate(zip(flat_e, flat_a)):
        compare(f"output[{i}]", e, a, atol)
    assert grads_e.keys() == grads_a.keys()
    for name, e in grads_e.items():
        a = grads_a[name]
        # A tensor that did not reach the loss gets None where torch.nn may
        # produce zeros (e.g. an empty batch): the same gradient.
        if e is not None and a is None:
            a = torch.zeros_like(e)
        if a is not None and e is None:
            e = torch.zeros_like(a)
        if e is not None:
            compare(f"grad {name}", e, a, atol)
