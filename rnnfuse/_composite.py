"""Differentiable twins of the four ops, in ordinary PyTorch operations.

The fused kernels are differentiable once. These functions compute what the
ops compute, with the same arguments, dtypes and rounding points (gate math
and the cell state in the accumulation dtype, ``y`` rounded to the input dtype
at every step, the saved workspace stored in it), so autograd, forward-mode
AD and torch.func can differentiate them to any order. rnnfuse/ops.py runs
them instead of the kernels when a call needs that:

* ``lstm_fwd`` / ``gru_fwd`` under forward-mode AD and inside torch.func's
  grad/jvp transforms (jvp, jacfwd, jacrev, hessian, ...), and to recompute a
  layer whose backward must itself be differentiable (``create_graph=True``);
* ``lstm_bwd`` / ``gru_bwd`` when the backward ops themselves are
  differentiated;
* the same for the bidirectional ops (``lstm_bidir_fwd`` ...), direction by
  direction;
* the same for the cells' ops (``lstm_cell_fwd`` ...), which add the input
  projection to one step.

They walk the sequence step by step with small ops: correct, and slow.
The layout and schedule are those of csrc/schedule.h.
"""
from __future__ import annotations

import torch

from . import _checks


def steps(n_rows: int, batch: int, batch_sizes: torch.Tensor | None, reverse: bool):
    """``(row0, bs)`` of every step in processing order."""
    sizes = _checks.step_sizes(n_rows, batch, batch_sizes)
    offsets = [0]
    for size in sizes[:-1]:
        offsets.append(offsets[-1] + size)
    order = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    return [(offsets[t], sizes[t]) for t in order]


def _update(state: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``state`` with its first ``len(rows)`` rows replaced (out of place, so
    every version stays available to autograd)."""
    return torch.cat([rows, state[rows.size(0):]])


def _in_row_order(per_step: list, reverse: bool, empty: torch.Tensor) -> torch.Tensor:
    """Per-step blocks, listed in processing order, stacked in row order."""
    if not per_step:
        return empty
    return torch.cat(per_step[::-1] if reverse else per_step)


# ---------------------------------------------------------------------- LSTM
def lstm_fwd(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training):
    dtype, acc = x_proj.dtype, _checks.acc_dtype(x_proj.dtype)
    n_rows, hidden = x_proj.size(0), c0.size(1)
    w = w_hh.to(acc)
    w_r = None if w_hr is None else w_hr.to(acc)
    h, c = h0, c0.to(acc)
    ys, wss = [], []
    for row0, bs in steps(n_rows, h0.size(0), batch_sizes, reverse):
        pre = x_proj[row0:row0 + bs].to(acc) + h[:bs].to(acc) @ w.t()
        i, f, g, o = pre.chunk(4, 1)
        i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
        c_new = f * c[:bs] + i * g
        h_new = o * c_new.tanh()
        if w_r is not None:
            h_new = h_new @ w_r.t()
        h_new = h_new.to(dtype)
        ys.append(h_new)
        wss.append(torch.cat([i, f, g, o, c_new], 1))
        h, c = _update(h, h_new), _update(c, c_new)
    y = _in_row_order(ys, reverse, x_proj.new_empty((0, h0.size(1))))
    if training:  # saved in the input dtype, as the kernels save it
        ws = _in_row_order(wss, reverse, x_proj.new_empty((n_rows, 5 * hidden))).to(dtype)
    else:
        ws = x_proj.new_empty((0,))
    if not ys:
        h = h0.clone()
    return y, h, c.to(c0.dtype, copy=not ys), ws


def lstm_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, ws, batch_sizes, reverse):
    """The gradients of ``lstm_fwd``'s inputs from those of ``y``, ``h_n`` and
    ``c_n``, as the lstm_bwd op computes them (h_{t-1} from ``y``, c_{t-1}
    from the workspace)."""
    dtype, acc = grad_y.dtype, _checks.acc_dtype(grad_y.dtype)
    n_rows, hidden = grad_y.size(0), c0.size(1)
    schedule = steps(n_rows, h0.size(0), batch_sizes, reverse)
    w = w_hh.to(acc)
    w_r = None if w_hr is None else w_hr.to(acc)
    i, f, g, o, c = ws.to(acc).view(n_rows, 5, hidden).unbind(1)

    def h_raw(rows):  # h before the projection, as the forward computed it
        return o[rows] * c[rows].tanh()

    # Every step's h_{t-1} (from y) and c_{t-1} (from the workspace), or the
    # initial state where a sequence starts.
    h_prev, c_prev = [], []
    h_state, c_state = h0, c0.to(acc)
    for row0, bs in schedule:
        rows = slice(row0, row0 + bs)
        h_prev.append(h_state[:bs])
        c_prev.append(c_state[:bs])
        h_state, c_state = _update(h_state, y[rows]), _update(c_state, c[rows])

    dh_state, dc_state = grad_h_n.to(acc), grad_c_n.to(acc)
    grad_w_hh = w.new_zeros(w.shape)
    grad_w_hr = None if w_r is None else w_r.new_zeros(w_r.shape)
    d_pre = []
    for s, (row0, bs) in reversed(list(enumerate(schedule))):
        rows = slice(row0, row0 + bs)
        dh = grad_y[rows].to(acc) + dh_state[:bs]
        if w_r is not None:
            grad_w_hr = grad_w_hr + dh.t() @ h_raw(rows)
            dh = dh @ w_r
        tanh_c = c[rows].tanh()
        d_o = dh * tanh_c
        dc = dc_state[:bs] + dh * o[rows] * (1 - tanh_c * tanh_c)
        d_i, d_f, d_g = dc * g[rows], dc * c_prev[s], dc * i[rows]
        pre = torch.cat([d_i * i[rows] * (1 - i[rows]), d_f * f[rows] * (1 - f[rows]),
                         d_g * (1 - g[rows] * g[rows]), d_o * o[rows] * (1 - o[rows])], 1)
        d_pre.insert(0, pre)
        grad_w_hh = grad_w_hh + pre.t() @ h_prev[s].to(acc)
        dh_state, dc_state = _update(dh_state, pre @ w), _update(dc_state, dc * f[rows])

    grad_x = _in_row_order(d_pre, reverse, grad_y.new_empty((0, 4 * hidden), dtype=acc))
    grad_x = grad_x.to(dtype)
    grad_w_hr = w_hh.new_empty((0,)) if w_r is None else grad_w_hr.to(w_hr.dtype)
    return (grad_x, grad_w_hh.to(w_hh.dtype), grad_w_hr, dh_state.to(h0.dtype),
            dc_state.to(c0.dtype))


# ----------------------------------------------------------------------- GRU
def gru_fwd(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training):
    dtype, acc = x_proj.dtype, _checks.acc_dtype(x_proj.dtype)
    n_rows, hidden = x_proj.size(0), h0.size(1)
    w = w_hh.to(acc)
    b = None if b_hh is None else b_hh.to(acc)
    h = h0
    ys, wss = [], []
    for row0, bs in steps(n_rows, h0.size(0), batch_sizes, reverse):
        h_prev = h[:bs].to(acc)
        hh = h_prev @ w.t()
        if b is not None:
            hh = hh + b
        x_r, x_z, x_n = x_proj[row0:row0 + bs].to(acc).chunk(3, 1)
        h_r, h_z, h_n = hh.chunk(3, 1)
        r, z = (x_r + h_r).sigmoid(), (x_z + h_z).sigmoid()
        n = (x_n + r * h_n).tanh()
        h_new = ((1 - z) * n + z * h_prev).to(dtype)
        ys.append(h_new)
        wss.append(torch.cat([r, z, n, h_n], 1))
        h = _update(h, h_new)
    y = _in_row_order(ys, reverse, x_proj.new_empty((0, hidden)))
    if training:  # saved in the input dtype, as the kernels save it
        ws = _in_row_order(wss, reverse, x_proj.new_empty((n_rows, 4 * hidden))).to(dtype)
    else:
        ws = x_proj.new_empty((0,))
    return y, (h if ys else h0.clone()), ws


def gru_bwd(grad_y, grad_h_n, w_hh, b_hh, h0, y, ws, batch_sizes, reverse):
    """The gradients of ``gru_fwd``'s inputs from those of ``y`` and ``h_n``,
    as the gru_bwd op computes them (h_{t-1} from ``y``)."""
    dtype, acc = grad_y.dtype, _checks.acc_dtype(grad_y.dtype)
    n_rows, hidden = grad_y.size(0), h0.size(1)
    schedule = steps(n_rows, h0.size(0), batch_sizes, reverse)
    w = w_hh.to(acc)
    r, z, n, hn = ws.to(acc).view(n_rows, 4, hidden).unbind(1)

    h_prev = []
    h_state = h0
    for row0, bs in schedule:
        h_prev.append(h_state[:bs].to(acc))
        h_state = _update(h_state, y[row0:row0 + bs])

    dh_state = grad_h_n.to(acc)
    grad_w_hh = w.new_zeros(w.shape)
    grad_b_hh = w.new_zeros(3 * hidden)
    d_x = []
    for s, (row0, bs) in reversed(list(enumerate(schedule))):
        rows = slice(row0, row0 + bs)
        dh = grad_y[rows].to(acc) + dh_state[:bs]
        d_n, d_z = dh * (1 - z[rows]), dh * (h_prev[s] - n[rows])
        pre_n = d_n * (1 - n[rows] * n[rows])
        d_r, d_hn = pre_n * hn[rows], pre_n * r[rows]
        pre_r, pre_z = d_r * r[rows] * (1 - r[rows]), d_z * z[rows] * (1 - z[rows])
        d_x.insert(0, torch.cat([pre_r, pre_z, pre_n], 1))
        d_hh = torch.cat([pre_r, pre_z, d_hn], 1)
        grad_w_hh = grad_w_hh + d_hh.t() @ h_prev[s]
        grad_b_hh = grad_b_hh + d_hh.sum(0)
        dh_state = _update(dh_state, d_hh @ w + dh * z[rows])

    grad_x = _in_row_order(d_x, reverse, grad_y.new_empty((0, 3 * hidden), dtype=acc))
    grad_x = grad_x.to(dtype)
    grad_b_hh = w_hh.new_empty((0,)) if b_hh is None else grad_b_hh.to(b_hh.dtype)
    return grad_x, grad_w_hh.to(w_hh.dtype), grad_b_hh, dh_state.to(h0.dtype)


# ------------------------------------------------------------- bidirectional
# Both directions of a layer (lstm_bidir_fwd ...): each direction as above on
# its column block of x_proj, outputs side by side, states stacked.
def _directions(t, width):
    return t[:, :width], t[:, width:]


def _stack_workspace(wss, like, training):
    if training:
        return torch.stack(wss)
    return like.new_empty((0,))


def lstm_bidir_fwd(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, training):
    xs = _directions(x_proj, x_proj.size(1) // 2)
    outs = [lstm_fwd(xs[d], w, r, h0[d], c0[d], batch_sizes, d == 1, training)
            for d, (w, r) in enumerate(((w_hh, w_hr), (w_hh_rev, w_hr_rev)))]
    (y, h, c, ws), (y_r, h_r, c_r, ws_r) = outs
    return (torch.cat([y, y_r], 1), torch.stack([h, h_r]), torch.stack([c, c_r]),
            _stack_workspace([ws, ws_r], x_proj, training))


def lstm_bidir_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, y, ws,
                   batch_sizes):
    out = grad_y.size(1) // 2
    grads_y, ys = _directions(grad_y, out), _directions(y, out)
    (dx, dw, dwr, dh0, dc0), (dx_r, dw_r, dwr_r, dh0_r, dc0_r) = [
        lstm_bwd(grads_y[d], grad_h_n[d], grad_c_n[d], w, r, h0[d], c0[d], ys[d], ws[d],
                 batch_sizes, d == 1)
        for d, (w, r) in enumerate(((w_hh, w_hr), (w_hh_rev, w_hr_rev)))]
    return (torch.cat([dx, dx_r], 1), dw, dw_r, dwr, dwr_r, torch.stack([dh0, dh0_r]),
            torch.stack([dc0, dc0_r]))


def gru_bidir_fwd(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training):
    xs = _directions(x_proj, x_proj.size(1) // 2)
    (y, h, ws), (y_r, h_r, ws_r) = [
        gru_fwd(xs[d], w, b, h0[d], batch_sizes, d == 1, training)
        for d, (w, b) in enumerate(((w_hh, b_hh), (w_hh_rev, b_hh_rev)))]
    return (torch.cat([y, y_r], 1), torch.stack([h, h_r]),
            _stack_workspace([ws, ws_r], x_proj, training))


def gru_bidir_bwd(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, ws, batch_sizes):
    out = grad_y.size(1) // 2
    grads_y, ys = _directions(grad_y, out), _directions(y, out)
    (dx, dw, db, dh0), (dx_r, dw_r, db_r, dh0_r) = [
        gru_bwd(grads_y[d], grad_h_n[d], w, b, h0[d], ys[d], ws[d], batch_sizes, d == 1)
        for d, (w, b) in enumerate(((w_hh, b_hh), (w_hh_rev, b_hh_rev)))]
    return torch.cat([dx, dx_r], 1), dw, dw_r, db, db_r, torch.stack([dh0, dh0_r])


# --------------------------------------------------------------------- cells
def _project(x, w_ih, bias):
    return torch.nn.functional.linear(x, w_ih, bias)


def lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training):
    bias = None if b_ih is None else b_ih + b_hh
    h, _, c, ws = lstm_fwd(_project(x, w_ih, bias), w_hh, None, h0, c0, None, False, training)
    return h, c, ws


def lstm_cell_bwd(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, ws, bias):
    grad_pre, grad_w_hh, _, grad_h0, grad_c0 = lstm_bwd(
        grad_h, torch.zeros_like(grad_h), grad_c, w_hh, None, h0, c0, h, ws, None, False)
    grad_bias = grad_pre.sum(0) if bias else grad_pre.new_empty((0,))
    return grad_pre @ w_ih, grad_pre.t() @ x, grad_w_hh, grad_bias, grad_h0, grad_c0


def gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, training):
    h, _, ws = gru_fwd(_project(x, w_ih, b_ih), w_hh, b_hh, h0, None, False, training)
    return h, ws


def gru_cell_bwd(grad_h, x, w_ih, w_hh, b_hh, h0, h, ws):
    grad_pre, grad_w_hh, grad_b_hh, grad_h0 = gru_bwd(
        grad_h, torch.zeros_like(grad_h), w_hh, b_hh, h0, h, ws, None, False)
    grad_b_ih = grad_pre.sum(0) if b_hh is not None else grad_pre.new_empty((0,))
    return grad_pre @ w_ih, grad_pre.t() @ x, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0
