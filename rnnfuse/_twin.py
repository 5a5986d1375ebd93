"""What the rnnfuse modules do for PyTorch tools that know only torch.nn's
classes: graph recorders, TorchScript, eager-mode quantization, checkpoints.
"""
from __future__ import annotations

import copy
import warnings

import torch


def recording_graph() -> bool:
    """Whether a graph is being recorded for use without rnnfuse: torch.export
    and TorchScript tracing, and so both ONNX exporters (the TorchScript one
    traces, the dynamo one exports). The modules then run torch.nn's forward,
    so the graph holds the standard aten.lstm / aten.gru ops."""
    if torch.jit.is_tracing():
        return True
    # Read the flag torch.export sets rather than calling is_exporting(): some
    # torch versions (2.11) have dynamo fold is_exporting() to True under any
    # torch.compile, which would send compiled models down torch.nn's path.
    flag = getattr(torch.compiler, "_is_exporting_flag", None)
    return bool(flag) if flag is not None else torch.compiler.is_exporting()


class TorchNNTwin:
    """Mixin of rnnfuse.LSTM / GRU / LSTMCell / GRUCell; ``_torch_class`` is
    the torch.nn class each one replaces (captured at import, so replacing
    ``torch.nn.LSTM`` globally does not loop)."""

    _torch_class: type

    def __prepare_scriptable__(self):
        """torch.jit.script compiles torch.nn's forward: TorchScript cannot
        run rnnfuse's Python forward, so it gets a torch.nn twin sharing the
        parameters (the scripted module then computes with PyTorch's kernels)."""
        warnings.warn(
            f"rnnfuse.{type(self).__name__}: torch.jit.script compiles the torch.nn twin of this "
            "module (same parameters; TorchScript runs PyTorch's kernels). PyTorch also puts "
            "the twin in place of this module in the model it scripts; call rnnfuse.convert "
            "on that model to run it on rnnfuse again.", stacklevel=2)
        twin = copy.copy(self)
        twin.__class__ = self._torch_class
        return twin

    # Eager-mode quantization (torch.ao.quantization) finds the modules it
    # quantizes by exact type, so it passes over rnnfuse's: it sets a qconfig
    # on every module, swaps the ones it knows, then deletes the qconfigs.
    # Watching the attribute is the one way to notice, so that a module is
    # never left silently in floating point.
    @property
    def qconfig(self):
        try:
            return self.__dict__["_rnnfuse_qconfig"]
        except KeyError:
            raise AttributeError("qconfig") from None

    @qconfig.setter
    def qconfig(self, value):
        self.__dict__["_rnnfuse_qconfig"] = value

    @qconfig.deleter
    def qconfig(self):
        # torch.ao's convert deletes the qconfigs last: this module was passed over.
        value = self.__dict__.pop("_rnnfuse_qconfig")
        if value is not None:
            raise RuntimeError(self._quantization_message("cannot be quantized"))
        warnings.warn(self._quantization_message("was left in floating point by quantization")
                      + ". If it was left out on purpose, ignore this warning.", stacklevel=2)

    def _quantization_message(self, what: str) -> str:
        name = type(self).__name__
        return (f"rnnfuse.{name} {what}: torch.ao.quantization recognises modules by exact "
                f"type (nn.{name}); call rnnfuse.revert(model) before quantizing (quantized "
                "RNNs run PyTorch's int8 kernels)")

    def _check_not_quantized(self):
        """A module selected for quantization (a qconfig set, e.g. by
        torch.ao.quantization.prepare) must not compute as if it were."""
        if self.__dict__.get("_rnnfuse_qconfig") is not None:
            raise RuntimeError(self._quantization_message("cannot be quantized"))


def allow_in_weights_only_checkpoints(*classes):
    """torch.load(weights_only=True) refuses classes it has not been told are
    safe. torch.nn's modules load where the caller allowlists them; the
    rnnfuse modules (torch.nn's state, another forward) are allowlisted here,
    so a checkpoint of a converted model loads wherever the torch.nn one would."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(list(classes))
