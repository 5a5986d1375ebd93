"""Composes the per-layer ops into what a torch.nn module computes.

``functional.lstm_layer`` / ``gru_layer`` run one layer in one direction. This
file adds everything around them that ``_VF.lstm`` / ``_VF.gru`` /
``_VF.lstm_cell`` / ``_VF.gru_cell`` do: the input projection (one GEMM per
layer and direction over all timesteps), the layer and direction loops,
inter-layer dropout, the state layout ``(num_layers * num_directions, B, P)``
and autocast.

It also answers whether the ops can take a given call at all
(:func:`supported`): the modules hand anything else back to torch.nn, so
torch.nn raises its own error (the checks it leaves to ATen have messages
that depend on the code path, e.g. "mat1 and mat2 must have the same dtype"
with bias and "expected m1 and m2 ..." without) or, where ATen tolerates a
mix, computes its own answer.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from . import functional as F_rnn


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast runs RNNs in on ``x``'s device, or None when it is off.

    torch.nn's RNN ops are on autocast's lower-precision list (cuDNN RNN and
    the cells), so every floating argument is cast to the autocast dtype.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def supported(
    x: torch.Tensor,
    tensors: Sequence[torch.Tensor | None],
    shapes: Iterable[tuple[int, ...]],
) -> bool:
    """Whether the ops can run ``x`` with these states and weights.

    ``tensors`` are the states followed by the weights, ``shapes`` what each
    must be. They must all be tensors on ``x``'s device with ``x``'s dtype
    (under autocast any floating dtype, as everything is cast). Only
    metadata is read, so this traces without graph breaks.
    """
    cast = autocast_dtype(x) is not None
    if cast and not x.is_floating_point():
        return False
    shapes = list(shapes)
    if len(shapes) != len(tensors):
        return False
    for t, shape in zip(tensors, shapes):
        if not isinstance(t, torch.Tensor) or t.device != x.device:
            return False
        if (not t.is_floating_point()) if cast else (t.dtype != x.dtype):
            return False
        if tuple(t.shape) != tuple(shape):
            return False
    return True


def _cast(dtype, *tensors):
    if dtype is None:
        return tensors
    return tuple(None if t is None else t.to(dtype) for t in tensors)


def _input_projection(x, w_ih, b):
    """``x @ w_ih^T + b`` for every row at once. On the CPU in fp32/fp64 (no
    autocast) rnnfuse's own GEMM (torch.ops.rnnfuse.linear: the recurrence's
    kernel, the bias added as the output is stored); elsewhere F.linear."""
    if (x.device.type == "cpu" and x.dim() == 2 and x.dtype in (torch.float32, torch.float64)
            and autocast_dtype(x) is None and w_ih.dtype == x.dtype
            and (b is None or b.dtype == x.dtype)):
        return torch.ops.rnnfuse.linear(x, w_ih, b)
    return F.linear(x, w_ih, b)


def _lstm_bias(b_ih, b_hh):
    # The LSTM gates add both biases to the same pre-activation, so they are
    # folded into the input projection (the op takes no bias).
    return None if b_ih is None else b_ih + b_hh


def group_weights(flat_weights, num_groups: int, has_bias: bool, has_proj: bool):
    """Split torch.nn's ``_flat_weights`` into ``(w_ih, w_hh, b_ih, b_hh, w_hr)``
    per (layer, direction), layer-major, with None for absent tensors."""
    per = len(flat_weights) // num_groups
    groups = []
    for g in range(num_groups):
        w = list(flat_weights[g * per:(g + 1) * per])
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if has_bias else (None, None)
        w_hr = w[-1] if has_proj else None
        groups.append((w_ih, w_hh, b_ih, b_hh, w_hr))
    return groups


def rnn(
    mode: str,
    x: torch.Tensor,
    batch_sizes: torch.Tensor | None,
    hx: Sequence[torch.Tensor],
    flat_weights,
    *,
    has_bias: bool,
    has_proj: bool,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
    training: bool,
):
    """A multi-layer (bi)directional LSTM or GRU over time-major rows.

    ``x``: ``(N, I)``, all ``B`` sequences per step (``N = T * B``) or packed
    rows with ``batch_sizes``. ``hx``: ``(h0,)`` for GRU, ``(h0, c0)`` for
    LSTM, each ``(num_layers * num_directions, B, *)``.
    Returns ``(y, states)``: ``y`` is ``(N, num_directions * P)`` and
    ``states`` has the layout of ``hx``.
    """
    lstm = mode == "LSTM"
    dirs = 2 if bidirectional else 1
    groups = group_weights(flat_weights, num_layers * dirs, has_bias, has_proj)
    dtype = autocast_dtype(x)
    hx = _cast(dtype, *hx)
    final = [[] for _ in hx]
    layer_in = x
    for layer in range(num_layers):
        outs = []
        for direction in range(dirs):
            idx = layer * dirs + direction
            w_ih, w_hh, b_ih, b_hh, w_hr = groups[idx]
            w_hh, b_hh, w_hr = _cast(dtype, w_hh, b_hh, w_hr)
            reverse = direction == 1
            if lstm:
                x_proj = _input_projection(layer_in, w_ih, _lstm_bias(b_ih, b_hh))
                y, h_n, c_n = F_rnn.lstm_layer(
                    x_proj, w_hh, w_hr, hx[0][idx], hx[1][idx], batch_sizes, reverse)
                final[0].append(h_n)
                final[1].append(c_n)
            else:
                x_proj = _input_projection(layer_in, w_ih, b_ih)
                y, h_n = F_rnn.gru_layer(
                    x_proj, w_hh, b_hh, hx[0][idx], batch_sizes, reverse)
                final[0].append(h_n)
            outs.append(y)
        layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=1)
        # Same rule as ATen: between layers, training only, never after the last.
        if dropout != 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, dropout, training=True)
    return layer_in, tuple(torch.stack(s) for s in final)


def lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step on batched ``x`` ``(B, I)``; returns ``(h, c)``."""
    h0, c0, w_hh = _cast(autocast_dtype(x), h0, c0, w_hh)
    x_proj = F.linear(x, w_ih, _lstm_bias(b_ih, b_hh))
    _, h, c = F_rnn.lstm_layer(x_proj, w_hh, None, h0, c0)
    return h, c


def gru_cell(x, h0, w_ih, w_hh, b_ih, b_hh):
    """One GRU step on batched ``x`` ``(B, I)``; returns ``h``."""
    h0, w_hh, b_hh = _cast(autocast_dtype(x), h0, w_hh, b_hh)
    x_proj = F.linear(x, w_ih, b_ih)
    _, h = F_rnn.gru_layer(x_proj, w_hh, b_hh, h0)
    return h
