"""Argument checks of the ops, for the paths that do not reach the C++
kernels: the fake (shape-only) kernels that torch.compile and the meta device
run, and the differentiable composite path. The C++ drivers
(csrc/driver_*.cpp) check the same things with the same messages, so an op
rejects a bad call the same way whichever path takes it.

Each returns the dimensions the op's outputs are built from.
"""
from __future__ import annotations

import torch

_DTYPE_NAMES = {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half",
                torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int"}


def _name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype, str(dtype))


def _fail(message: str):
    raise RuntimeError(f"rnnfuse: {message}")


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _operand(t, name: str, dim: int, like: torch.Tensor, like_name: str, dtype=None):
    if t is None:
        _fail(f"{name} is undefined")
    if t.dim() != dim:
        _fail(f"{name} must be {dim}-D, got {t.dim()}-D")
    want = like.dtype if dtype is None else dtype
    if t.dtype != want:
        _fail(f"{name} has dtype {_name(t.dtype)} but {like_name} has {_name(want)}"
              if dtype is None else f"{name} must have dtype {_name(want)}, got {_name(t.dtype)}")
    if t.device != like.device:
        _fail(f"{name} is on {t.device} but {like_name} is on {like.device}")


def _shape(t: torch.Tensor, name: str, expected):
    if tuple(t.shape) != tuple(expected):
        _fail(f"{name} must have shape {list(expected)}, got {list(t.shape)}")


def _lead(t: torch.Tensor, name: str, gates: int, op: str):
    if not t.is_floating_point():
        raise RuntimeError(f"rnnfuse.{op}: expected a floating-point {name}, got {_name(t.dtype)}")
    if t.dim() != 2:
        raise RuntimeError(f"rnnfuse.{op}: {name} must be 2-D (rows, {gates}*hidden), "
                           f"got {t.dim()}-D")


def _batch_sizes(batch_sizes):
    if batch_sizes is not None and (batch_sizes.device.type != "cpu"
                                    or batch_sizes.dtype != torch.int64
                                    or batch_sizes.dim() != 1):
        _fail("batch_sizes must be a 1-D int64 CPU tensor (as in a PackedSequence), got "
              f"{_name(batch_sizes.dtype)} on {batch_sizes.device} with "
              f"{batch_sizes.dim()} dims")


def step_sizes(n_rows: int, batch: int, batch_sizes) -> list[int]:
    """Active rows of every step in time order, after csrc/schedule.cpp's
    checks of ``batch_sizes`` (positive, non-increasing, ``batch_sizes[0]``
    equal to the batch, summing to ``n_rows``)."""
    _batch_sizes(batch_sizes)
    if batch_sizes is None:
        if not n_rows:
            return []
        if batch <= 0 or n_rows % batch:
            _fail(f"x_proj has {n_rows} rows, not a multiple of the batch size {batch}")
        return [batch] * (n_rows // batch)
    sizes = [int(b) for b in batch_sizes.tolist()]
    for t, size in enumerate(sizes):
        if size <= 0:
            _fail(f"batch_sizes must be positive, got {size} at step {t}")
        if t and size > sizes[t - 1]:
            _fail("batch_sizes must be non-increasing (sequences sorted by length)")
    if sum(sizes) != n_rows:
        _fail(f"batch_sizes sum to {sum(sizes)} but x_proj has {n_rows} rows")
    if sizes and sizes[0] != batch:
        _fail(f"batch_sizes[0] is {sizes[0]} but the initial state has batch {batch}")
    return sizes


def schedule_if_known(n_rows, batch, batch_sizes):
    """step_sizes' checks where the values can be read: not under
    torch.compile's fake tensors (the kernels check them when they run)."""
    if batch_sizes is None or not is_fake(batch_sizes):
        step_sizes(n_rows, batch, batch_sizes)


def is_fake(t: torch.Tensor) -> bool:
    from torch._subclasses.fake_tensor import is_fake as _is_fake
    return _is_fake(t)


def lstm_fwd(x_proj, w_hh, w_hr, h0, c0, batch_sizes):
    """(rows N, batch B, hidden H, output size P)."""
    _lead(x_proj, "x_proj", 4, "lstm")
    _operand(c0, "c0", 2, x_proj, "x_proj")
    rows, batch, hidden = x_proj.size(0), c0.size(0), c0.size(1)
    _shape(x_proj, "x_proj", (rows, 4 * hidden))
    out = hidden
    if w_hr is not None:
        _operand(w_hr, "w_hr", 2, x_proj, "x_proj")
        out = w_hr.size(0)
        _shape(w_hr, "w_hr", (out, hidden))
    _operand(w_hh, "w_hh", 2, x_proj, "x_proj")
    _shape(w_hh, "w_hh", (4 * hidden, out))
    _operand(h0, "h0", 2, x_proj, "x_proj")
    _shape(h0, "h0", (batch, out))
    _batch_sizes(batch_sizes)
    return rows, batch, hidden, out


def lstm_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes):
    if grad_y.dim() != 2:
        raise RuntimeError(f"rnnfuse.lstm_bwd: grad_y must be 2-D, got {grad_y.dim()}-D")
    like = grad_y.new_empty((1,)).expand(grad_y.size(0), w_hh.size(0) if w_hh.dim() else 0)
    rows, batch, hidden, out = lstm_fwd(like, w_hh, w_hr, h0, c0, batch_sizes)
    for t, name, shape in ((grad_y, "grad_y", (rows, out)), (y, "y", (rows, out)),
                           (grad_h_n, "grad_h_n", (batch, out)),
                           (grad_c_n, "grad_c_n", (batch, hidden))):
        _operand(t, name, 2, grad_y, "grad_y")
        _shape(t, name, shape)
    _workspace(workspace, grad_y, (rows, 5 * hidden), "lstm")
    return rows, batch, hidden, out


def gru_fwd(x_proj, w_hh, b_hh, h0, batch_sizes):
    """(rows N, batch B, hidden H)."""
    _lead(x_proj, "x_proj", 3, "gru")
    _operand(h0, "h0", 2, x_proj, "x_proj")
    rows, batch, hidden = x_proj.size(0), h0.size(0), h0.size(1)
    _shape(x_proj, "x_proj", (rows, 3 * hidden))
    _operand(w_hh, "w_hh", 2, x_proj, "x_proj")
    _shape(w_hh, "w_hh", (3 * hidden, hidden))
    if b_hh is not None:
        _operand(b_hh, "b_hh", 1, x_proj, "x_proj")
        _shape(b_hh, "b_hh", (3 * hidden,))
    _batch_sizes(batch_sizes)
    return rows, batch, hidden


def gru_bwd(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes):
    if grad_y.dim() != 2:
        raise RuntimeError(f"rnnfuse.gru_bwd: grad_y must be 2-D, got {grad_y.dim()}-D")
    like = grad_y.new_empty((1,)).expand(grad_y.size(0), w_hh.size(0) if w_hh.dim() else 0)
    rows, batch, hidden = gru_fwd(like, w_hh, b_hh, h0, batch_sizes)
    for t, name, shape in ((grad_y, "grad_y", (rows, hidden)), (y, "y", (rows, hidden)),
                           (grad_h_n, "grad_h_n", (batch, hidden))):
        _operand(t, name, 2, grad_y, "grad_y")
        _shape(t, name, shape)
    _workspace(workspace, grad_y, (rows, 4 * hidden), "gru")
    return rows, batch, hidden


def _per_direction(op, *named_states):
    for name, t, what in named_states:
        if t.dim() != 3 or t.size(0) != 2:
            raise RuntimeError(f"rnnfuse.{op}: {name} must be (2, batch, {what}), one state per "
                               f"direction, got shape {list(t.shape)}")


def _bidir_rows(op, name, t):
    if t.dim() != 2:
        raise RuntimeError(f"rnnfuse.{op}: {name} must be 2-D, got {t.dim()}-D")


def lstm_bidir_fwd(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes):
    """(rows N, batch B, hidden H, output size P) of each direction."""
    _bidir_rows("lstm_bidir_fwd", "x_proj", x_proj)
    _per_direction("lstm_bidir_fwd", ("h0", h0, "out"), ("c0", c0, "hidden"))
    hidden = c0.size(2)
    _shape(x_proj, "x_proj", (x_proj.size(0), 8 * hidden))
    dims = [lstm_fwd(x_proj[:, 4 * hidden * d:4 * hidden * (d + 1)], w, r, h0[d], c0[d],
                     batch_sizes)
            for d, (w, r) in enumerate(((w_hh, w_hr), (w_hh_rev, w_hr_rev)))]
    if dims[0][3] != dims[1][3]:
        _fail(f"lstm_bidir_fwd: both directions must have one output size, got {dims[0][3]} "
              f"and {dims[1][3]}")
    return dims[0]


def lstm_bidir_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, y,
                   workspace, batch_sizes):
    op = "lstm_bidir_bwd"
    _bidir_rows(op, "grad_y", grad_y)
    _per_direction(op, ("h0", h0, "out"), ("c0", c0, "hidden"))
    if grad_y.size(1) % 2 or y.dim() != 2 or y.shape != grad_y.shape:
        raise RuntimeError(f"rnnfuse.{op}: grad_y and y must be (rows, 2 * out), got "
                           f"{list(grad_y.shape)} and {list(y.shape)}")
    if grad_h_n.dim() != 3 or grad_h_n.size(0) != 2 or grad_c_n.dim() != 3 or grad_c_n.size(0) != 2:
        raise RuntimeError(f"rnnfuse.{op}: grad_h_n and grad_c_n must hold one state per "
                           f"direction, got shapes {list(grad_h_n.shape)} and "
                           f"{list(grad_c_n.shape)}")
    _bidir_workspace(op, workspace)
    out = grad_y.size(1) // 2
    dims = [lstm_bwd(grad_y[:, out * d:out * (d + 1)], grad_h_n[d], grad_c_n[d], w, r, h0[d],
                     c0[d], y[:, out * d:out * (d + 1)], workspace[d], batch_sizes)
            for d, (w, r) in enumerate(((w_hh, w_hr), (w_hh_rev, w_hr_rev)))]
    return dims[0]


def gru_bidir_fwd(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes):
    """(rows N, batch B, hidden H) of each direction."""
    _bidir_rows("gru_bidir_fwd", "x_proj", x_proj)
    _per_direction("gru_bidir_fwd", ("h0", h0, "hidden"))
    hidden = h0.size(2)
    _shape(x_proj, "x_proj", (x_proj.size(0), 6 * hidden))
    dims = [gru_fwd(x_proj[:, 3 * hidden * d:3 * hidden * (d + 1)], w, b, h0[d], batch_sizes)
            for d, (w, b) in enumerate(((w_hh, b_hh), (w_hh_rev, b_hh_rev)))]
    return dims[0]


def gru_bidir_bwd(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                  batch_sizes):
    op = "gru_bidir_bwd"
    _bidir_rows(op, "grad_y", grad_y)
    _per_direction(op, ("h0", h0, "hidden"))
    hidden = h0.size(2)
    if grad_y.size(1) != 2 * hidden or y.dim() != 2 or y.shape != grad_y.shape:
        raise RuntimeError(f"rnnfuse.{op}: grad_y and y must be (rows, 2 * hidden), got "
                           f"{list(grad_y.shape)} and {list(y.shape)}")
    if grad_h_n.dim() != 3 or grad_h_n.size(0) != 2:
        raise RuntimeError(f"rnnfuse.{op}: grad_h_n must hold one state per direction, got "
                           f"shape {list(grad_h_n.shape)}")
    _bidir_workspace(op, workspace)
    dims = [gru_bwd(grad_y[:, hidden * d:hidden * (d + 1)], grad_h_n[d], w, b, h0[d],
                    y[:, hidden * d:hidden * (d + 1)], workspace[d], batch_sizes)
            for d, (w, b) in enumerate(((w_hh, b_hh), (w_hh_rev, b_hh_rev)))]
    return dims[0]


def _bidir_workspace(op, workspace):
    if workspace.dim() != 3 or workspace.size(0) != 2:
        raise RuntimeError(f"rnnfuse.{op}: workspace does not match; run "
                           f"{op.replace('_bwd', '_fwd')} with training=True")


def _workspace(workspace, grad_y, shape, cell):
    # Saved in the input dtype (the forward rounds the activations it saves).
    if workspace.dtype != grad_y.dtype or tuple(workspace.shape) != tuple(shape):
        raise RuntimeError(f"rnnfuse.{cell}_bwd: workspace does not match; run {cell}_fwd "
                           "with training=True")
    if workspace.device != grad_y.device:
        _fail(f"workspace is on {workspace.device} but grad_y is on {grad_y.device}")


# ---------------------------------------------------------------------- cells
def _cell_inputs(cell, gates, x, w_ih, h0, b_ih, b_hh):
    if not x.is_floating_point():
        raise RuntimeError(f"rnnfuse.{cell}: expected a floating-point x, got {_name(x.dtype)}")
    if x.dim() != 2:
        raise RuntimeError(f"rnnfuse.{cell}: x must be 2-D (batch, input_size), got {x.dim()}-D")
    _operand(h0, "h0", 2, x, "x")
    _operand(w_ih, "w_ih", 2, x, "x")
    _shape(w_ih, "w_ih", (gates * h0.size(1), x.size(1)))
    _shape(x, "x", (h0.size(0), x.size(1)))
    if (b_ih is None) != (b_hh is None):
        raise RuntimeError(f"rnnfuse.{cell}: b_ih and b_hh must both be given or both be None")
    for b, name in ((b_ih, "b_ih"), (b_hh, "b_hh")):
        if b is not None:
            _operand(b, name, 1, x, "x")
            _shape(b, name, (gates * h0.size(1),))


def lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0):
    """(batch B, hidden H); the step's own checks are lstm_fwd's."""
    _cell_inputs("lstm_cell", 4, x, w_ih, h0, b_ih, b_hh)
    like = x.new_empty((1,)).expand(x.size(0), w_ih.size(0))
    _, batch, hidden, _ = lstm_fwd(like, w_hh, None, h0, c0, None)
    return batch, hidden


def lstm_cell_bwd(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace):
    _operand(x, "x", 2, grad_h, "grad_h")
    _operand(w_ih, "w_ih", 2, grad_h, "grad_h")
    _shape(w_ih, "w_ih", (w_hh.size(0), x.size(1)))
    return lstm_bwd(grad_h, grad_h, grad_c, w_hh, None, h0, c0, h, workspace, None)


def gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0):
    _cell_inputs("gru_cell", 3, x, w_ih, h0, b_ih, b_hh)
    like = x.new_empty((1,)).expand(x.size(0), w_ih.size(0))
    _, batch, hidden = gru_fwd(like, w_hh, b_hh, h0, None)
    return batch, hidden


def gru_cell_bwd(grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace):
    _operand(x, "x", 2, grad_h, "grad_h")
    _operand(w_ih, "w_ih", 2, grad_h, "grad_h")
    _shape(w_ih, "w_ih", (w_hh.size(0), x.size(1)))
    return gru_bwd(grad_h, grad_h, w_hh, b_hh, h0, h, workspace, None)


# ------------------------------------------------- the CPU input projection
def linear(x, w, b):
    """csrc/cpu/linear_cpu.cpp's checks of rnnfuse::linear."""
    if x.dim() != 2 or w.dim() != 2:
        raise RuntimeError(f"rnnfuse.linear: x and w must be 2-D, got {x.dim()}-D and "
                           f"{w.dim()}-D")
    if x.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"rnnfuse.linear: takes float32 or float64, got {_name(x.dtype)}")
    if w.dtype != x.dtype:
        raise RuntimeError(f"rnnfuse.linear: w has dtype {_name(w.dtype)} but x has "
                           f"{_name(x.dtype)}")
    if w.size(1) != x.size(1):
        raise RuntimeError(f"rnnfuse.linear: x is {list(x.shape)} but w is {list(w.shape)}")
    if b is not None and (b.dtype != x.dtype or b.dim() != 1 or b.size(0) != w.size(0)):
        raise RuntimeError(f"rnnfuse.linear: b must be a 1-D {_name(x.dtype)} tensor of size "
                           f"{w.size(0)}, got {_name(b.dtype)} {list(b.shape)}")
    for t, name in ((w, "w"), (b, "b")):
        if t is not None and t.device != x.device:
            _fail(f"{name} is on {t.device} but x is on {x.device}")


def mm(a, b):
    """csrc/cpu/gemm_cpu.cpp's checks of rnnfuse::mm."""
    if a.dim() != 2 or b.dim() != 2 or a.size(1) != b.size(0):
        raise RuntimeError("rnnfuse.mm: expected 2-D tensors with a.size(1) == b.size(0), got "
                           f"{list(a.shape)} and {list(b.shape)}")
    if b.dtype != a.dtype:
        _fail(f"b has dtype {_name(b.dtype)} but a has {_name(a.dtype)}")
    if b.device != a.device:
        _fail(f"b is on {b.device} but a is on {a.device}")
