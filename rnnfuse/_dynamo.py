"""Lets torch.compile trace rnnfuse.LSTM and rnnfuse.GRU.

They subclass nn.LSTM / nn.GRU, so that isinstance checks, initialisation
loops and libraries that dispatch on type see them for what they are. Dynamo
refuses every nn.RNN / nn.GRU / nn.LSTM instance: VariableBuilder.wrap_module
graph-breaks on them unless the global ``torch._dynamo.config.allow_rnn`` is
set, because tracing torch.nn's ``_VF.lstm`` path is experimental (in torch
2.11 it gave a wrong h_n). rnnfuse's forward is ordinary traceable Python
around custom ops, so the refusal is lifted for rnnfuse's modules only, for
the duration of that one check; torch.nn's own RNN modules keep dynamo's
default treatment, and a user's ``allow_rnn`` setting is left alone.

Importing dynamo takes seconds, so nothing is imported here: the check is
wrapped when dynamo's variable builder module is first imported (or at once if
it already is). Without the hook (another torch version that moved the
check), compiling still works with a graph break around the module, and
``fullgraph=True`` says why; tests/test_compile.py notices.
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys

_BUILDER = "torch._dynamo.variables.builder"


def _is_rnnfuse_module(value) -> bool:
    from . import modules
    return isinstance(value, (modules.LSTM, modules.GRU))


def _wrap_builder(builder) -> None:
    cls = getattr(builder, "VariableBuilder", None)
    wrap_module = getattr(cls, "wrap_module", None)
    if wrap_module is None or getattr(wrap_module, "_rnnfuse_hook", False):
        return
    from torch._dynamo import config

    @functools.wraps(wrap_module)
    def wrapped(self, value):
        if _is_rnnfuse_module(value) and not config.allow_rnn:
            with config.patch(allow_rnn=True):
                return wrap_module(self, value)
        return wrap_module(self, value)

    wrapped._rnnfuse_hook = True
    cls.wrap_module = wrapped


class _Loader(importlib.abc.Loader):
    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _wrap_builder(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != _BUILDER:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if _BUILDER in sys.modules:
        _wrap_builder(sys.modules[_BUILDER])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
