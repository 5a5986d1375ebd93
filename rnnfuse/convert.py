"""Swap torch.nn recurrent modules for their rnnfuse twins, and back.

Conversion changes each module's class in place instead of building a new
module: the rnnfuse classes are torch.nn's with another ``forward`` and no
state of their own, so the parameters stay the very same objects (an
optimizer built before conversion keeps working), as do the device, dtype,
training mode, hooks, and every other reference to the module, including a
module shared by several parents or the model itself being an RNN.

A module with parametrizations (torch.nn.utils.parametrize: weight norm,
AWD-LSTM's weight drop) has a class that torch.nn.utils.parametrize made for
it, deriving from the torch.nn class; it is converted by rebuilding that
class over the rnnfuse twin, with the same parametrized attributes.

A user subclass of nn.LSTM may override ``forward`` or add state, so
swapping its class could drop that: such modules stay on torch.nn, with a
warning that says so.
"""
from __future__ import annotations

import warnings

from torch import nn
from torch.nn.utils import parametrize

from . import modules

_TO_RNNFUSE = {
    nn.LSTM: modules.LSTM,
    nn.GRU: modules.GRU,
    nn.LSTMCell: modules.LSTMCell,
    nn.GRUCell: modules.GRUCell,
}
_TO_TORCH = {fused: plain for plain, fused in _TO_RNNFUSE.items()}

__all__ = ["convert", "revert"]


def _rebased(param_cls: type, new_base: type) -> type:
    """The parametrized class ``param_cls`` over another base class: its own
    attributes (one property per parametrized tensor, pickling guards) kept."""
    attrs = {k: v for k, v in vars(param_cls).items() if k not in ("__dict__", "__weakref__")}
    return type(param_cls.__name__, (new_base,), attrs)


def _new_class(module: nn.Module, mapping) -> type | None:
    cls = type(module)
    if parametrize.is_parametrized(module):
        base = mapping.get(cls.__bases__[0])
        return None if base is None else _rebased(cls, base)
    return mapping.get(cls)


def _swap_classes(model: nn.Module, mapping, name: str) -> nn.Module:
    for path, module in model.named_modules(remove_duplicate=True):  # model included
        new_class = _new_class(module, mapping)
        if new_class is not None:
            module.__class__ = new_class
            continue
        base = parametrize.type_before_parametrizations(module)
        skipped = [known for known in mapping if issubclass(base, known) and base is not known]
        if skipped and base not in _TO_TORCH and base not in _TO_RNNFUSE:
            warnings.warn(
                f"rnnfuse.{name}: left {path or 'the model'} ({base.__qualname__}) unchanged: "
                f"it subclasses {skipped[0].__module__}.{skipped[0].__qualname__} and may "
                "override forward or add state; only the exact classes are swapped",
                stacklevel=3)
    return model


def convert(model: nn.Module) -> nn.Module:
    """Make every nn.LSTM, nn.GRU, nn.LSTMCell and nn.GRUCell in ``model``
    (``model`` included) run on rnnfuse, in place. Returns ``model``."""
    return _swap_classes(model, _TO_RNNFUSE, "convert")


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert`: every rnnfuse module in ``model`` becomes its
    torch.nn class again, in place. Returns ``model``."""
    return _swap_classes(model, _TO_TORCH, "revert")
