"""Swap torch.nn recurrent modules for their rnnfuse twins, and back.

Conversion changes each module's class in place instead of building a new
module: the rnnfuse classes are torch.nn's with another ``forward`` and no
state of their own, so the parameters stay the very same objects (an
optimizer built before conversion keeps working), as do the device, dtype,
training mode, hooks, and every other reference to the module, including a
module shared by several parents or the model itself being an RNN.

Only exact torch.nn classes are converted: a user subclass of nn.LSTM may
override ``forward`` or add state, and swapping its class would drop that.
"""
from __future__ import annotations

from torch import nn

from . import modules

_TO_RNNFUSE = {
    nn.LSTM: modules.LSTM,
    nn.GRU: modules.GRU,
    nn.LSTMCell: modules.LSTMCell,
    nn.GRUCell: modules.GRUCell,
}
_TO_TORCH = {fused: plain for plain, fused in _TO_RNNFUSE.items()}

__all__ = ["convert", "revert"]


def _swap_classes(model: nn.Module, mapping) -> nn.Module:
    for module in model.modules():  # includes model itself, each module once
        new_class = mapping.get(type(module))
        if new_class is not None:
            module.__class__ = new_class
    return model


def convert(model: nn.Module) -> nn.Module:
    """Make every nn.LSTM, nn.GRU, nn.LSTMCell and nn.GRUCell in ``model``
    (``model`` included) run on rnnfuse, in place. Returns ``model``."""
    return _swap_classes(model, _TO_RNNFUSE)


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert`: every rnnfuse module in ``model`` becomes its
    torch.nn class again, in place. Returns ``model``."""
    return _swap_classes(model, _TO_TORCH)
