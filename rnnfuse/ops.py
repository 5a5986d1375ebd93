"""Fake (shape-only) kernels and autograd for the rnnfuse ops.

The ops themselves are declared in csrc/ops.cpp and implemented per backend;
importing rnnfuse._C registers them. Autograd is registered here, at the
dispatcher's Autograd key, as one kernel per op that picks a path:

* ordinary training: the fused kernels, the backward of each forward op being
  another op (lstm_bwd, gru_bwd), so torch.compile and opcheck see through it;
* forward-mode AD (torch.autograd.forward_ad, torch.func.jvp / jacfwd) and
  torch.func's grad transforms (grad, jacrev, hessian, ...): the forward runs
  as the differentiable composite of rnnfuse/_composite.py;
* a backward that must itself be differentiable (create_graph=True): on the
  CPU the layer is recomputed as that composite from the saved inputs and
  differentiated with create_graph, so gradients of any order are exact, as
  with torch.nn's CPU path. On CUDA the first-order gradients come from the
  kernels and differentiating them again raises, as with torch.nn's cuDNN
  path (saving x_proj for a recompute would cost GPU memory every call).

torch.library.register_autograd would cover only the first: its generated
autograd.Function has no forward-mode rule (torch.func.jvp then returns zero
tangents) and cannot run under torch.func's transforms.

Eager calls from rnnfuse.functional take the first path without the
dispatcher's hop into these kernels (record_forward), and outside torch.func
the Functions run in the older ctx-forward style (_eager): both only save
per-call Python cost, which a cell call (one step) feels.
"""
import torch
import torch.autograd.forward_ad as fwAD

from . import _C  # noqa: F401  (registers torch.ops.rnnfuse.*)
from . import _checks, _composite

OPS = torch.ops.rnnfuse


# ----------------------------------------------------------------- fake kernels
# Outputs are contiguous, as the kernels return them; the checks are the
# kernels' own, so a bad call fails the same way under torch.compile and on
# the meta device (where the fake kernel is all that runs).
def _workspace(x_proj, width, training):
    shape = (x_proj.shape[0], width) if training else (0,)
    return x_proj.new_empty(shape)  # in the input dtype, as the kernels save it


@torch.library.register_fake("rnnfuse::lstm_fwd")
def _lstm_fwd_fake(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training):
    rows, batch, hidden, out = _checks.lstm_fwd(x_proj, w_hh, w_hr, h0, c0, batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    return (x_proj.new_empty((rows, out)), x_proj.new_empty((batch, out)),
            x_proj.new_empty((batch, hidden)), _workspace(x_proj, 5 * hidden, training))


@torch.library.register_fake("rnnfuse::lstm_bwd")
def _lstm_bwd_fake(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes,
                   reverse):
    rows, batch, hidden, out = _checks.lstm_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0,
                                                y, workspace, batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    grad_w_hr = grad_y.new_empty((out, hidden) if w_hr is not None else (0,))
    return (grad_y.new_empty((rows, 4 * hidden)), grad_y.new_empty((4 * hidden, out)),
            grad_w_hr, grad_y.new_empty((batch, out)), grad_y.new_empty((batch, hidden)))


@torch.library.register_fake("rnnfuse::gru_fwd")
def _gru_fwd_fake(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training):
    rows, batch, hidden = _checks.gru_fwd(x_proj, w_hh, b_hh, h0, batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    return (x_proj.new_empty((rows, hidden)), x_proj.new_empty((batch, hidden)),
            _workspace(x_proj, 4 * hidden, training))


@torch.library.register_fake("rnnfuse::gru_bwd")
def _gru_bwd_fake(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse):
    rows, batch, hidden = _checks.gru_bwd(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace,
                                          batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    grad_b_hh = grad_y.new_empty((3 * hidden,) if b_hh is not None else (0,))
    return (grad_y.new_empty((rows, 3 * hidden)), grad_y.new_empty((3 * hidden, hidden)),
            grad_b_hh, grad_y.new_empty((batch, hidden)))


def _bidir_workspace(x_proj, rows, width, training):
    shape = (2, rows, width) if training else (0,)
    return x_proj.new_empty(shape)


@torch.library.register_fake("rnnfuse::lstm_bidir_fwd")
def _lstm_bidir_fwd_fake(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, training):
    rows, batch, hidden, out = _checks.lstm_bidir_fwd(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0,
                                                      c0, batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    return (x_proj.new_empty((rows, 2 * out)), x_proj.new_empty((2, batch, out)),
            x_proj.new_empty((2, batch, hidden)),
            _bidir_workspace(x_proj, rows, 5 * hidden, training))


@torch.library.register_fake("rnnfuse::lstm_bidir_bwd")
def _lstm_bidir_bwd_fake(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, y,
                         workspace, batch_sizes):
    rows, batch, hidden, out = _checks.lstm_bidir_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev,
                                                      w_hr, w_hr_rev, h0, c0, y, workspace,
                                                      batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    new = grad_y.new_empty
    return (new((rows, 8 * hidden)), new((4 * hidden, out)), new((4 * hidden, out)),
            new((out, hidden) if w_hr is not None else (0,)),
            new((out, hidden) if w_hr_rev is not None else (0,)), new((2, batch, out)),
            new((2, batch, hidden)))


@torch.library.register_fake("rnnfuse::gru_bidir_fwd")
def _gru_bidir_fwd_fake(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training):
    rows, batch, hidden = _checks.gru_bidir_fwd(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0,
                                                batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    return (x_proj.new_empty((rows, 2 * hidden)), x_proj.new_empty((2, batch, hidden)),
            _bidir_workspace(x_proj, rows, 4 * hidden, training))


@torch.library.register_fake("rnnfuse::gru_bidir_bwd")
def _gru_bidir_bwd_fake(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                        batch_sizes):
    rows, batch, hidden = _checks.gru_bidir_bwd(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev,
                                                h0, y, workspace, batch_sizes)
    _checks.schedule_if_known(rows, batch, batch_sizes)
    new = grad_y.new_empty
    return (new((rows, 6 * hidden)), new((3 * hidden, hidden)), new((3 * hidden, hidden)),
            new((3 * hidden,) if b_hh is not None else (0,)),
            new((3 * hidden,) if b_hh_rev is not None else (0,)), new((2, batch, hidden)))


@torch.library.register_fake("rnnfuse::lstm_cell_fwd")
def _lstm_cell_fwd_fake(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training):
    batch, hidden = _checks.lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    return (x.new_empty((batch, hidden)), x.new_empty((batch, hidden)),
            _workspace(h0, 5 * hidden, training))


@torch.library.register_fake("rnnfuse::lstm_cell_bwd")
def _lstm_cell_bwd_fake(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace, bias):
    _, batch, hidden, _ = _checks.lstm_cell_bwd(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h,
                                                workspace)
    new = grad_h.new_empty
    return (new(x.shape), new(w_ih.shape), new(w_hh.shape), new((4 * hidden,) if bias else (0,)),
            new((batch, hidden)), new((batch, hidden)))


@torch.library.register_fake("rnnfuse::gru_cell_fwd")
def _gru_cell_fwd_fake(x, w_ih, w_hh, b_ih, b_hh, h0, training):
    batch, hidden = _checks.gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0)
    return x.new_empty((batch, hidden)), _workspace(h0, 4 * hidden, training)


@torch.library.register_fake("rnnfuse::gru_cell_bwd")
def _gru_cell_bwd_fake(grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace):
    _, batch, hidden = _checks.gru_cell_bwd(grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace)
    new = grad_h.new_empty
    bias = (3 * hidden,) if b_hh is not None else (0,)
    return (new(x.shape), new(w_ih.shape), new(w_hh.shape), new(bias), new(bias),
            new((batch, hidden)))


@torch.library.register_fake("rnnfuse::linear")
def _linear_fake(x, w, b):
    _checks.linear(x, w, b)
    return x.new_empty((x.shape[0], w.shape[0]))


@torch.library.register_fake("rnnfuse::mm")
def _mm_fake(a, b):
    _checks.mm(a, b)
    return a.new_empty((a.shape[0], b.shape[1]))


# ------------------------------------------------------------ choosing a path
def _below_autograd(op, keyset, *args):
    """``op`` below autograd: a redispatch from an Autograd kernel (keyset),
    or with keyset None a call from outside the dispatcher (record_forward)."""
    with torch._C._AutoDispatchBelowAutograd():
        if keyset is None:
            return op(*args)
        return op.redispatch(keyset & torch._C._after_autograd_keyset, *args)


def _in_grad_or_jvp_transform() -> bool:
    if torch._C._functorch.peek_interpreter_stack() is None:
        return False
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters
    return any(i.key() in (TransformType.Grad, TransformType.Jvp)
               for i in retrieve_all_functorch_interpreters())


def needs_composite(tensors) -> bool:
    """Whether a call must run as the differentiable composite: it carries
    forward-mode tangents or runs inside torch.func's grad/jvp transforms
    (vmap alone batches the fused kernels)."""
    if fwAD._current_level >= 0 and any(
            t is not None and fwAD.unpack_dual(t).tangent is not None for t in tensors):
        return True
    return _in_grad_or_jvp_transform()


def _requires_grad(tensors) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


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


def _output_for_backward(y):
    # On the CPU torch.nn's recurrence saves its own copies of the hidden
    # states, so a caller may edit the output in place before backward
    # (F.relu(out, inplace=True)); a private copy of y allows the same. cuDNN
    # saves its output, so on CUDA torch.nn raises there, as autograd's
    # version check makes us do.
    return y.detach().clone() if y.device.type == "cpu" else y


def _input_for_recompute(x_proj):
    # Only the CPU differentiates the backward (by recomputing the layer).
    return x_proj if x_proj.device.type == "cpu" else None


class _OnceDifferentiable(torch.autograd.Function):
    """Identity on gradients computed by the CUDA kernels under
    create_graph=True; differentiating them again raises."""

    @staticmethod
    def forward(*grads):
        return grads

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *_):
        raise RuntimeError(
            "rnnfuse: double backward (gradients of gradients) through the CUDA kernels is not "
            "supported, as with torch.nn's cuDNN path; run the RNN on the CPU for higher-order "
            "gradients")


def _recompute_grads(composite_fwd, inputs, needs, grad_outputs):
    """Gradients of the first outputs of ``composite_fwd(*inputs)``, as a
    differentiable graph (create_graph=True). Outputs without a gradient
    (None) do not contribute."""
    wanted = [t for t, need in zip(inputs, needs) if need]
    with torch.enable_grad():
        outputs = composite_fwd(*inputs)[:len(grad_outputs)]
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None]
        grads = iter(torch.autograd.grad([o for o, _ in pairs], wanted, [g for _, g in pairs],
                                         create_graph=True, allow_unused=True))
    return [next(grads) if need else None for need in needs]


def _once_differentiable(grads):
    present = [g for g in grads if g is not None]
    wrapped = iter(_OnceDifferentiable.apply(*present))
    return [next(wrapped) if g is not None else None for g in grads]


def _backward_op(op, differentiable, *args):
    """``op(*args)`` from a backward: through the dispatcher's Autograd key
    when its result must itself be differentiable (create_graph), else
    straight to the backend's kernel, skipping the Python Autograd kernel and
    its boxed redispatch (a cell's backward is short enough for that to show)."""
    if differentiable:
        return op(*args)
    with torch._C._AutoDispatchBelowAutograd():
        return op.default(*args)


def _double_backward(ctx, grads) -> bool:
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (*grads, *ctx.saved_tensors))


def _eager(cls):
    """``cls`` (forward without ctx, then setup_context) as a Function in the
    older style (forward(ctx, ...) doing both). Same forward, context and
    backward; the difference is cost: Function.apply binds the arguments
    with inspect.signature on every call of a setup_context-style Function
    (about 17 us here, most of a small cell call's budget). torch.func's
    transforms need the setup_context style, so :func:`_apply` uses this one
    only when none is active."""

    def forward(ctx, *args):
        output = cls.forward(*args)
        cls.setup_context(ctx, args, output)
        return output

    return type(cls.__name__ + "Eager", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(cls.backward)})


_EAGER = {}


def _apply(cls, *args):
    """``cls.apply(*args)``, in the cheaper older style where it may be."""
    if torch._C._are_functorch_transforms_active():
        return cls.apply(*args)
    eager = _EAGER.get(cls)
    if eager is None:
        eager = _EAGER[cls] = _eager(cls)
    return eager.apply(*args)


# ---------------------------------------------------------------------- LSTM
class _LstmFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training):
        return _below_autograd(OPS.lstm_fwd.default, keyset, x_proj, w_hh, w_hr, h0, c0,
                               batch_sizes, reverse, training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training = inputs
        y, _, _, workspace = output
        ctx.reverse, ctx.training = reverse, training
        # Unused outputs' gradients stay None: materialized, the
        # workspace's alone would be an N x 5H zero fill per backward.
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            _save(ctx, _input_for_recompute(x_proj), w_hh, w_hr, h0, c0,
                  _output_for_backward(y), workspace, batch_sizes)

    @staticmethod
    def backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_workspace):
        _check_saved(ctx, "lstm_fwd")
        x_proj, w_hh, w_hr, h0, c0, y, workspace, batch_sizes = _saved(ctx)
        grads = (grad_y, grad_h_n, grad_c_n)
        needs = ctx.needs_input_grad[1:6]
        double = _double_backward(ctx, grads)
        if double and x_proj is not None:
            inputs = (x_proj, w_hh, w_hr, h0, c0, batch_sizes, ctx.reverse, False)
            result = _recompute_grads(_composite.lstm_fwd, inputs, needs, grads)
        else:
            result = _backward_op(OPS.lstm_bwd, double, _or_zeros(grad_y, y),
                                  _or_zeros(grad_h_n, h0), _or_zeros(grad_c_n, c0), w_hh, w_hr,
                                  h0, c0, y, workspace, batch_sizes, ctx.reverse)
            if w_hr is None:
                result = (*result[:2], None, *result[3:])
            if double:
                result = _once_differentiable(result)
        return (None, *result, None, None, None)


def _lstm_fwd_autograd(keyset, x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training):
    tensors = (x_proj, w_hh, w_hr, h0, c0)
    if needs_composite(tensors):
        _checks.lstm_fwd(x_proj, w_hh, w_hr, h0, c0, batch_sizes)
        return _composite.lstm_fwd(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training)
    if _requires_grad(tensors):
        return _apply(_LstmFwd, keyset, x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse,
                              training)
    return _below_autograd(OPS.lstm_fwd.default, keyset, x_proj, w_hh, w_hr, h0, c0,
                           batch_sizes, reverse, training)


def _lstm_bwd_autograd(keyset, grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace,
                       batch_sizes, reverse):
    tensors = (grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace)
    if needs_composite(tensors) or _requires_grad(tensors):
        _checks.lstm_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace,
                         batch_sizes)
        return _composite.lstm_bwd(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y,
                                   workspace, batch_sizes, reverse)
    return _below_autograd(OPS.lstm_bwd.default, keyset, grad_y, grad_h_n, grad_c_n, w_hh, w_hr,
                           h0, c0, y, workspace, batch_sizes, reverse)


# ----------------------------------------------------------------------- GRU
class _GruFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training):
        return _below_autograd(OPS.gru_fwd.default, keyset, x_proj, w_hh, b_hh, h0, batch_sizes,
                               reverse, training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training = inputs
        y, _, workspace = output
        ctx.reverse, ctx.training = reverse, training
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            _save(ctx, _input_for_recompute(x_proj), w_hh, b_hh, h0, _output_for_backward(y),
                  workspace, batch_sizes)

    @staticmethod
    def backward(ctx, grad_y, grad_h_n, _grad_workspace):
        _check_saved(ctx, "gru_fwd")
        x_proj, w_hh, b_hh, h0, y, workspace, batch_sizes = _saved(ctx)
        grads = (grad_y, grad_h_n)
        needs = ctx.needs_input_grad[1:5]
        double = _double_backward(ctx, grads)
        if double and x_proj is not None:
            inputs = (x_proj, w_hh, b_hh, h0, batch_sizes, ctx.reverse, False)
            result = _recompute_grads(_composite.gru_fwd, inputs, needs, grads)
        else:
            result = _backward_op(OPS.gru_bwd, double, _or_zeros(grad_y, y),
                                  _or_zeros(grad_h_n, h0), w_hh, b_hh, h0, y, workspace,
                                  batch_sizes, ctx.reverse)
            if b_hh is None:
                result = (*result[:2], None, *result[3:])
            if double:
                result = _once_differentiable(result)
        return (None, *result, None, None, None)


def _gru_fwd_autograd(keyset, x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training):
    tensors = (x_proj, w_hh, b_hh, h0)
    if needs_composite(tensors):
        _checks.gru_fwd(x_proj, w_hh, b_hh, h0, batch_sizes)
        return _composite.gru_fwd(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training)
    if _requires_grad(tensors):
        return _apply(_GruFwd, keyset, x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training)
    return _below_autograd(OPS.gru_fwd.default, keyset, x_proj, w_hh, b_hh, h0, batch_sizes,
                           reverse, training)


def _gru_bwd_autograd(keyset, grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes,
                      reverse):
    tensors = (grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace)
    if needs_composite(tensors) or _requires_grad(tensors):
        _checks.gru_bwd(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes)
        return _composite.gru_bwd(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes,
                                  reverse)
    return _below_autograd(OPS.gru_bwd.default, keyset, grad_y, grad_h_n, w_hh, b_hh, h0, y,
                           workspace, batch_sizes, reverse)


# ------------------------------------------------------------- bidirectional
# Both directions of a layer in one op (lstm_bidir_fwd, gru_bidir_fwd): the
# same three paths as the single-direction ops above.
def _none_where_absent(result, optional_inputs, first):
    """Gradients of absent optional inputs (w_hr, b_hh: None) are None, not the
    op's empty placeholders; they sit at result[first], result[first + 1]."""
    result = list(result)
    for k, t in enumerate(optional_inputs):
        if t is None:
            result[first + k] = None
    return result


class _LstmBidirFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, training):
        return _below_autograd(OPS.lstm_bidir_fwd.default, keyset, x_proj, w_hh, w_hh_rev, w_hr,
                               w_hr_rev, h0, c0, batch_sizes, training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, training = inputs
        y, _, _, workspace = output
        ctx.training = training
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            _save(ctx, _input_for_recompute(x_proj), w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0,
                  _output_for_backward(y), workspace, batch_sizes)

    @staticmethod
    def backward(ctx, grad_y, grad_h_n, grad_c_n, _grad_workspace):
        _check_saved(ctx, "lstm_bidir_fwd")
        x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, y, workspace, batch_sizes = _saved(ctx)
        grads = (grad_y, grad_h_n, grad_c_n)
        needs = ctx.needs_input_grad[1:8]
        double = _double_backward(ctx, grads)
        if double and x_proj is not None:
            inputs = (x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, False)
            result = _recompute_grads(_composite.lstm_bidir_fwd, inputs, needs, grads)
        else:
            result = _backward_op(OPS.lstm_bidir_bwd, double, _or_zeros(grad_y, y),
                                  _or_zeros(grad_h_n, h0), _or_zeros(grad_c_n, c0), w_hh,
                                  w_hh_rev, w_hr, w_hr_rev, h0, c0, y, workspace, batch_sizes)
            result = _none_where_absent(result, (w_hr, w_hr_rev), 3)
            if double:
                result = _once_differentiable(result)
        return (None, *result, None, None)


def _lstm_bidir_fwd_autograd(keyset, x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes,
                             training):
    args = (x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes, training)
    tensors = args[:7]
    if needs_composite(tensors):
        _checks.lstm_bidir_fwd(*args[:8])
        return _composite.lstm_bidir_fwd(*args)
    if _requires_grad(tensors):
        return _apply(_LstmBidirFwd, keyset, *args)
    return _below_autograd(OPS.lstm_bidir_fwd.default, keyset, *args)


def _lstm_bidir_bwd_autograd(keyset, *args):
    if needs_composite(args[:11]) or _requires_grad(args[:11]):
        _checks.lstm_bidir_bwd(*args)
        return _composite.lstm_bidir_bwd(*args)
    return _below_autograd(OPS.lstm_bidir_bwd.default, keyset, *args)


class _GruBidirFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training):
        return _below_autograd(OPS.gru_bidir_fwd.default, keyset, x_proj, w_hh, w_hh_rev, b_hh,
                               b_hh_rev, h0, batch_sizes, training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training = inputs
        y, _, workspace = output
        ctx.training = training
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            _save(ctx, _input_for_recompute(x_proj), w_hh, w_hh_rev, b_hh, b_hh_rev, h0,
                  _output_for_backward(y), workspace, batch_sizes)

    @staticmethod
    def backward(ctx, grad_y, grad_h_n, _grad_workspace):
        _check_saved(ctx, "gru_bidir_fwd")
        x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace, batch_sizes = _saved(ctx)
        grads = (grad_y, grad_h_n)
        needs = ctx.needs_input_grad[1:7]
        double = _double_backward(ctx, grads)
        if double and x_proj is not None:
            inputs = (x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, False)
            result = _recompute_grads(_composite.gru_bidir_fwd, inputs, needs, grads)
        else:
            result = _backward_op(OPS.gru_bidir_bwd, double, _or_zeros(grad_y, y),
                                  _or_zeros(grad_h_n, h0), w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y,
                                  workspace, batch_sizes)
            result = _none_where_absent(result, (b_hh, b_hh_rev), 3)
            if double:
                result = _once_differentiable(result)
        return (None, *result, None, None)


def _gru_bidir_fwd_autograd(keyset, x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes,
                            training):
    args = (x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training)
    tensors = args[:6]
    if needs_composite(tensors):
        _checks.gru_bidir_fwd(*args[:7])
        return _composite.gru_bidir_fwd(*args)
    if _requires_grad(tensors):
        return _apply(_GruBidirFwd, keyset, *args)
    return _below_autograd(OPS.gru_bidir_fwd.default, keyset, *args)


def _gru_bidir_bwd_autograd(keyset, *args):
    if needs_composite(args[:9]) or _requires_grad(args[:9]):
        _checks.gru_bidir_bwd(*args)
        return _composite.gru_bidir_bwd(*args)
    return _below_autograd(OPS.gru_bidir_bwd.default, keyset, *args)


# --------------------------------------------------------------------- cells
class _LstmCellFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x, w_ih, w_hh, b_ih, b_hh, h0, c0, training):
        return _below_autograd(OPS.lstm_cell_fwd.default, keyset, x, w_ih, w_hh, b_ih, b_hh, h0,
                               c0, training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x, w_ih, w_hh, b_ih, b_hh, h0, c0, training = inputs
        h, _, workspace = output
        ctx.training, ctx.bias = training, b_ih is not None
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            # The biases only for a recompute: their gradient is the gates'.
            recompute = x.device.type == "cpu"
            _save(ctx, x, w_ih, w_hh, b_ih if recompute else None, b_hh if recompute else None,
                  h0, c0, _output_for_backward(h), workspace)

    @staticmethod
    def backward(ctx, grad_h, grad_c, _grad_workspace):
        _check_saved(ctx, "lstm_cell_fwd")
        x, w_ih, w_hh, b_ih, b_hh, h0, c0, h, workspace = _saved(ctx)
        grads = (grad_h, grad_c)
        needs = ctx.needs_input_grad[1:8]
        double = _double_backward(ctx, grads)
        if double and x.device.type == "cpu":
            inputs = (x, w_ih, w_hh, b_ih, b_hh, h0, c0, False)
            result = _recompute_grads(_composite.lstm_cell_fwd, inputs, needs, grads)
        else:
            grad_x, grad_w_ih, grad_w_hh, grad_bias, grad_h0, grad_c0 = _backward_op(
                OPS.lstm_cell_bwd, double,
                _or_zeros(grad_h, h), _or_zeros(grad_c, c0), x, w_ih, w_hh, h0, c0, h, workspace,
                ctx.bias)
            bias = grad_bias if ctx.bias else None
            result = [grad_x, grad_w_ih, grad_w_hh, bias, bias, grad_h0, grad_c0]
            if double:
                result = _once_differentiable(result)
        return (None, *result, None)


def _lstm_cell_fwd_autograd(keyset, x, w_ih, w_hh, b_ih, b_hh, h0, c0, training):
    tensors = (x, w_ih, w_hh, b_ih, b_hh, h0, c0)
    if needs_composite(tensors):
        _checks.lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0)
        return _composite.lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0, training)
    if _requires_grad(tensors):
        return _apply(_LstmCellFwd, keyset, x, w_ih, w_hh, b_ih, b_hh, h0, c0, training)
    return _below_autograd(OPS.lstm_cell_fwd.default, keyset, x, w_ih, w_hh, b_ih, b_hh, h0, c0,
                           training)


def _lstm_cell_bwd_autograd(keyset, grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace, bias):
    tensors = (grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace)
    if needs_composite(tensors) or _requires_grad(tensors):
        _checks.lstm_cell_bwd(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace)
        return _composite.lstm_cell_bwd(grad_h, grad_c, x, w_ih, w_hh, h0, c0, h, workspace,
                                        bias)
    return _below_autograd(OPS.lstm_cell_bwd.default, keyset, grad_h, grad_c, x, w_ih, w_hh, h0,
                           c0, h, workspace, bias)


class _GruCellFwd(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x, w_ih, w_hh, b_ih, b_hh, h0, training):
        return _below_autograd(OPS.gru_cell_fwd.default, keyset, x, w_ih, w_hh, b_ih, b_hh, h0,
                               training)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x, w_ih, w_hh, b_ih, b_hh, h0, training = inputs
        h, workspace = output
        ctx.training, ctx.bias = training, b_ih is not None
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(workspace)
        if training:
            recompute = x.device.type == "cpu"
            _save(ctx, x, w_ih, w_hh, b_ih if recompute else None, b_hh, h0,
                  _output_for_backward(h), workspace)

    @staticmethod
    def backward(ctx, grad_h, _grad_workspace):
        _check_saved(ctx, "gru_cell_fwd")
        x, w_ih, w_hh, b_ih, b_hh, h0, h, workspace = _saved(ctx)
        needs = ctx.needs_input_grad[1:7]
        double = _double_backward(ctx, (grad_h,))
        if double and x.device.type == "cpu":
            inputs = (x, w_ih, w_hh, b_ih, b_hh, h0, False)
            result = _recompute_grads(_composite.gru_cell_fwd, inputs, needs, (grad_h,))
        else:
            grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0 = _backward_op(
                OPS.gru_cell_bwd, double,
                _or_zeros(grad_h, h), x, w_ih, w_hh, b_hh, h0, h, workspace)
            if not ctx.bias:
                grad_b_ih = grad_b_hh = None
            result = [grad_x, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh, grad_h0]
            if double:
                result = _once_differentiable(result)
        return (None, *result, None)


def _gru_cell_fwd_autograd(keyset, x, w_ih, w_hh, b_ih, b_hh, h0, training):
    tensors = (x, w_ih, w_hh, b_ih, b_hh, h0)
    if needs_composite(tensors):
        _checks.gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0)
        return _composite.gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, training)
    if _requires_grad(tensors):
        return _apply(_GruCellFwd, keyset, x, w_ih, w_hh, b_ih, b_hh, h0, training)
    return _below_autograd(OPS.gru_cell_fwd.default, keyset, x, w_ih, w_hh, b_ih, b_hh, h0,
                           training)


def _gru_cell_bwd_autograd(keyset, grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace):
    tensors = (grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace)
    if needs_composite(tensors) or _requires_grad(tensors):
        _checks.gru_cell_bwd(grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace)
        return _composite.gru_cell_bwd(grad_h, x, w_ih, w_hh, b_hh, h0, h, workspace)
    return _below_autograd(OPS.gru_cell_bwd.default, keyset, grad_h, x, w_ih, w_hh, b_hh, h0, h,
                           workspace)


# ------------------------------------------------- the CPU input projection
class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(keyset, x, w, b):
        return _below_autograd(OPS.linear.default, keyset, x, w, b)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, x, w, b = inputs
        ctx.has_b = b is not None
        # dx needs w, dw needs x.
        _save(ctx, w if ctx.needs_input_grad[1] else None, x if ctx.needs_input_grad[2] else None)

    @staticmethod
    def backward(ctx, grad):
        w, x = _saved(ctx)
        # rnnfuse::mm (the CPU kernels' GEMM) for plain training; torch.mm,
        # differentiable, when the backward itself is differentiated.
        mm = torch.mm if _double_backward(ctx, (grad,)) else OPS.mm
        dx = mm(grad, w) if ctx.needs_input_grad[1] else None
        dw = mm(grad.t(), x) if ctx.needs_input_grad[2] else None
        db = grad.sum(0) if ctx.has_b and ctx.needs_input_grad[3] else None
        return None, dx, dw, db


def _linear_autograd(keyset, x, w, b):
    tensors = (x, w, b)
    if needs_composite(tensors):
        _checks.linear(x, w, b)
        return torch.nn.functional.linear(x, w, b)
    if _requires_grad(tensors):
        return _apply(_Linear, keyset, x, w, b)
    return _below_autograd(OPS.linear.default, keyset, x, w, b)


def _mm_autograd(keyset, a, b):
    if needs_composite((a, b)) or _requires_grad((a, b)):
        _checks.mm(a, b)
        return torch.mm(a, b)
    return _below_autograd(OPS.mm.default, keyset, a, b)


_RECORDED = {"lstm_fwd": _LstmFwd, "gru_fwd": _GruFwd, "lstm_bidir_fwd": _LstmBidirFwd,
             "gru_bidir_fwd": _GruBidirFwd, "lstm_cell_fwd": _LstmCellFwd,
             "gru_cell_fwd": _GruCellFwd}


def record_forward(name, *args):
    """``torch.ops.rnnfuse.<name>(*args)`` for a forward op whose inputs
    require grad, as the op's Autograd kernel runs it on its ordinary path,
    without the dispatcher's hop into that Python kernel and back. For eager
    calls only: the caller (functional.py) rules out torch.compile and the
    composite cases (needs_composite)."""
    return _apply(_RECORDED[name], None, *args)


_LIB = torch.library.Library("rnnfuse", "IMPL")
for _name, _kernel in (("lstm_fwd", _lstm_fwd_autograd), ("lstm_bwd", _lstm_bwd_autograd),
                       ("gru_fwd", _gru_fwd_autograd), ("gru_bwd", _gru_bwd_autograd),
                       ("lstm_bidir_fwd", _lstm_bidir_fwd_autograd),
                       ("lstm_bidir_bwd", _lstm_bidir_bwd_autograd),
                       ("gru_bidir_fwd", _gru_bidir_fwd_autograd),
                       ("gru_bidir_bwd", _gru_bidir_bwd_autograd),
                       ("lstm_cell_fwd", _lstm_cell_fwd_autograd),
                       ("lstm_cell_bwd", _lstm_cell_bwd_autograd),
                       ("gru_cell_fwd", _gru_cell_fwd_autograd),
                       ("gru_cell_bwd", _gru_cell_bwd_autograd),
                       ("linear", _linear_autograd), ("mm", _mm_autograd)):
    _LIB.impl(_name, _kernel, "Autograd", with_keyset=True)
