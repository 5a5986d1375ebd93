"""The cluster tier's backward kernel on a GPU (sm_90).

Launched directly with a given partition
(rnnfuse::persistent_cuda_cluster_{lstm,gru}_bwd): the partitions the
planner picks at the published point and the quick preset's B=64, TF32,
packed and reverse walks, short last CTAs, every m-tile stride (M = 1, 2, 4,
6).

Fed the CPU's forward (y, workspace), every gradient must be
- as close to the float64 reference as the CPU kernel is, plus one operand
  rounding (the emulator's own criterion, assert_rounding_like_cpu);
- within four roundings of the operand type of the CPU emulation of the same
  partition (test_persistent_emulator_cluster_bwd.py): the GPU's
  activations' derivatives may differ from the CPU's in the last bits, a
  wrong owner, source or order would be off by whole sums;
- bit for bit the same run to run.
The CPU proves the protocol (emulator) and the kernel's code (fibers,
test_persistent_simt_cluster_bwd.py); this is the hardware's word.

Through the driver (RNNFUSE_PERSISTENT=1, RNNFUSE_PERSISTENT_BWD_TIER=cluster
or the planner's choice): the modules' parity with the float64 reference and
cuDNN (every gradient; packed, bidirectional, two layers, TF32), the
bidirectional ops (both directions in one launch), the launch counters
proving the tier ran, the driver's
backward bit for bit the test op's at the plan's partition, the published
point's choice, a clear error for an unknown tier.
"""
from __future__ import annotations

import pytest
import torch

import test_cuda_ops as base
from test_cuda_ops import DEVICE
from test_cuda_persistent import _c, path
from test_cuda_persistent_cluster import cluster_capable, counts
from test_persistent_emulator import EPS, assert_rounding_like_cpu, make_inputs
from test_persistent_emulator_bwd import cast, spec_bwd, with_grads
from test_persistent_emulator_cluster_bwd import emulate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def sm90() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


def on_gpu(cell, a, saved, reverse, J, R, eb):
    d = (lambda t: None if t is None else t.to(DEVICE))  # noqa: E731
    y, ws = (d(t) for t in saved)
    if cell == "LSTM":
        out = OPS.persistent_cuda_cluster_lstm_bwd(d(a["gy"]), d(a["ghn"]), d(a["gcn"]), d(a["w"]),
                                                   d(a["h0"]), d(a["c0"]), y, ws, a["bs"], reverse,
                                                   J, R, eb)
        out = [out[0], out[1], out[3], out[4]]
    else:
        out = list(OPS.persistent_cuda_cluster_gru_bwd(d(a["gy"]), d(a["ghn"]), d(a["w"]),
                                                       d(a["b"]), d(a["h0"]), y, ws, a["bs"],
                                                       reverse, J, R, eb))
    torch.cuda.synchronize()
    return [t.cpu() for t in out]


# (cell, dtype, H, B, T, packed, reverse, J, R): the published point's
# candidate (P=16, R=2, M=6, W in shared memory), the quick preset's GRU
# bf16 B=64 candidate (P=8, R=8, M=4), TF32 (P=16, R=4), M=1 (H=45, packed,
# reverse, 3 replicas), M=2 with a short last CTA.
CASES = [
    ("LSTM", F16, 768, 16, 24, False, False, 48, 2),
    ("GRU", BF16, 512, 64, 12, True, True, 64, 8),
    ("LSTM", F32, 512, 64, 8, True, False, 32, 4),
    ("GRU", F16, 45, 37, 10, True, True, 8, 3),
    ("LSTM", BF16, 200, 9, 8, False, True, 24, 1),
]


@pytest.mark.skipif(not sm90(), reason="the cluster kernels need sm_90")
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace("torch.", ""))
def test_cluster_backward_on_the_gpu(case):
    cell, dtype, H, B, T, packed, reverse, J, R = case
    eb = 4 if dtype == F32 else 2
    a = with_grads(make_inputs(cell, dtype, H, B, T, packed, seed=H + B), cell, dtype, seed=H + B)
    cpu, saved = spec_bwd(cell, a, reverse)
    ref, _ = spec_bwd(cell, cast(a, F64), reverse)
    got = on_gpu(cell, a, saved, reverse, J, R, eb)
    again = on_gpu(cell, a, saved, reverse, J, R, eb)
    emu = emulate(cell, a, saved, reverse, J, R, eb)
    assert_rounding_like_cpu(ref, cpu, got, dtype)
    for k, (g, e, g2) in enumerate(zip(got, emu, again)):
        scale = max(e.double().abs().max().item(), 1e-3)
        err = (g.double() - e.double()).abs().max().item()
        print(f"  out{k}: GPU vs emulator {err:.2e} (scale {scale:.2e})")
        assert err <= 4 * EPS[dtype] * scale, f"out{k}: {err:.3e}"
        assert torch.equal(g, g2), f"out{k}: differs run to run"


@pytest.mark.skipif(not sm90(), reason="the cluster kernels need sm_90")
def test_partitions_it_cannot_run_are_refused():
    a = with_grads(make_inputs("LSTM", F16, 40, 4, 3, False), "LSTM", F16)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="at least two"):
        on_gpu("LSTM", a, saved, False, 40, 1, 2)
    with pytest.raises(RuntimeError, match="elem_bytes"):
        on_gpu("LSTM", a, saved, False, 8, 1, 4)


@pytest.mark.skipif(sm90(), reason="checks the refusal below sm_90")
def test_refused_below_sm90():
    a = with_grads(make_inputs("LSTM", F16, 40, 4, 3, False), "LSTM", F16)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="cannot run clusters"):
        on_gpu("LSTM", a, saved, False, 8, 1, 2)


# ------------------------------------------------------- through the driver
@pytest.fixture
def cluster_backward(monkeypatch):
    """The backward on the cluster tier, the forward on the grid tier (so the
    cluster launch counter counts the backward alone)."""
    if not cluster_capable():
        pytest.skip("no sm_90 cluster kernels on this GPU/build")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "grid")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "cluster")


# Modules (cell, dtype, T, B, I, H): packed with initial states, odd H (the
# last CTA short, M = 1), 2 layers bidirectional in TF32 (the modules run a
# direction per op on CUDA), GRU without bias, B=70 over several replicas.
DRIVER_CASES = [
    _c("LSTM", F16, 24, 16, 32, 256, packed=True, state=True),
    _c("GRU", BF16, 20, 11, 8, 45, packed=True, state=True),
    _c("LSTM", F32, 12, 24, 16, 96, layers=2, bidir=True, tf32=True),
    _c("GRU", F16, 16, 70, 24, 200, bias=False, batch_first=True),
]


@pytest.mark.parametrize("case", DRIVER_CASES, ids=str)
def test_modules_train_through_the_cluster_backward(case, cluster_backward):
    with base.tf32(case.tf32):
        p = path(case.mode, case.dtype, case.H, case.B, case.T)
    print(p)
    assert p["backward_path"] == "persistent-cluster", p
    assert p["backward_plan"]["tier"] == "cluster" and p["path"] == "persistent-grid", p
    launches, clusters = counts()
    base.test_parity_with_reference_and_cudnn(case)
    new_launches, new_clusters = counts()
    passes = case.layers * (2 if case.bidir else 1)
    assert new_clusters - clusters == passes, "every layer-direction's backward on the cluster tier"
    assert new_launches - launches == 2 * passes


# (cell, dtype, H, B, T, packed, reverse): the published point's partition,
# GRU packed reverse over 4 replicas, TF32 packed reverse.
DRIVER_SHAPES = [("LSTM", F16, 768, 16, 20, False, False), ("GRU", BF16, 200, 37, 12, True, True),
                 ("LSTM", F32, 128, 8, 9, True, True)]


@pytest.mark.parametrize("cell, dtype, H, B, T, packed, reverse", DRIVER_SHAPES)
def test_the_driver_runs_the_planned_partition(cell, dtype, H, B, T, packed, reverse,
                                               cluster_backward):
    """The backward op on CUDA (the modules' autograd backward) takes the
    cluster backward with the plan's (J, R): bit for bit what the test op
    gives with that partition, one cluster launch (the test op counts none)."""
    eb = 4 if dtype == F32 else 2
    a = with_grads(make_inputs(cell, dtype, H, B, T, packed, seed=7), cell, dtype, seed=7)
    _, saved = spec_bwd(cell, a, reverse)
    with base.tf32(True):
        plan = path(cell, dtype, H, B, T)["backward_plan"]
        assert plan["tier"] == "cluster", plan
        d = (lambda t: None if t is None else t.to(DEVICE))  # noqa: E731
        y, ws = (d(t) for t in saved)
        _, before = counts()
        if cell == "LSTM":
            out = OPS.lstm_bwd(d(a["gy"]), d(a["ghn"]), d(a["gcn"]), d(a["w"]), None, d(a["h0"]),
                               d(a["c0"]), y, ws, a["bs"], reverse)
            got = [out[0], out[1], out[3], out[4]]
        else:
            got = list(OPS.gru_bwd(d(a["gy"]), d(a["ghn"]), d(a["w"]), d(a["b"]), d(a["h0"]), y,
                                   ws, a["bs"], reverse))
        torch.cuda.synchronize()
        assert counts()[1] - before == 1
        direct = on_gpu(cell, a, saved, reverse, plan["J"], plan["R"], eb)
        assert counts()[1] - before == 1
    for k, (g, e) in enumerate(zip(got, direct)):
        assert torch.equal(g.cpu(), e), f"out{k}: the driver's backward differs from the test op's"


@pytest.mark.parametrize("mode, dtype, allow_tf32, packed", [
    ("LSTM", BF16, True, True), ("GRU", F16, True, False), ("GRU", F32, True, True)],
    ids=["lstm-bf16-packed", "gru-f16", "gru-tf32-packed"])
def test_bidirectional_ops_through_the_cluster_backward(mode, dtype, allow_tf32, packed,
                                                        cluster_backward, monkeypatch):
    """The bidirectional ops' backward on the cluster tier as
    recurrence_path(directions=2) plans it (both directions' clusters in one
    launch where that models no slower, else one launch each): exactly the
    launches it names, all on the cluster tier, and the per-step ops'
    results at bf16 level (3e-2 of the largest value)."""
    from test_cuda_persistent import _bidir_ops
    from test_persistent_emulator_cluster_bwd import bidir_case
    H, B, T = 96, 24, 12
    a, _, _ = bidir_case(mode, F64, H, B, T, packed, seed=5)
    a = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and k != "bs" else v) for k, v in a.items()}
    with base.tf32(allow_tf32):
        p = path(mode, dtype, H, B, T, runs=len(set(a["bs"].tolist())) if packed else 1,
                 directions=2)
        print(p)
        assert p["backward_path"].startswith("persistent-cluster"), p
        want = (p["launches_per_call"], p["backward_launches"])
        _, before = counts()
        got, ran = _bidir_ops(mode, a, True, monkeypatch)
        cluster = counts()[1] - before
        ref, ran_ref = _bidir_ops(mode, a, False, monkeypatch)
    assert ran == want and ran_ref == (0, 0), (ran, want)
    assert cluster == want[1], "the backward's launches on the cluster tier, the forward's not"
    for k, (g, r) in enumerate(zip(got, ref)):
        scale = max(r.abs().max().item(), 1.0)
        err = ((g.double() - r.double()).abs() / scale).max().item()
        print(f"  out{k}: persistent vs per-step {err:.2e}")
        assert err <= 3e-2, f"out{k}: {err:.3e}"


def test_the_published_point_takes_the_cluster_backward(monkeypatch):
    """LSTM fp16 H=768 B=16 with both tiers left to the planner: on an
    H100/H200 the forward and the backward take the cluster tier (16-CTA
    clusters of 48 units, 2 replicas, for the backward), and training
    matches the reference rule with two cluster launches (T=64 to keep the
    file fast)."""
    if not cluster_capable():
        pytest.skip("no sm_90 cluster kernels on this GPU/build")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.delenv("RNNFUSE_PERSISTENT_TIER", raising=False)
    monkeypatch.delenv("RNNFUSE_PERSISTENT_BWD_TIER", raising=False)
    p = path("LSTM", F16, 768, 16, 64)
    print(p)
    if torch.cuda.get_device_properties(0).multi_processor_count >= 132:
        assert p["backward_path"] == "persistent-cluster", p
        q = p["backward_plan"]
        assert (q["P"], q["J"], q["R"]) == (16, 48, 2), q
    if p["backward_path"] == "persistent-cluster":
        _, before = counts()
        base.test_parity_with_reference_and_cudnn(_c("LSTM", F16, 64, 16, 64, 768))
        assert counts()[1] - before == 1 + (p["path"] == "persistent-cluster")


def test_unknown_backward_tier_is_an_error(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "clusters")
    with pytest.raises(RuntimeError, match="RNNFUSE_PERSISTENT_BWD_TIER"):
        path("LSTM", BF16, 256, 16, 50)
