"""Fake (shape-only) kernels and autograd for the rnnfuse ops.

The ops themselves are declared in csrc/ops.cpp and implemented per backend;
importing rnnfuse._C registers them. The backward of each forward op is
another op (lstm_bwd, gru_bwd), so torch.compile and opcheck see through it.
"""
import torch

from . import _C  # noqa: F401  (registers torch.ops.rnnfuse.*)


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _workspace(x_proj, width, training):
    shape = (x_proj.shape[0], width) if training else (0,)
    return x_proj.new_empty(shape, dtype=_acc_dtype(x_proj.dtype))


# ----------------------------------------------------------------- fake kernels
@torch.library.register_fake("rnnfuse::lstm_fwd")
def _lstm_fwd_fake(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training):
    y = x_proj.new_empty((x_proj.shape[0], h0.shape[1]))
    ws = _workspace(x_proj, 5 * c0.shape[1], training)
    return y, torch.empty_like(h0), torch.empty_like(c0), ws


@torch.library.register_fake("rnnfuse::lstm_bwd")
def _lstm_bwd_fake(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes,
                   reverse):
    grad_x = grad_y.new_empty((grad_y.shape[0], w_hh.shape[0]))
    grad_w_hr = torch.empty_like(w_hr) if w_hr is not None else w_hh.new_empty((0,))
    return grad_x, torch.empty_like(w_hh), grad_w_hr, torch.empty_like(h0), torch.empty_like(c0)


@torch.library.register_fake("rnnfuse::gru_fwd")
def _gru_fwd_fake(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training):
    y = x_proj.new_empty((x_proj.shape[0], h0.shape[1]))
    return y, torch.empty_like(h0), _workspace(x_proj, 4 * h0.shape[1], training)


@torch.library.register_fake("rnnfuse::gru_bwd")
def _gru_bwd_fake(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse):
    grad_x = grad_y.new_empty((grad_y.shape[0], w_hh.shape[0]))
    grad_b_hh = torch.empty_like(b_hh) if b_hh is not None else w_hh.new_empty((0,))
    return grad_x, torch.empty_like(w_hh), grad_b_hh, torch.empty_like(h0)


@torch.library.register_fake("rnnfuse::mm")
def _mm_fake(a, b):
    return a.new_empty((a.shape[0], b.shape[1]))


@torch.library.register_fake("rnnfuse::linear")
def _linear_fake(x, w, b):
    return x.new_empty((x.shape[0], w.shape[0]))


# ---------------------------------------------------------------------- autograd
def _or_zeros(grad, like):
    return torch.zeros_like(like) if grad is None else grad


def _check_saved(ctx, name):
    if not ctx.training:
        raise RuntimeError(
            f"rnnfuse.{name}: the forward ran with training=False and saved nothing for the "
            "backward; call it with training=True when gradients are needed")


def _save(ctx, *tensors):
    # Optional arguments (w_hr, b_hh, batch_sizes) may be None; some torch
    # versions' AOTAutograd reject None among saved tensors, so save only the
    # tensors and remember where the Nones were.
    ctx.saved_mask = [t is not None for t in tensors]
    ctx.save_for_backward(*[t for t in tensors if t is not None])


def _saved(ctx):
    saved = iter(ctx.saved_tensors)
    return [next(saved) if present else None for present in ctx.saved_mask]


def _lstm_setup_context(ctx, inputs, output):
    x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training = inputs
    y, _, _, workspace = output
    # Gradients of unused outputs arrive as None (_or_zeros fills the small
    # ones); materialized, the workspace's alone is an N x 5H zero fill.
    ctx.set_materialize_grads(False)
    ctx.reverse = reverse
    ctx.training = training
    ctx.has_w_hr = w_hr is not None
    _save(ctx, w_hh, w_hr, h0, c0, y, workspace, batch_sizes)


def _lstm_backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_workspace):
    _check_saved(ctx, "lstm_fwd")
    w_hh, w_hr, h0, c0, y, workspace, batch_sizes = _saved(ctx)
    grad_x, grad_w_hh, grad_w_hr, grad_h0, grad_c0 = torch.ops.rnnfuse.lstm_bwd(
        _or_zeros(grad_y, y), _or_zeros(grad_h_n, h0), _or_zeros(grad_c_n, c0), w_hh, w_hr,
        h0, c0, y, workspace, batch_sizes, ctx.reverse)
    return (grad_x, grad_w_hh, grad_w_hr if ctx.has_w_hr else None, grad_h0, grad_c0,
            None, None, None)


def _gru_setup_context(ctx, inputs, output):
    x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training = inputs
    y, _, workspace = output
    ctx.set_materialize_grads(False)  # as for the LSTM
    ctx.reverse = reverse
    ctx.training = training
    ctx.has_b_hh = b_hh is not None
    _save(ctx, w_hh, b_hh, h0, y, workspace, batch_sizes)


def _gru_backward(ctx, grad_y, grad_h_n, _grad_workspace):
    _check_saved(ctx, "gru_fwd")
    w_hh, b_hh, h0, y, workspace, batch_sizes = _saved(ctx)
    grad_x, grad_w_hh, grad_b_hh, grad_h0 = torch.ops.rnnfuse.gru_bwd(
        _or_zeros(grad_y, y), _or_zeros(grad_h_n, h0), w_hh, b_hh, h0, y, workspace,
        batch_sizes, ctx.reverse)
    return (grad_x, grad_w_hh, grad_b_hh if ctx.has_b_hh else None, grad_h0, None, None, None)


def _linear_setup_context(ctx, inputs, output):
    x, w, b = inputs
    ctx.has_b = b is not None
    # dx needs w, dw needs x.
    _save(ctx, w if ctx.needs_input_grad[0] else None, x if ctx.needs_input_grad[1] else None)


def _linear_backward(ctx, grad):
    w, x = _saved(ctx)
    # rnnfuse::mm: the CPU kernels' GEMM where it takes the shapes, else at::mm.
    dx = torch.ops.rnnfuse.mm(grad, w) if ctx.needs_input_grad[0] else None
    dw = torch.ops.rnnfuse.mm(grad.t(), x) if ctx.needs_input_grad[1] else None
    db = grad.sum(0) if ctx.has_b and ctx.needs_input_grad[2] else None
    return dx, dw, db


torch.library.register_autograd("rnnfuse::linear", _linear_backward,
                                setup_context=_linear_setup_context)
torch.library.register_autograd("rnnfuse::lstm_fwd", _lstm_backward,
                                setup_context=_lstm_setup_context)
torch.library.register_autograd("rnnfuse::gru_fwd", _gru_backward,
                                setup_context=_gru_setup_context)
