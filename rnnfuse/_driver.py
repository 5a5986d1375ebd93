"""Composes the per-layer ops into what a torch.nn module computes.

``functional.lstm_layer`` / ``gru_layer`` run one layer in one direction, and
on the devices in ``BIDIR_ONE_OP_DEVICES`` ``lstm_bidir_layer`` /
``gru_bidir_layer`` both directions of a bidirectional layer in one op (one
(N, 2*G*H) input projection for both, no concatenation of the outputs). This file adds everything around them that ``_VF.lstm`` / ``_VF.gru`` /
``_VF.lstm_cell`` / ``_VF.gru_cell`` do: the input projection (one GEMM per
layer and direction over all timesteps), the layer and direction loops,
inter-layer dropout, the state layout ``(num_layers * num_directions, B, P)``
and autocast (torch.nn's policy per device, rnnfuse/_autocast.py).

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

from . import _autocast
from . import functional as F_rnn


# Devices whose bidirectional layers run as one op. CUDA has the op (one
# launch per time step for both directions, csrc/cuda/loops_cuda.cpp) but the
# modules take it there only once a GPU check has run its tests
# (tests/test_cuda_bidir.py, which route it through the modules themselves);
# until then a CUDA bidirectional layer runs one op per direction. With cuda
# here, RNNFUSE_PERSISTENT=1 runs a bidirectional layer as one persistent
# grid-tier launch (both directions) where both grids fit the SMs, else the
# one-launch-per-step kernels (tests/test_cuda_persistent.py covers the ops).
BIDIR_ONE_OP_DEVICES = frozenset({"cpu"})


def supported(
    x: torch.Tensor,
    tensors: Sequence[torch.Tensor | None],
    shapes: Iterable[tuple[int, ...]],
    plan: _autocast.Plan | None,
) -> bool:
    """Whether the ops can run ``x`` with these states and weights.

    ``tensors`` are ``x``, then the states, then the weights; ``shapes``
    what each must be. They must all be tensors on ``x``'s device that
    compute in one dtype under the autocast ``plan``. Only metadata is read,
    so this traces without graph breaks.
    """
    shapes = list(shapes)
    if len(shapes) != len(tensors):
        return False
    device = x.device
    # Without autocast every tensor must have x's dtype: checked in the same
    # pass (a cell call is short enough for a second pass to show).
    dtype = x.dtype if plan is None else None
    for t, shape in zip(tensors, shapes):
        if (not isinstance(t, torch.Tensor) or t.device != device or t.shape != shape
                or (dtype is not None and t.dtype != dtype)):
            return False
    return plan is None or _autocast.consistent(plan, x, tensors[1:])


def _linear(x, w, b):
    """``x @ w^T + b`` for every row at once: on the CPU in fp32/fp64
    rnnfuse::linear (the recurrence's GEMM kernel, the bias added as the
    output is stored), elsewhere F.linear."""
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and w.dtype == x.dtype and (b is None or b.dtype == x.dtype)):
        return torch.ops.rnnfuse.linear(x, w, b)
    return F.linear(x, w, b)


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


def _project(layer_in, w_ih, bias, compute_dtype, plan):
    """The input projection of every row. Under autocast's native policy it
    runs under autocast, as torch.nn's per-step input GEMM does, and comes
    back in the dtype the recurrence computes in; otherwise the operands are
    already in that dtype and autocast must not recast them."""
    if plan is None:
        return _linear(layer_in, w_ih, bias)
    if plan.cast_to is None:
        return F.linear(layer_in, w_ih, bias).to(compute_dtype)
    with torch.autocast(plan.device_type, enabled=False):
        return _linear(layer_in, w_ih, bias)


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
    plan: _autocast.Plan | None,
):
    """A multi-layer (bi)directional LSTM or GRU over time-major rows.

    ``x``: ``(N, I)``, all ``B`` sequences per step (``N = T * B``) or packed
    rows with ``batch_sizes``. ``hx``: ``(h0,)`` for GRU, ``(h0, c0)`` for
    LSTM, each ``(num_layers * num_directions, B, *)``. ``plan``: autocast's
    policy for the call (rnnfuse._autocast.plan), or None.
    Returns ``(y, states)``: ``y`` is ``(N, num_directions * P)`` and
    ``states`` has the layout of ``hx``.
    """
    lstm = mode == "LSTM"
    dirs = 2 if bidirectional else 1
    groups = group_weights(flat_weights, num_layers * dirs, has_bias, has_proj)
    hx = _autocast.cast(plan, *hx)
    final = [[] for _ in hx]  # per layer: (dirs, B, *) blocks of each state
    (layer_in,) = _autocast.cast(plan, x)
    for layer in range(num_layers):
        first = layer * dirs
        states = [h[first:first + dirs] for h in hx]
        weights = [_autocast.cast(plan, *groups[first + d]) for d in range(dirs)]
        if dirs == 2 and layer_in.device.type in BIDIR_ONE_OP_DEVICES:
            layer_in, layer_final = _bidir_layer(lstm, layer_in, weights, states, batch_sizes,
                                                 plan)
        else:
            outs, layer_final = [], [[] for _ in hx]
            for direction, (w_ih, w_hh, b_ih, b_hh, w_hr) in enumerate(weights):
                reverse = direction == 1
                if lstm:
                    x_proj = _project(layer_in, w_ih, _lstm_bias(b_ih, b_hh), w_hh.dtype, plan)
                    y, *h_n = F_rnn.lstm_layer(x_proj, w_hh, w_hr, states[0][direction],
                                               states[1][direction], batch_sizes, reverse)
                else:
                    x_proj = _project(layer_in, w_ih, b_ih, w_hh.dtype, plan)
                    y, *h_n = F_rnn.gru_layer(x_proj, w_hh, b_hh, states[0][direction],
                                              batch_sizes, reverse)
                for s, h in zip(layer_final, h_n):
                    s.append(h)
                outs.append(y)
            layer_in = outs[0] if dirs == 1 else torch.cat(outs, dim=1)
            layer_final = [torch.stack(s) for s in layer_final]
        for s, h in zip(final, layer_final):
            s.append(h)
        # Same rule as ATen: between layers, training only, never after the last.
        if dropout != 0 and training and layer < num_layers - 1:
            layer_in = F.dropout(layer_in, dropout, training=True)
    states = [torch.cat(s) for s in final]
    if plan is not None and plan.proj_out is not None and _autocast.eligible(layer_in):
        # torch.nn's native path returns the projection's autocast dtype.
        layer_in, states[0] = layer_in.to(plan.proj_out), states[0].to(plan.proj_out)
    return layer_in, tuple(states)


def _bidir_projection(layer_in, w_ih, w_ih_r, bias, bias_r, compute_dtype, plan):
    """Both directions' input projections as one (N, 2*G*H) tensor: one GEMM
    with the two W_ih stacked, or, when stacking them would copy more than
    the projections themselves (fewer rows N than input features I, e.g.
    batch 1), a GEMM per direction with their outputs stacked."""
    if layer_in.size(0) >= w_ih.size(1):
        both = None if bias is None else torch.cat([bias, bias_r])
        return _project(layer_in, torch.cat([w_ih, w_ih_r]), both, compute_dtype, plan)
    return torch.cat([_project(layer_in, w_ih, bias, compute_dtype, plan),
                      _project(layer_in, w_ih_r, bias_r, compute_dtype, plan)], 1)


def _bidir_layer(lstm, layer_in, weights, states, batch_sizes, plan):
    """Both directions of a layer in one op: one (N, 2*G*H) input
    projection, the directions' outputs written straight into one (N, 2P)
    tensor."""
    (w_ih, w_hh, b_ih, b_hh, w_hr), (w_ih_r, w_hh_r, b_ih_r, b_hh_r, w_hr_r) = weights
    if lstm:
        x_proj = _bidir_projection(layer_in, w_ih, w_ih_r, _lstm_bias(b_ih, b_hh),
                                   _lstm_bias(b_ih_r, b_hh_r), w_hh.dtype, plan)
        y, h_n, c_n = F_rnn.lstm_bidir_layer(x_proj, w_hh, w_hh_r, w_hr, w_hr_r, *states,
                                             batch_sizes)
        return y, [h_n, c_n]
    x_proj = _bidir_projection(layer_in, w_ih, w_ih_r, b_ih, b_ih_r, w_hh.dtype, plan)
    y, h_n = F_rnn.gru_bidir_layer(x_proj, w_hh, w_hh_r, b_hh, b_hh_r, *states, batch_sizes)
    return y, [h_n]


def _as_dtype(t, dtype):
    # Tensor.to costs a cell call about a microsecond even when it returns t.
    return t if t.dtype == dtype else t.to(dtype)


def lstm_cell(x, h0, c0, w_ih, w_hh, b_ih, b_hh, plan):
    """One LSTM step on batched ``x`` ``(B, I)``; returns ``(h, c)``. The
    input projection runs inside the op, in the dtype of the step: under
    autocast's native policy that is the module's dtype (torch.nn's own cell
    runs it under autocast, in the low dtype: this is the more precise)."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = _autocast.cast(plan, x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    return F_rnn.lstm_cell(_as_dtype(x, w_ih.dtype), w_ih, w_hh, b_ih, b_hh, h0, c0)


def gru_cell(x, h0, w_ih, w_hh, b_ih, b_hh, plan):
    """One GRU step on batched ``x`` ``(B, I)``; returns ``h`` (see lstm_cell)."""
    x, h0, w_ih, w_hh, b_ih, b_hh = _autocast.cast(plan, x, h0, w_ih, w_hh, b_ih, b_hh)
    return F_rnn.gru_cell(_as_dtype(x, w_ih.dtype), w_ih, w_hh, b_ih, b_hh, h0)
