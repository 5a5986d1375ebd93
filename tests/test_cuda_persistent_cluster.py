"""The persistent cluster tier's forward on a GPU (sm_90; RNNFUSE_PERSISTENT=1
and, where a test must exercise it, RNNFUSE_PERSISTENT_TIER=cluster): parity
with the float64 reference under the cuDNN-relative rule (outputs and every
gradient; the backward takes the grid tier where planned,
RNNFUSE_PERSISTENT_BWD_TIER=grid), packed,
bidirectional, two layers, fp16/bf16/TF32, odd H (words padded past H, plain
x_proj loads), several chunks per step; the launch counters prove the tier
ran; bitwise equality with the grid tier (the same slices, the same
arithmetic) and run to run; CUDA graph capture; streams at once; the
planner's choice at the issue's point; clear fallbacks.

Every test needs CUDA (module-level skip); those that need the cluster
kernels skip on GPUs without them (sm_80), where one test checks the tier is
never chosen. The CPU proves the protocol in test_persistent_emulator_cluster.py.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse
import test_cuda_ops as base
from test_cuda_ops import BF16, DEVICE, F16, F32, tf32
from test_cuda_persistent import _c, _run, path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cluster_capable() -> bool:
    return (torch.cuda.get_device_capability()[0] >= 9
            and path("LSTM", BF16, 64, 8, 10)["cluster_kernels"])


def counts():
    p = path("LSTM", BF16, 8, 1, 8)
    return p["launches"], p["cluster_launches"]


@pytest.fixture
def cluster_tier(monkeypatch):
    if not cluster_capable():
        pytest.skip("no sm_90 cluster kernels on this GPU/build")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "cluster")
    # The backward on the grid tier, as these tests expect (the cluster
    # tier's backward has its own file, test_cuda_persistent_cluster_bwd.py).
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "grid")


# Odd H (GRU 45: pad element in the last CTA's words, plain x_proj loads),
# reverse joiners from h0, B=600 over at most 16 replicas (several chunks of
# 32 rows per step), 2 layers, TF32.
CASES = [
    _c("LSTM", BF16, 7, 3, 10, 40, bidir=True, packed=True, state=True),
    _c("LSTM", F16, 60, 16, 32, 256, state=True),
    _c("LSTM", F32, 30, 24, 16, 96, layers=2, bidir=True),
    _c("LSTM", F16, 5, 600, 8, 64, packed=True),
    _c("GRU", BF16, 7, 3, 10, 45, bidir=True, packed=True, state=True),
    _c("GRU", F16, 60, 16, 32, 256, state=True, bias=False),
    _c("GRU", F32, 30, 24, 16, 96, layers=2, bidir=True, packed=True),
    _c("GRU", BF16, 20, 70, 8, 200, state=True, batch_first=True),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity_on_the_cluster_tier(case, cluster_tier):
    p = path(case.mode, case.dtype, case.H, case.B, case.T)
    print(p)
    assert p["path"] == "persistent-cluster", p
    backward = p["backward_path"] == "persistent-grid"
    launches, clusters = counts()
    base.test_parity_with_reference_and_cudnn(case)
    new_launches, new_clusters = counts()
    directions = case.layers * (2 if case.bidir else 1)
    assert new_clusters - clusters == directions, "every layer-direction on the cluster tier"
    assert new_launches - launches == directions * (2 if backward else 1)


# The pipelined push where it is hardest: packed (the batch shrinks, so the
# continuing rows can all lie in an earlier chunk than the last one read),
# several chunks of 32 rows per replica and at least 3 slices per CTA; GRU
# fp32 with 10 words per slice (16-byte stores in the middle, words at the
# ends).
PUSH_CASES = [
    _c("LSTM", BF16, 6, 300, 8, 384, packed=True, state=True),
    _c("GRU", F32, 6, 300, 8, 200, packed=True, tf32=True),
]


@pytest.mark.parametrize("case", PUSH_CASES, ids=str)
def test_pipelined_push_over_several_chunks(case, cluster_tier):
    with tf32(case.tf32):
        p = path(case.mode, case.dtype, case.H, case.B, case.T)
    print(p)
    assert p["path"] == "persistent-cluster", p
    plan = p["plan"]
    assert plan["push"] == "slice" and plan["NG"] >= 3, plan
    assert -(-case.B // plan["R"]) > plan["chunk"], f"one chunk per replica: {plan}"
    base.test_parity_with_reference_and_cudnn(case)


@pytest.mark.parametrize("mode, dtype", [("LSTM", BF16), ("GRU", F16), ("LSTM", F32)])
def test_bitwise_equal_to_the_grid_tier(mode, dtype, cluster_tier, monkeypatch):
    """The cluster kernel runs the grid kernel's slices with the same
    functions: with the same units per slice the outputs agree to the bit."""
    torch.manual_seed(3)
    cls = rnnfuse.LSTM if mode == "LSTM" else rnnfuse.GRU
    model = cls(24, 200, device=DEVICE, dtype=dtype)
    x = torch.randn(40, 24, 24, device=DEVICE, dtype=dtype)
    lengths = torch.randint(1, 41, (24,))
    lengths[0] = 40
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=False)
    plans = {}
    outs = {}
    # The cluster tier with its pipelined push and with every push at the
    # step's end (RNNFUSE_CLUSTER_PUSH=step): when peers may read h changes,
    # never what they read.
    for name, tier, push in (("grid", "grid", None), ("cluster", "cluster", None),
                             ("cluster-step-push", "cluster", "step")):
        monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", tier)
        if push is None:
            monkeypatch.delenv("RNNFUSE_CLUSTER_PUSH", raising=False)
        else:
            monkeypatch.setenv("RNNFUSE_CLUSTER_PUSH", push)
        with tf32(True), torch.no_grad():  # fp32 runs as TF32 on both tiers
            plans[name] = path(mode, dtype, 200, 24, 40)
            assert plans[name]["path"] == f"persistent-{tier}", plans[name]
            outs[name] = [_run(model, x), _run(model, packed)]
    assert plans["grid"]["plan"]["J"] == plans["cluster"]["plan"]["J"]
    assert plans["cluster"]["plan"]["push"] == "slice"
    assert plans["cluster-step-push"]["plan"]["push"] == "step"
    for name in ("cluster", "cluster-step-push"):
        for a, b in zip(outs["grid"], outs[name]):
            for u, v in zip(a, b):
                u = u.data if hasattr(u, "batch_sizes") else u
                v = v.data if hasattr(v, "batch_sizes") else v
                assert torch.equal(u, v), f"grid tier and {name} differ: {base.where(u != v)}"


@pytest.mark.parametrize("mode, dtype, H, P", [("LSTM", BF16, 200, 7), ("GRU", F16, 400, 8)])
def test_slice_groups_give_the_grid_tiers_bits(mode, dtype, H, P, cluster_tier, monkeypatch):
    """Groups of 1, 2 and 4 slices per bracket (RNNFUSE_PERSISTENT_PIN;
    LSTM H=200: 4 slices per CTA in clusters of 7; GRU H=400: 5, so the
    groups of 4 end with a short one), padded and packed, 8 rows (chunks of
    one n-tile): every output bit for bit the grid tier's."""
    torch.manual_seed(5)
    cls = rnnfuse.LSTM if mode == "LSTM" else rnnfuse.GRU
    model = cls(24, H, device=DEVICE, dtype=dtype)
    x = torch.randn(40, 8, 24, device=DEVICE, dtype=dtype)
    lengths = torch.tensor([40, 39, 33, 20, 20, 7, 2, 1])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "grid")
    with torch.no_grad():
        assert path(mode, dtype, H, 8, 40)["path"] == "persistent-grid"
        ref = [_run(model, x), _run(model, packed)]
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "cluster")
    for group in (1, 2, 4):
        monkeypatch.setenv("RNNFUSE_PERSISTENT_PIN", f"P={P},group={group}")
        p = path(mode, dtype, H, 8, 40)
        print(p)
        assert p["path"] == "persistent-cluster" and p["plan"]["group"] == group, p
        with torch.no_grad():
            outs = [_run(model, x), _run(model, packed)]
        for a, b in zip(ref, outs):
            for u, v in zip(a, b):
                u = u.data if hasattr(u, "batch_sizes") else u
                v = v.data if hasattr(v, "batch_sizes") else v
                assert torch.equal(u, v), f"group {group} differs: {base.where(u != v)}"


def test_bitwise_deterministic(cluster_tier):
    torch.manual_seed(4)
    model = rnnfuse.LSTM(32, 256, device=DEVICE, dtype=BF16)
    x = torch.randn(80, 16, 32, device=DEVICE, dtype=BF16)
    with torch.no_grad():
        a, b = _run(model, x), _run(model, x)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_cuda_graph_capture_and_replay(cluster_tier):
    """cudaLaunchKernelEx with the cluster attribute records as a kernel node."""
    torch.manual_seed(1)
    model = rnnfuse.GRU(16, 128, num_layers=2, device=DEVICE, dtype=F16)
    static_x = torch.randn(40, 8, 16, device=DEVICE, dtype=F16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):
            _run(model, static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    _, before = counts()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = _run(model, static_x)
    assert counts()[1] - before == 2, "both layers captured on the cluster tier"
    for trial in range(2):
        static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            eager = _run(model, static_x)
        for e, r in zip(eager, static_out):
            assert torch.equal(e, r), f"trial {trial}: replay differs from eager"


def test_streams_at_once_cluster_and_grid(cluster_tier, monkeypatch):
    """Two cluster launches and a cooperative grid launch on three streams,
    none waiting for the others: clusters never wait on anything outside
    themselves (a hang would trip the watchdog instead of passing)."""
    torch.manual_seed(2)
    models = [rnnfuse.LSTM(16, 512, device=DEVICE, dtype=BF16),
              rnnfuse.GRU(16, 256, device=DEVICE, dtype=BF16),
              rnnfuse.LSTM(16, 384, device=DEVICE, dtype=BF16)]
    tiers = ["cluster", "cluster", "grid"]
    xs = [torch.randn(200, 16, 16, device=DEVICE, dtype=BF16) for _ in models]
    with torch.no_grad():
        expected = []
        for m, x, tier in zip(models, xs, tiers):
            monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", tier)
            expected.append(_run(m, x))
        torch.cuda.synchronize()
        streams = [torch.cuda.Stream() for _ in models]
        outs = []
        for s, m, x, tier in zip(streams, models, xs, tiers):
            monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", tier)
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                outs.append(_run(m, x))
        torch.cuda.synchronize()
    for e, o in zip(expected, outs):
        for u, v in zip(e, o):
            assert torch.equal(u, v)


def test_issue_point_takes_the_cluster_tier(monkeypatch):
    """LSTM H=768, B=16 (FlashRNN's point), fp16, T=256 to keep the file fast:
    with the tier left to the planner, an H100/H200 takes the cluster tier
    (two replicas of one 16-CTA cluster) and it matches the reference rule."""
    if not cluster_capable():
        pytest.skip("no sm_90 cluster kernels on this GPU/build")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.delenv("RNNFUSE_PERSISTENT_TIER", raising=False)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "grid")  # counts the forward's clusters
    p = path("LSTM", F16, 768, 16, 256)
    print(p)
    if torch.cuda.get_device_properties(0).multi_processor_count >= 132:
        assert p["path"] == "persistent-cluster", p
        assert (p["plan"]["P"], p["plan"]["NG"], p["plan"]["R"]) == (16, 6, 2)
    if p["path"] == "persistent-cluster":
        _, before = counts()
        base.test_parity_with_reference_and_cudnn(_c("LSTM", F16, 256, 16, 64, 768))
        assert counts()[1] - before == 1


def test_forced_cluster_that_does_not_fit_runs_per_step(cluster_tier):
    p = path("LSTM", BF16, 1024, 16, 50)
    assert p["path"] == "per-step" and "does not fit one cluster" in p["plan"]["reason"], p
    launches, _ = counts()
    lstm = rnnfuse.LSTM(8, 1024, device=DEVICE, dtype=BF16)
    with torch.no_grad():
        lstm(torch.randn(50, 16, 8, device=DEVICE, dtype=BF16))
    torch.cuda.synchronize()
    assert counts()[0] == launches


def test_unknown_tier_is_an_error(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "clusters")
    with pytest.raises(RuntimeError, match="RNNFUSE_PERSISTENT_TIER"):
        path("LSTM", BF16, 256, 16, 50)


def test_unknown_push_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_CLUSTER_PUSH", "eventually")
    with pytest.raises(RuntimeError, match="RNNFUSE_CLUSTER_PUSH"):
        path("LSTM", BF16, 64, 8, 10)


def test_never_on_gpus_without_clusters(monkeypatch):
    """On sm_80 (or a build without sm_90 code) no shape takes the tier."""
    if cluster_capable():
        pytest.skip("this GPU has the cluster kernels")
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    for mode in ("LSTM", "GRU"):
        for H in (64, 256, 768):
            assert path(mode, BF16, H, 16, 100)["path"] != "persistent-cluster"
