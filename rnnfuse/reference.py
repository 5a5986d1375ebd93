"""Pure-PyTorch reference of the per-layer recurrences, written for clarity.

These functions define the semantics of the ``rnnfuse`` ops (same arguments,
same results) and are what the tests compare against, usually in float64.
They are differentiable through ordinary autograd, so they also give reference
gradients.

Layout shared with the ops (see csrc/schedule.h):
  * ``x_proj`` is 2-D ``(N, G*H)``: the input projection ``x @ W_ih^T + b``
    of every active (timestep, sequence) pair, time-major. Without
    ``batch_sizes`` every step has all ``B = h0.size(0)`` sequences, so
    ``N = T * B``; with ``batch_sizes`` (a PackedSequence's, on the CPU) step
    ``t`` holds the first ``batch_sizes[t]`` sequences.
  * ``reverse`` walks time from the end; with packed input each sequence then
    starts at its own last step, from ``h0``.
  * LSTM: ``x_proj`` includes both biases. GRU: ``x_proj`` includes ``b_ih``
    only, ``b_hh`` is passed separately because the n gate scales it by r.
"""
from __future__ import annotations

import torch


def step_sizes(n_rows: int, batch: int, batch_sizes: torch.Tensor | None) -> list[int]:
    """Active batch per timestep, in time order."""
    if batch_sizes is None:
        if batch == 0:
            return []
        return [batch] * (n_rows // batch)
    return [int(b) for b in batch_sizes.tolist()]


def _steps(n_rows, batch, batch_sizes, reverse):
    sizes = step_sizes(n_rows, batch, batch_sizes)
    offsets = [0]
    for b in sizes[:-1]:
        offsets.append(offsets[-1] + b)
    order = range(len(sizes) - 1, -1, -1) if reverse else range(len(sizes))
    return [(offsets[t], sizes[t]) for t in order]


def lstm_layer(x_proj, w_hh, w_hr, h0, c0, batch_sizes=None, reverse=False):
    """One LSTM layer, one direction. Returns ``(y, h_n, c_n)``.

    ``w_hh``: (4H, P); ``w_hr``: (P, H) or None (then P = H); ``h0``: (B, P);
    ``c0``: (B, H); ``y``: (N, P). Gate order i, f, g, o as in torch.nn.
    """
    hidden = c0.size(1)
    batch = h0.size(0)
    h_state = list(h0.unbind(0)) if batch else []
    c_state = list(c0.unbind(0)) if batch else []
    rows = [None] * x_proj.size(0)
    for row0, bs in _steps(x_proj.size(0), batch, batch_sizes, reverse):
        h_prev = torch.stack(h_state[:bs])
        c_prev = torch.stack(c_state[:bs])
        gates = x_proj[row0:row0 + bs] + h_prev @ w_hh.t()
        i, f, g, o = gates.split(hidden, dim=1)
        c = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        if w_hr is not None:
            h = h @ w_hr.t()
        for b in range(bs):
            h_state[b] = h[b]
            c_state[b] = c[b]
            rows[row0 + b] = h[b]
    out_size = h0.size(1)
    y = torch.stack(rows) if rows else x_proj.new_zeros(0, out_size)
    h_n = torch.stack(h_state) if batch else h0.clone()
    c_n = torch.stack(c_state) if batch else c0.clone()
    return y, h_n, c_n


def gru_layer(x_proj, w_hh, b_hh, h0, batch_sizes=None, reverse=False):
    """One GRU layer, one direction. Returns ``(y, h_n)``.

    ``w_hh``: (3H, H); ``b_hh``: (3H,) or None; gate order r, z, n, with
    ``n = tanh(x_n + r * (W_hn h + b_hn))`` and ``h' = (1 - z) * n + z * h``.
    """
    hidden = h0.size(1)
    batch = h0.size(0)
    h_state = list(h0.unbind(0)) if batch else []
    rows = [None] * x_proj.size(0)
    for row0, bs in _steps(x_proj.size(0), batch, batch_sizes, reverse):
        h_prev = torch.stack(h_state[:bs])
        hh = h_prev @ w_hh.t()
        if b_hh is not None:
            hh = hh + b_hh
        x_r, x_z, x_n = x_proj[row0:row0 + bs].split(hidden, dim=1)
        h_r, h_z, h_n = hh.split(hidden, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        h = (1 - z) * n + z * h_prev
        for b in range(bs):
            h_state[b] = h[b]
            rows[row0 + b] = h[b]
    y = torch.stack(rows) if rows else x_proj.new_zeros(0, hidden)
    h_n = torch.stack(h_state) if batch else h0.clone()
    return y, h_n
