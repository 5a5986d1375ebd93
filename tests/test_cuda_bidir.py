"""The bidirectional layer ops on CUDA: one launch per time step runs both
directions' steps (grid.z is the direction), each reading its column block
of one (N, 2*G*H) projection and writing its half of one (N, 2P) output.

Each direction's blocks compute exactly what a single-direction launch
computes when both pick the same tile, so the outputs, workspace and x_proj
gradient must then be bitwise those of two single-direction calls; where the
two directions' batches straddle the tile switch (packed sequences; the pair
takes the tile of the larger batch) the error against a float64 reference
must stay within what the single-direction kernels make. Plus: one launch per
time step (profiler), the modules through this path (BIDIR_ONE_OP_DEVICES)
against the per-direction path, opcheck on CUDA. Skipped without a GPU.
"""
from __future__ import annotations

import contextlib

import pytest
import torch

import rnnfuse
from rnnfuse import _driver
from test_bidir import (assert_bitwise, assert_close, bidir_args, opcheck_both_ops, run_bidir,
                        run_single)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# csrc/cuda/step_common.cuh's kLargeBatch: under RNNFUSE_STEP_TILE=threshold
# (set by the bitwise test, so that one and two directions pick tiles by the
# same rule) a step takes the 64-row tiles above it.
LARGE_BATCH = 32
# Slack of the bidirectional launch's error against float64 over the
# single-direction calls' error, relative to the largest magnitude: about one
# rounding of the dtype (another tile sums in another order).
SLACK = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 8e-3, torch.float16: 1e-3}

CASES = [
    # (mode, T, B, H, packed, proj / bias)
    ("LSTM", 7, 5, 24, False, None),
    ("LSTM", 6, 9, 20, True, None),
    ("LSTM", 5, 4, 16, True, 12),
    ("LSTM", 4, 40, 72, False, None),   # 64-row tiles in both directions
    ("LSTM", 6, 48, 40, True, None),    # the directions' batches straddle the tile switch
    ("LSTM", 5, 45, 40, True, 24),
    ("GRU", 7, 5, 24, False, True),
    ("GRU", 6, 9, 20, True, True),
    ("GRU", 5, 17, 32, True, False),
    ("GRU", 4, 40, 72, False, True),
    ("GRU", 6, 48, 40, True, True),
]


@contextlib.contextmanager
def tf32(enabled: bool):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def to_cuda(args):
    return tuple(a.cuda() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def to_f64_cpu(args):
    return tuple(a.double().cpu() if isinstance(a, torch.Tensor) and a.is_floating_point()
                 else a for a in args)


def same_tiles(args, T, B, packed) -> bool:
    """Whether every launch's two steps take the tile each would alone."""
    if not packed:
        return True
    sizes = args[-1].tolist()
    return all((s > LARGE_BATCH) == (r > LARGE_BATCH) for s, r in zip(sizes, reversed(sizes)))


def flat(outs, back):
    """Everything the time loops write, in one list: outputs, workspace, grad_x."""
    return [*outs, back[0]]


def rel_err(actual, ref):
    scale = max(ref.double().abs().max().item(), 1e-30)
    return (actual.double().cpu() - ref.double().cpu()).abs().max().item() / scale


DTYPES = [(torch.float64, False), (torch.float32, False), (torch.float32, True),
          (torch.bfloat16, False), (torch.float16, False)]


@pytest.mark.parametrize("dtype,allow_tf32", DTYPES, ids=["f64", "f32", "tf32", "bf16", "f16"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)))
def test_matches_two_single_direction_launches(case, dtype, allow_tf32, monkeypatch):
    monkeypatch.setenv("RNNFUSE_STEP_TILE", "threshold")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    mode, T, B, H, packed, extra = case
    kwargs = dict(proj=extra) if mode == "LSTM" else dict(bias=extra)
    args = bidir_args(mode, T, B, H, dtype=dtype, packed=packed, **kwargs)
    with tf32(allow_tf32):
        outs, grads, back = run_bidir(mode, to_cuda(args))
        single, single_backs = run_single(mode, to_cuda(args), grads)
    grad_x = torch.cat([single_backs[0][0], single_backs[1][0]], 1)
    names = ("y", "h_n", "c_n", "workspace") if mode == "LSTM" else ("y", "h_n", "workspace")
    if same_tiles(args, T, B, packed):
        for name, e, a in zip(names, single, outs):
            assert_bitwise(name, e, a)
        assert_bitwise("grad_x_proj", grad_x, back[0])
    else:
        # The float64 reference: the CPU op (the executable spec) on the same values.
        ref_outs, _, ref_back = run_bidir(mode, to_f64_cpu(args), grads=[g.cpu() for g in grads])
        pairs = zip((*names, "grad_x_proj"), flat(outs, back), flat(single, [grad_x]),
                    flat(ref_outs, ref_back))
        for name, ours, theirs, ref in pairs:
            if ref.numel() == 0:
                continue
            err, base = rel_err(ours, ref), rel_err(theirs, ref)
            print(f"{name}: bidirectional launch {err:.3g}, single-direction {base:.3g} "
                  f"(slack {SLACK[dtype]})")
            assert err <= 2 * base + SLACK[dtype], name
    for d in range(2):
        assert_close(f"grad_w_hh[{d}]", single_backs[d][1], back[1 + d], dtype, allow_tf32)
        if args[3 + d] is not None:
            assert_close(f"grad of {'w_hr' if mode == 'LSTM' else 'b_hh'}[{d}]",
                         single_backs[d][2], back[3 + d], dtype, allow_tf32)
        assert_close(f"grad_h0[{d}]", single_backs[d][3], back[5][d], dtype, allow_tf32)
        if mode == "LSTM":
            assert_close(f"grad_c0[{d}]", single_backs[d][4], back[6][d], dtype, allow_tf32)


def step_launches(fn) -> dict[str, int]:
    """How many forward and backward step kernels fn launches."""
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return {"fwd": sum("fwd_step_kernel" in n for n in names),
            "bwd": sum("bwd_step_kernel" in n for n in names)}


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_one_launch_per_time_step_for_both_directions(mode, monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    T = 6
    args = to_cuda(bidir_args(mode, T, 7, 24, dtype=torch.bfloat16, packed=True))
    counts = step_launches(lambda: run_bidir(mode, args))
    print("bidirectional op:", counts)
    assert counts == {"fwd": T, "bwd": T}
    grads = run_bidir(mode, args)[1]
    counts = step_launches(lambda: run_single(mode, args, grads))
    print("two single-direction ops:", counts)
    assert counts == {"fwd": 2 * T, "bwd": 2 * T}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_modules_through_the_bidirectional_op(mode, packed, dtype, monkeypatch):
    # The modules' CUDA path once BIDIR_ONE_OP_DEVICES names cuda, against
    # their per-direction path: same weights, inputs and cotangents. The two
    # projections differ (stacked W_ih vs one GEMM each), so tolerances.
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    torch.manual_seed(0)
    kwargs = dict(num_layers=2, bidirectional=True)
    if mode == "LSTM":
        kwargs["proj_size"] = 8
    module = getattr(rnnfuse, mode)(12, 20, **kwargs).to("cuda", dtype)
    x = torch.randn(9, 6, 12, device="cuda", dtype=dtype)
    lengths = torch.tensor([9, 8, 8, 5, 3, 1])

    def run():
        leaf = x.clone().requires_grad_()
        inp = (torch.nn.utils.rnn.pack_padded_sequence(leaf, lengths) if packed else leaf)
        out, state = module(inp)
        y = out.data if packed else out
        states = state if isinstance(state, tuple) else (state,)
        gen = torch.Generator(device="cuda").manual_seed(1)
        loss = sum((t * torch.randn(t.shape, generator=gen, device="cuda", dtype=dtype)).sum()
                   for t in (y, *states))
        grads = torch.autograd.grad(loss, [leaf, *module.parameters()])
        return [y, *states, *grads]

    with tf32(False):
        per_direction = run()
        monkeypatch.setattr(_driver, "BIDIR_ONE_OP_DEVICES", frozenset({"cpu", "cuda"}))
        counts = step_launches(run)
        one_op = run()
    assert counts == {"fwd": 2 * 9, "bwd": 2 * 9}  # two layers, one launch per step each
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    for k, (e, a) in enumerate(zip(per_direction, one_op)):
        err = rel_err(a, e)
        print(f"tensor {k}: max |diff| / max |per-direction| {err:.3g}")
        assert err <= tol, k


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_opcheck_cuda(mode, packed):
    opcheck_both_ops(mode, packed, to_device=to_cuda)
