"""The CPU emulation of the per-step CUDA launches (csrc/cuda/step_emulate.cu)
against the CPU ops, for a bidirectional layer (one launch per time step for
both directions).

The emulation runs the CUDA loops' own host code (step_loops.h: each step's
kernel arguments, row strides, the two directions' pairing, the projection's
per-step GEMM), the kernels' own operand maps and epilogues, their launch
grid and the tile GEMM's own staging of each k-chunk into shared-memory tiles
(tensor-core tiles: 16-byte vectors where a row's are aligned, element by
element elsewhere; the hidden sizes below give both, and k's tails), with a
plain sum over each staged chunk in place of the MMA or FMA order. So any
wrong pointer, stride, carry row, early exit, vector or zero fill in that
code shows here as a difference from the CPU kernels (the executable spec),
which a summation order cannot explain: float64 agrees to 1e-12. Runs where
the build has CUDA (the emulation is compiled with the CUDA sources).
"""
from __future__ import annotations

import pytest
import torch

from rnnfuse import _build_config
from test_bidir import bidir_args, run_bidir

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the step emulation is built with the CUDA sources")

OPS = torch.ops.rnnfuse
TILES = {0: "tc-small", 1: "tc-large", 2: "fma-small", 3: "fma-large", 4: "tc-small-deep",
         5: "tc-large-deep"}
# Max error relative to the CPU op's largest magnitude: float64 differs only
# in the GEMMs' summation order; float32 by that, rounded; bf16 by a rounding
# of an output now and then, carried through the steps.
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}

CASES = [
    # (mode, T, B, H, packed, proj / bias)
    ("LSTM", 5, 5, 24, False, None),
    ("LSTM", 6, 9, 20, True, None),
    ("LSTM", 4, 6, 16, True, 12),       # projection: the host's per-step GEMMs
    ("LSTM", 4, 70, 40, True, None),    # batches straddle 16 and 64 rows, directions differ
    ("LSTM", 3, 1, 8, False, None),
    ("GRU", 5, 5, 24, False, True),
    ("GRU", 6, 9, 20, True, True),
    ("GRU", 4, 70, 40, True, False),
    ("GRU", 3, 17, 36, False, False),
    # H odd: rows 16-byte aligned at no dtype, k tails of every length (fp32 too)
    ("LSTM", 3, 4, 13, True, None),
    ("GRU", 4, 5, 13, False, True),
]


def emulated(mode, args, grads, tile):
    """Forward (training) and backward through the emulated launches."""
    if mode == "LSTM":
        outs = OPS.step_emulate_lstm_bidir_fwd(*args, True, tile)
        _, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0, batch_sizes = args
        back = OPS.step_emulate_lstm_bidir_bwd(*grads, w_hh, w_hh_r, w_hr, w_hr_r, h0, c0,
                                               outs[0], outs[-1], batch_sizes, tile)
    else:
        outs = OPS.step_emulate_gru_bidir_fwd(*args, True, tile)
        _, w_hh, w_hh_r, b_hh, b_hh_r, h0, batch_sizes = args
        back = OPS.step_emulate_gru_bidir_bwd(*grads, w_hh, w_hh_r, b_hh, b_hh_r, h0, outs[0],
                                              outs[-1], batch_sizes, tile)
    return outs, back


@pytest.mark.parametrize("tile", list(TILES), ids=list(TILES.values()))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_emulated_launches_match_the_cpu_ops(case, dtype, tile):
    if dtype == torch.float64 and tile not in (2, 3):
        pytest.skip("float64 has no tensor-core tiles")
    mode, T, B, H, packed, extra = case
    kwargs = dict(proj=extra) if mode == "LSTM" else dict(bias=extra)
    args = bidir_args(mode, T, B, H, dtype=dtype, packed=packed, **kwargs)
    want_outs, grads, want_back = run_bidir(mode, args)
    outs, back = emulated(mode, args, grads, tile)
    names = ["y", "h_n", "c_n", "workspace"] if mode == "LSTM" else ["y", "h_n", "workspace"]
    names += ["grad_x_proj", "grad_w_hh", "grad_w_hh_rev", "grad_w_hr/b_hh", "grad_w_hr/b_hh_rev",
              "grad_h0"] + (["grad_c0"] if mode == "LSTM" else [])
    for name, want, got in zip(names, [*want_outs, *want_back], [*outs, *back]):
        assert got.shape == want.shape and got.dtype == want.dtype, name
        if want.numel() == 0:
            continue
        scale = max(want.double().abs().max().item(), 1e-30)
        err = (got.double() - want.double()).abs().max().item() / scale
        print(f"{TILES[tile]} {name}: max |diff| / max |CPU| {err:.3g}")
        assert err <= TOL[dtype], name


def test_a_tile_the_dtype_lacks_is_an_error():
    args = bidir_args("GRU", 2, 3, 8, dtype=torch.float64)
    with pytest.raises(RuntimeError, match="tile 0 does not exist for this dtype"):
        OPS.step_emulate_gru_bidir_fwd(*args, False, 0)
