"""Per-layer functional API: one layer over the whole sequence, in one
direction (lstm_layer, gru_layer) or both (lstm_bidir_layer, gru_bidir_layer),
and the cells' single steps.

Semantics and layout are those of rnnfuse.reference (x_proj is the input
projection of every active (timestep, sequence) row, time-major). The work
runs in the fused rnnfuse ops; the workspace for the backward is saved only
when a gradient can be asked for.
"""
import torch

from . import ops  # noqa: F401  (registers fake kernels and autograd)


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _forward(name, tensors, *args, training):
    """``op(*args, training)``, doing here what the op's Autograd kernel
    (Python, in ops.py) would do on its ordinary path: record the backward
    when gradients are needed, else step below autograd. That saves the
    dispatcher's hop into Python and back on every call, which shows in a
    cell's per-call time. Compiled code, forward-mode calls and torch.func's
    transforms keep the dispatcher's path."""
    op = getattr(torch.ops.rnnfuse, name)
    if torch.compiler.is_compiling() or ops.needs_composite(tensors):
        return op(*args, training)
    if training:
        if torch._C._are_functorch_transforms_active():  # vmap batches the op itself
            return op(*args, training)
        return ops.record_forward(name, *args, training)
    with torch._C._AutoDispatchBelowAutograd():
        return op.default(*args, training)


def lstm_layer(x_proj, w_hh, w_hr, h0, c0, batch_sizes=None, reverse=False):
    """Returns ``(y, h_n, c_n)``; see rnnfuse.reference.lstm_layer."""
    tensors = (x_proj, w_hh, w_hr, h0, c0)
    y, h_n, c_n, _ = _forward("lstm_fwd", tensors, x_proj, w_hh, w_hr, h0, c0,
                              batch_sizes, reverse, training=_needs_grad(*tensors))
    return y, h_n, c_n


def gru_layer(x_proj, w_hh, b_hh, h0, batch_sizes=None, reverse=False):
    """Returns ``(y, h_n)``; see rnnfuse.reference.gru_layer."""
    tensors = (x_proj, w_hh, b_hh, h0)
    y, h_n, _ = _forward("gru_fwd", tensors, x_proj, w_hh, b_hh, h0, batch_sizes,
                         reverse, training=_needs_grad(*tensors))
    return y, h_n


def lstm_bidir_layer(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes=None):
    """Both directions of one layer: ``x_proj`` ``(N, 8H)`` is the forward
    direction's projection then the reverse's, ``h0`` / ``c0`` ``(2, B, *)``.
    Returns ``(y, h_n, c_n)`` with ``y`` ``(N, 2P)``, the two directions'
    outputs side by side, and the states stacked as h0 and c0. On CUDA one
    kernel launch per time step runs both directions."""
    tensors = (x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0)
    y, h_n, c_n, _ = _forward("lstm_bidir_fwd", tensors, *tensors, batch_sizes,
                              training=_needs_grad(*tensors))
    return y, h_n, c_n


def gru_bidir_layer(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes=None):
    """Both directions of one GRU layer (see lstm_bidir_layer): ``x_proj``
    ``(N, 6H)``, ``h0`` ``(2, B, H)``; returns ``(y, h_n)``."""
    tensors = (x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0)
    y, h_n, _ = _forward("gru_bidir_fwd", tensors, *tensors, batch_sizes,
                         training=_needs_grad(*tensors))
    return y, h_n


def lstm_cell(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """One LSTM step on batched ``x`` ``(B, I)``; returns ``(h, c)``."""
    tensors = (x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    h, c, _ = _forward("lstm_cell_fwd", tensors, *tensors,
                       training=_needs_grad(*tensors))
    return h, c


def gru_cell(x, w_ih, w_hh, b_ih, b_hh, h0):
    """One GRU step on batched ``x`` ``(B, I)``; returns ``h``."""
    tensors = (x, w_ih, w_hh, b_ih, b_hh, h0)
    h, _ = _forward("gru_cell_fwd", tensors, *tensors,
                    training=_needs_grad(*tensors))
    return h
