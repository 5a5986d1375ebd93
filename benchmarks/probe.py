"""Which code path did a call take?

Three questions, asked once per point before timing: did the candidate run
its own ops (or fall back to torch.nn), did torch.nn run cuDNN, and which
of rnnfuse's recurrence paths ran (per-step kernels or the persistent tier)?

rnnfuse's modules hand inputs they cannot take back to torch.nn's forward.
A point measured on that path would compare torch.nn with itself and print a
ratio near 1 that says nothing about rnnfuse, so before timing we run one
call and look for the candidate's operator namespace among the operators it
dispatched.

We watch with a TorchDispatchMode rather than the profiler: it sees every
operator below autograd (custom ops included) and prints nothing, where the
profiler's backend logs to stderr on every start and stop. Modes are
thread-local, so the backward (run by autograd's worker thread) is not
seen; the forward is enough to tell the paths apart.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _Namespaces(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.seen.add(func.namespace)
        return func(*args, **(kwargs or {}))


def namespaces(fn: Callable[[], object]) -> set[str]:
    """Operator namespaces ("aten", "rnnfuse", ...) one call of ``fn`` dispatched."""
    mode = _Namespaces()
    with mode:
        fn()
    return mode.seen


def runs_namespace(fn: Callable[[], object], namespace: str) -> bool:
    return namespace in namespaces(fn)


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (the profiler backend logs there from C++)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def profiled_op_names(fn: Callable[[], object]) -> set[str]:
    """Every operator one call of ``fn`` ran, nested ones included.

    A dispatch mode sees only the outermost call of a composite operator
    (aten::lstm, not the aten::_cudnn_rnn inside it); the profiler records
    them all, so this is how we learn which backend torch.nn took.
    """
    with _quiet_stderr():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            fn()
    return {e.name for e in prof.events()}


def torch_nn_backend(fn: Callable[[], object]) -> str:
    """The kernel family one call of a torch.nn RNN ran: "cudnn", "mkldnn" or "native"."""
    names = profiled_op_names(fn)
    if "aten::_cudnn_rnn" in names:
        return "cudnn"
    if any(n.startswith("aten::mkldnn_rnn") for n in names):
        return "mkldnn"
    return "native"


def persistent_launches(device: torch.device) -> tuple[int, int]:
    """rnnfuse's persistent-tier launches so far in this process on CUDA: (all
    tiers, the cluster tier's), as its kernels count them."""
    like = torch.empty(1, device=device, dtype=torch.bfloat16)
    path = json.loads(torch.ops.rnnfuse.recurrence_path(like, "LSTM", 8, 1, 1))
    return path["launches"], path["cluster_launches"]


def rnnfuse_path(fn: Callable[[], object], point, device: torch.device,
                 launches: Callable[[torch.device], tuple[int, int]] = persistent_launches,
                 sync: Callable[[torch.device], None] = torch.cuda.synchronize) -> str:
    """The recurrence path one call of ``fn`` (the candidate's step) took, read
    from the persistent tier's launch counters around it: "cpu"; "per-step"
    (no persistent launch); or "persistent-<tier> k/n": k of the call's n
    layer-direction passes (forward, and backward in training) ran a
    persistent kernel, <tier> "grid", "cluster" or "grid+cluster".
    (``launches`` and ``sync``: the counters and the device sync, for tests.)"""
    if device.type != "cuda":
        fn()  # one call on every device: callers may watch it for other things
        return "cpu"
    before = launches(device)
    fn()
    sync(device)
    after = launches(device)
    launches, cluster = after[0] - before[0], after[1] - before[1]
    if launches == 0:
        return "per-step"
    passes = point.layers * point.directions * (2 if point.mode == "training" else 1)
    tier = "cluster" if cluster == launches else "grid" if cluster == 0 else "grid+cluster"
    return f"persistent-{tier} {launches}/{passes}"
