"""The per-step CUDA path under each tile rule (RNNFUSE_STEP_TILE: auto, the
planner of csrc/step_plan.h; small; large; threshold, the rule before the
planner) and each k-chunk of the tensor-core tiles (RNNFUSE_STEP_CHUNK: base,
deep): every rule gives the float64 reference's answer within the dtype's
tolerance, the forced rules really launch the tile they name, and a bad
value is a clear error. Skipped without a GPU.
"""
from __future__ import annotations

import re

import pytest
import torch

import rnnfuse  # noqa: F401 - loads the ops

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

OPS = torch.ops.rnnfuse
RULES = ("auto", "small", "large", "threshold")
# Max error relative to the reference's largest magnitude, over T=6 steps:
# fp64 exact, fp32 exact FMA (TF32 off), bf16 about two roundings.
TOL = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 2e-2}
# GEMM tile rows in a step kernel's name: MmaGemm<scalar, BM, ...> or SimtGemm<BM, ...>.
TILE_ROWS = re.compile(r"(?:Mma|Simt)Gemm<(?:[A-Za-z_][\w:]*, )?(\d+), ")


def layer_args(cell, T, B, H, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    gates = 4 if cell == "LSTM" else 3
    x_proj, w_hh, h0 = rand(T * B, gates * H), rand(gates * H, H, scale=0.3), rand(B, H)
    if cell == "LSTM":
        return (x_proj, w_hh, None, h0, rand(B, H), None, False)
    return (x_proj, w_hh, rand(3 * H), h0, None, False)


def run_layer(cell, args, device):
    """Forward (training) and backward of one layer; outputs, then gradients."""
    args = tuple(a.to(device) if isinstance(a, torch.Tensor) else a for a in args)
    fwd, bwd = (OPS.lstm_fwd, OPS.lstm_bwd) if cell == "LSTM" else (OPS.gru_fwd, OPS.gru_bwd)
    outs = fwd(*args, True)
    gen = torch.Generator().manual_seed(7)
    grads = [torch.randn(t.shape, generator=gen, dtype=torch.float64).to(device, t.dtype)
             for t in outs[:-1]]
    if cell == "LSTM":
        _, w_hh, w_hr, h0, c0, batch_sizes, reverse = args
        back = bwd(*grads, w_hh, w_hr, h0, c0, outs[0], outs[-1], batch_sizes, reverse)
    else:
        _, w_hh, b_hh, h0, batch_sizes, reverse = args
        back = bwd(*grads, w_hh, b_hh, h0, outs[0], outs[-1], batch_sizes, reverse)
    return [*outs[:-1], *(g for g in back if g.numel())]


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("batch", [8, 40, 100])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_every_rule_matches_the_float64_reference(cell, batch, dtype, rule, monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    monkeypatch.setenv("RNNFUSE_STEP_TILE", rule)
    torch.backends.cudnn.allow_tf32 = False
    try:
        args = layer_args(cell, 6, batch, 72, dtype)
        ours = run_layer(cell, args, "cuda")
    finally:
        torch.backends.cudnn.allow_tf32 = True
    ref = run_layer(cell, tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args),
                    "cpu")
    for k, (o, r) in enumerate(zip(ours, ref)):
        scale = max(r.abs().max().item(), 1.0)
        err = (o.double().cpu() - r).abs().max().item() / scale
        print(f"{cell} B={batch} {dtype} {rule}: tensor {k} rel err {err:.3g}")
        assert err <= TOL[dtype], (k, err)


def launched_tile_rows(fn) -> set[int]:
    from torch.profiler import ProfilerActivity, profile
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    rows = set()
    for e in prof.events():
        if "step_kernel" in e.name:
            m = TILE_ROWS.search(e.name)
            assert m, e.name
            rows.add(int(m.group(1)))
    return rows


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_forced_rules_launch_the_tile_they_name(cell, monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    args = layer_args(cell, 3, 8, 64, torch.bfloat16)
    seen = {}
    for rule in ("small", "large", "threshold"):
        monkeypatch.setenv("RNNFUSE_STEP_TILE", rule)
        seen[rule] = launched_tile_rows(lambda: run_layer(cell, args, "cuda"))
    print(seen)
    assert seen == {"small": {16}, "large": {64}, "threshold": {16}}  # 8 rows <= 32: small


# GEMM k-chunk in a tensor-core step kernel's name: MmaGemm<scalar, BM, BN, BK, ...>.
TILE_CHUNK = re.compile(r"MmaGemm<[A-Za-z_][\w:]*, \d+, \d+, (\d+), ")


@pytest.mark.parametrize("rule", ["auto", "small", "large"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_deep_chunks_match_the_float64_reference_and_launch_twice_the_chunk(cell, dtype, rule,
                                                                            monkeypatch):
    from torch.profiler import ProfilerActivity, profile
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    monkeypatch.setenv("RNNFUSE_STEP_TILE", rule)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)  # fp32 on the tensor cores
    args = layer_args(cell, 6, 40, 200, dtype)  # k = 200 / 800: several chunks, a tail
    ref = run_layer(cell, tuple(a.double() if isinstance(a, torch.Tensor) else a for a in args),
                    "cpu")
    chunks = {}
    for chunk in ("base", "deep"):
        monkeypatch.setenv("RNNFUSE_STEP_CHUNK", chunk)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            ours = run_layer(cell, args, "cuda")
            torch.cuda.synchronize()
        chunks[chunk] = {int(m.group(1)) for e in prof.events() if "step_kernel" in e.name
                         for m in [TILE_CHUNK.search(e.name)] if m}
        for k, (o, r) in enumerate(zip(ours, ref)):
            scale = max(r.abs().max().item(), 1.0)
            err = (o.double().cpu() - r).abs().max().item() / scale
            print(f"{cell} {dtype} {rule} {chunk}: tensor {k} rel err {err:.3g}")
            # TF32 operands (2^-11) like bf16's: the bf16 tolerance for both.
            assert err <= TOL[torch.bfloat16], (chunk, k, err)
    print(chunks)
    assert chunks["base"] and chunks["deep"]
    if rule != "auto":  # the planner may pick another tile for the deep twins
        assert {2 * c for c in chunks["base"]} == chunks["deep"]


def test_a_bad_chunk_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    monkeypatch.setenv("RNNFUSE_STEP_CHUNK", "huge")
    with pytest.raises(RuntimeError, match="RNNFUSE_STEP_CHUNK must be base or deep, got 'huge'"):
        run_layer("GRU", layer_args("GRU", 2, 3, 8, torch.float32), "cuda")


def test_a_bad_rule_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    monkeypatch.setenv("RNNFUSE_STEP_TILE", "medium")
    with pytest.raises(RuntimeError, match="RNNFUSE_STEP_TILE must be auto, small, large or "
                                           "threshold, got 'medium'"):
        run_layer("GRU", layer_args("GRU", 2, 3, 8, torch.float32), "cuda")
