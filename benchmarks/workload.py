"""Build the two modules of a point and the step each mode times.

Both modules are constructed with torch.nn's constructor arguments; the
candidate (rnnfuse) gets the baseline's weights through load_state_dict, so
every comparison is weight for weight.

Sequence points (lstm, gru) call the module once on the (T, B, I) input.
Cell points (lstmcell, grucell) call it T times in a chain, h_t = cell(x_t,
h_{t-1}) (and c for LSTMCell), as a model's Python time loop does; their
"output" is the list of the T hidden states.

Modes:
  inference: ``module.eval()`` and forward under ``torch.inference_mode``.
             eval() matters: torch.nn passes ``self.training`` to cuDNN, which
             otherwise runs its training forward and fills a reserve buffer.
  training:  ``module.train()``, forward + backward of the loss
             ``L = sum(y * g)`` over the whole output sequence ``y`` with a fixed
             random ``g``. We call ``y.backward(g)`` (for a cell chain,
             ``torch.autograd.backward(ys, gs)``), which is that loss's gradient
             without timing the reduction. Gradients (parameters and input)
             are cleared before each step, outside the timed region.
"""
from __future__ import annotations

import contextlib
import dataclasses

import torch

TORCH_DTYPE = {"fp32": torch.float32, "tf32": torch.float32,
               "fp16": torch.float16, "bf16": torch.bfloat16}


def tf32_flags(dtype: str) -> dict:
    """The TF32 flags a point runs under: "fp32" both off, "tf32" both on.

    Half-precision points keep PyTorch's defaults (cuDNN on, matmul off); the
    flags do not affect fp16/bf16 math.
    """
    if dtype == "fp32":
        return {"cudnn_allow_tf32": False, "matmul_allow_tf32": False}
    if dtype == "tf32":
        return {"cudnn_allow_tf32": True, "matmul_allow_tf32": True}
    return {"cudnn_allow_tf32": True, "matmul_allow_tf32": False}


@contextlib.contextmanager
def math_mode(dtype: str):
    """Set the TF32 flags for ``dtype`` and restore the caller's on exit."""
    flags = tf32_flags(dtype)
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = flags["cudnn_allow_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = flags["matmul_allow_tf32"]
    try:
        yield flags
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# The baseline of each cell kind (tests replace entries to inject failures).
BASELINES = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
             "lstmcell": torch.nn.LSTMCell, "grucell": torch.nn.GRUCell}


def module_kwargs(point) -> dict:
    if point.is_cell:
        return dict(input_size=point.I, hidden_size=point.H, bias=True)
    return dict(input_size=point.I, hidden_size=point.H, num_layers=point.layers,
                bias=True, batch_first=False, bidirectional=point.bidirectional)


def build_pair(point, device: torch.device, candidates: dict, seed: int = 0):
    """(baseline torch.nn module, candidate module) with identical weights."""
    baseline_cls = BASELINES[point.cell]
    torch.manual_seed(seed)
    baseline = baseline_cls(**module_kwargs(point)).to(device=device, dtype=TORCH_DTYPE[point.dtype])
    candidate = candidates[point.cell](**module_kwargs(point))
    candidate = candidate.to(device=device, dtype=TORCH_DTYPE[point.dtype])
    candidate.load_state_dict(baseline.state_dict())
    for m in (baseline, candidate):
        m.train(point.mode == "training")
    return baseline, candidate


@dataclasses.dataclass
class Inputs:
    xs: list  # rotated input sequences, each (T, B, I)
    hx: object  # h0, or (h0, c0) for LSTM
    grad_out: torch.Tensor | None  # g of the training loss, (T, B, D*H)


def make_inputs(point, device: torch.device, seed: int, copies: int = 1) -> Inputs:
    """Random inputs (never zeros: zeros hide indexing bugs and time faster)."""
    # Drawn on the device (a 1 GB input is seconds of CPU time) in float32,
    # then rounded to the point's dtype, so every dtype sees the same values.
    gen = torch.Generator(device=device).manual_seed(seed)
    dtype = TORCH_DTYPE[point.dtype]

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    xs = [randn(point.T, point.B, point.I) for _ in range(copies)]
    # A cell's state has no (layers * directions) dimension.
    state = (point.B, point.H) if point.is_cell else (point.layers * point.directions, point.B, point.H)
    hx = (randn(*state), randn(*state)) if point.cell in ("lstm", "lstmcell") else randn(*state)
    grad_out = None
    if point.mode == "training":
        for x in xs:
            x.requires_grad_(True)
        grad_out = randn(point.T, point.B, point.directions * point.H)
    return Inputs(xs, hx, grad_out)


def rotation_copies(point, device: torch.device, l2_bytes: int | None, max_copies: int = 8) -> int:
    """How many input sets to rotate so successive repeats do not read x from L2.

    Enough copies to span twice the L2, at most ``max_copies``; one when a
    single input already exceeds that or on the CPU.
    """
    if device.type != "cuda" or not l2_bytes:
        return 1
    x_bytes = point.T * point.B * point.I * TORCH_DTYPE[point.dtype].itemsize
    return int(max(1, min(max_copies, -(-2 * l2_bytes // max(1, x_bytes)))))


def clear_grads(module: torch.nn.Module, inputs: Inputs):
    for p in module.parameters():
        p.grad = None
    for x in inputs.xs:
        x.grad = None


def cell_chain(module: torch.nn.Module, x: torch.Tensor, hx):
    """T chained calls of a cell over x (T, B, I): (list of the T hidden states, final state)."""
    ys, state = [], hx
    # unbind, not x[t]: in training T index views would each scatter a full-size
    # zero gradient into x's; unbind's backward stacks the T gradients once.
    for x_t in x.unbind(0):
        state = module(x_t, state)
        ys.append(state[0] if isinstance(state, tuple) else state)
    return ys, state


def run_sequence(module: torch.nn.Module, point, x: torch.Tensor, hx):
    """One sequence: (y, final state); y is a tensor, or a list of tensors for a cell chain."""
    if point.is_cell:
        return cell_chain(module, x, hx)
    return module(x, hx)


def step_fn(module: torch.nn.Module, inputs: Inputs, point):
    """The callable a repeat times: ``fn(i)`` uses input set ``i % copies``."""
    xs, hx, g = inputs.xs, inputs.hx, inputs.grad_out
    if point.mode == "inference":
        def fn(i=0):
            with torch.inference_mode():
                return run_sequence(module, point, xs[i % len(xs)], hx)
    elif point.is_cell:
        gs = list(g.unbind(0))  # once, outside the timed region

        def fn(i=0):
            ys, _ = cell_chain(module, xs[i % len(xs)], hx)
            torch.autograd.backward(ys, gs)
            return ys
    else:
        def fn(i=0):
            y, _ = module(xs[i % len(xs)], hx)
            y.backward(g)
            return y
    return fn
