"""The training workspace (what the backward reads: LSTM i, f, g, o, c; GRU
r, z, n, hn) is saved in the input dtype: half the bytes of fp32 for bf16,
which is most of rnnfuse's training memory per row (issue 8, item 6).

  * every op (layer, bidirectional, cell) returns it in its input's dtype,
    and its fake kernel says so (opcheck in bf16);
  * what is stored is the fp32 activation rounded once to nearest: the CPU
    kernels' workspace against the composite twin's (its fp32 activations
    rounded by PyTorch), to within the rounding boundaries that a different
    fp32 summation order can cross;
  * the backward reads that workspace: fed a workspace, the ops' gradients
    equal the composite twin's, which upcasts the same saved values.
"""
from __future__ import annotations

import pytest
import torch

from rnnfuse import _composite as C

OPS = torch.ops.rnnfuse
DTYPES = [torch.float64, torch.float32, torch.bfloat16]


def _layer_args(mode, dtype, T=6, B=4, H=16, seed=3):
    gen = torch.Generator().manual_seed(seed)
    G = 4 if mode == "LSTM" else 3

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    x_proj, w_hh, h0 = rand(T * B, G * H, scale=2.0), rand(G * H, H, scale=0.3), rand(B, H)
    if mode == "LSTM":
        return (x_proj, w_hh, None, h0, rand(B, H), None, False, True)
    return (x_proj, w_hh, rand(G * H), h0, None, False, True)


def _bidir_args(mode, dtype, T=5, B=3, H=8, seed=4):
    gen = torch.Generator().manual_seed(seed)
    G = 4 if mode == "LSTM" else 3

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    x_proj, w, w_rev = rand(T * B, 2 * G * H), rand(G * H, H, scale=0.3), rand(G * H, H, scale=0.3)
    if mode == "LSTM":
        return (x_proj, w, w_rev, None, None, rand(2, B, H), rand(2, B, H), None, True)
    return (x_proj, w, w_rev, rand(G * H), rand(G * H), rand(2, B, H), None, True)


def _cell_args(mode, dtype, B=3, I=5, H=8, seed=5):
    gen = torch.Generator().manual_seed(seed)
    G = 4 if mode == "LSTM" else 3

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    args = (rand(B, I), rand(G * H, I, scale=0.3), rand(G * H, H, scale=0.3), rand(G * H),
            rand(G * H), rand(B, H))
    return args + ((rand(B, H), True) if mode == "LSTM" else (True,))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_every_op_saves_its_workspace_in_the_input_dtype(mode, dtype):
    calls = {
        "layer": (OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd, _layer_args(mode, dtype)),
        "bidir": (OPS.lstm_bidir_fwd if mode == "LSTM" else OPS.gru_bidir_fwd,
                  _bidir_args(mode, dtype)),
        "cell": (OPS.lstm_cell_fwd if mode == "LSTM" else OPS.gru_cell_fwd,
                 _cell_args(mode, dtype)),
    }
    for name, (op, args) in calls.items():
        ws = op(*args)[-1]
        print(f"{name}: workspace {tuple(ws.shape)} {ws.dtype}")
        assert ws.numel() > 0 and ws.dtype == dtype, name
        # The fake kernel (torch.compile, the meta device) agrees.
        meta_args = tuple(a.to("meta") if isinstance(a, torch.Tensor) else a for a in args)
        assert op(*meta_args)[-1].dtype == dtype, name


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_bfloat16_training_forward_and_backward(mode):
    args = _layer_args(mode, torch.bfloat16)
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if mode == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    torch.library.opcheck(fwd, args)
    outs = fwd(*args)
    gen = torch.Generator().manual_seed(8)
    grad = lambda t: torch.randn(t.shape, generator=gen).to(t.dtype)  # noqa: E731
    if mode == "LSTM":
        x_proj, w_hh, w_hr, h0, c0, bs, rev, _ = args
        bwd_args = (grad(outs[0]), grad(outs[1]), grad(outs[2]), w_hh, w_hr, h0, c0, outs[0],
                    outs[3], bs, rev)
    else:
        x_proj, w_hh, b_hh, h0, bs, rev, _ = args
        bwd_args = (grad(outs[0]), grad(outs[1]), w_hh, b_hh, h0, outs[0], outs[2], bs, rev)
    torch.library.opcheck(bwd, bwd_args)


def _bf16_ulps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| in units of b's last place (bf16: 8 significant bits)."""
    ulp = torch.ldexp(torch.ones_like(b, dtype=torch.float64),
                      torch.frexp(b.double().abs().clamp_min(1e-30))[1] - 8)
    return (a.double() - b.double()).abs() / ulp


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bfloat16_workspace_is_the_activations_rounded_to_nearest(mode):
    args = _layer_args(mode, torch.bfloat16, T=8, B=8, H=64)
    fwd = OPS.lstm_fwd if mode == "LSTM" else OPS.gru_fwd
    twin = C.lstm_fwd if mode == "LSTM" else C.gru_fwd
    ws, ws_twin = fwd(*args)[-1], twin(*args)[-1]
    assert ws.dtype == ws_twin.dtype == torch.bfloat16
    ulps = _bf16_ulps(ws, ws_twin)
    equal = float((ulps == 0).double().mean())
    print(f"workspace vs twin: max {float(ulps.max()):.1f} ulp, {100 * equal:.3f}% equal")
    # Both round the same fp32 activations to nearest; only their fp32
    # summation orders differ (~1e-7 relative), which crosses a rounding
    # boundary for a few elements in 10^4 (by one place). Truncation in place
    # of rounding to nearest would differ in about half of them.
    assert float(ulps.max()) <= 1.0
    assert equal >= 0.99


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_backward_reads_the_saved_bfloat16_workspace(mode):
    args = _layer_args(mode, torch.bfloat16, T=8, B=8, H=64)
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if mode == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    twin = C.lstm_bwd if mode == "LSTM" else C.gru_bwd
    outs = fwd(*args)
    gen = torch.Generator().manual_seed(9)
    grad = lambda t: torch.randn(t.shape, generator=gen).to(t.dtype)  # noqa: E731
    # Another forward's workspace: the gradients must come from the values
    # passed in (a backward reading anything else is off by O(1)).
    ws = fwd(*_layer_args(mode, torch.bfloat16, T=8, B=8, H=64, seed=17))[-1]
    if mode == "LSTM":
        x_proj, w_hh, w_hr, h0, c0, bs, rev, _ = args
        bwd_args = (grad(outs[0]), grad(outs[1]), grad(outs[2]), w_hh, w_hr, h0, c0, outs[0],
                    ws, bs, rev)
    else:
        x_proj, w_hh, b_hh, h0, bs, rev, _ = args
        bwd_args = (grad(outs[0]), grad(outs[1]), w_hh, b_hh, h0, outs[0], ws, bs, rev)
    # The twin in float64 on the same (exactly upcast) values: the gradients
    # of the saved activations without the op's own roundings.
    f64_args = tuple(a.double() if isinstance(a, torch.Tensor) else a for a in bwd_args)
    got, want = bwd(*bwd_args), twin(*f64_args)
    for i, (g, w) in enumerate(zip(got, want)):
        if w is None or w.numel() == 0:
            continue
        err = float((g.double() - w).abs().max() / w.abs().max())
        print(f"grad {i}: max err / max |float64 twin| = {err:.2e}")
        # The op's own bf16 roundings (the gate gradients it feeds back and
        # returns, 2^-9 relative each) over the 8-step reverse walk: the
        # bf16 gradient tolerance of test_ops.py (LOW_PRECISION).
        assert err <= 3e-2, f"gradient {i}"
