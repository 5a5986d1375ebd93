"""The persistent grid tier on a GPU (RNNFUSE_PERSISTENT=1,
RNNFUSE_PERSISTENT_TIER=grid; the cluster tier has its own file,
test_cuda_persistent_cluster.py): parity with the
float64 reference under the cuDNN-relative rule of test_cuda_ops (outputs and
every gradient, through the persistent forward and, where planned, the
persistent backward), packed, bidirectional, every dtype it takes;
that the tier really ran (launch counter), bitwise determinism, agreement
with the per-step path, CUDA graph capture, two streams at once.

Every test needs a GPU (module-level skip); the CPU proves the decomposition
in test_persistent_emulator.py and the planner in test_persistent_plan.py.
"""
from __future__ import annotations

import json

import pytest
import torch

import rnnfuse
import test_cuda_ops as base
from test_cuda_ops import BF16, DEVICE, F16, F32, Case, tf32

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
OPS = torch.ops.rnnfuse


@pytest.fixture
def persistent(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "grid")  # on sm_90 the cluster tier would win
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "grid")  # the backward's too


def path(mode, dtype, H, B, T, proj=0, runs=1, directions=1):
    like = torch.empty(1, device=DEVICE, dtype=dtype)
    return json.loads(OPS.recurrence_path(like, mode, H, B, T, proj, runs, directions))


def launches():
    return path("LSTM", BF16, 8, 1, 8)["launches"]


def _c(mode, dtype, T, B, I, H, **kw):
    kw.setdefault("tf32", dtype == F32)
    return Case(mode, dtype, T, B, I, H, **kw)


# Odd H (no 16-byte gathers), B above one 32-row chunk and above 8 (replicas),
# packed + bidirectional + 2 layers, reverse joiners from h0, long T.
CASES = [
    _c("LSTM", BF16, 7, 3, 10, 40, bidir=True, packed=True, state=True),
    _c("LSTM", F16, 100, 16, 32, 256, state=True),
    _c("LSTM", F32, 50, 64, 16, 96, layers=2, bidir=True),
    _c("LSTM", BF16, 20, 70, 8, 200, packed=True, state=True, batch_first=True),
    _c("LSTM", F16, 9, 300, 8, 64, layers=2, bidir=True, packed=True),
    _c("LSTM", BF16, 300, 8, 64, 768),
    _c("GRU", BF16, 7, 3, 10, 45, bidir=True, packed=True, state=True),
    _c("GRU", F16, 100, 16, 32, 256, state=True, bias=False),
    _c("GRU", F32, 50, 64, 16, 96, layers=2, bidir=True, packed=True),
    _c("GRU", BF16, 20, 70, 8, 200, state=True),
    _c("GRU", F16, 9, 300, 8, 64, bidir=True),
    # The backward gathers 16 rows of 4H per round (32 do not fit): 2 replicas
    # of 20 rows, so 16 + 4 per step.
    _c("LSTM", BF16, 12, 40, 16, 1024),
    # fp32 with TF32 off: the exact-FMA kernels (H=512 LSTM: the backward's 16 rows).
    _c("LSTM", F32, 50, 64, 16, 96, layers=2, bidir=True, tf32=False),
    _c("LSTM", F32, 100, 8, 64, 512, state=True, tf32=False),
    _c("GRU", F32, 20, 70, 8, 200, packed=True, state=True, tf32=False),
    _c("GRU", F32, 9, 300, 8, 64, bidir=True, tf32=False),
    # fp32 above G*H = 2048: the backward splits K over 2 or 4 CTAs per unit group.
    _c("LSTM", F32, 20, 16, 16, 1024),
    _c("LSTM", F32, 10, 70, 8, 768, state=True, tf32=False),
    _c("GRU", F32, 12, 40, 8, 768, packed=True, tf32=False),
    # H = 1024 at B <= 16 (issue 8's small-batch criterion): chunks of one
    # n-tile, the forward's one-n-tile MMA loops at 4 m-tiles (fp16, 2
    # replicas of 8 rows) and at 2 (TF32); the backward's K split over 4 CTAs.
    _c("LSTM", F16, 16, 16, 32, 1024),
    _c("GRU", F32, 12, 8, 16, 1024),
]


def math_of(case):
    return "mma16" if case.dtype != F32 else "tf32" if case.tf32 else "fma"


@pytest.mark.parametrize("case", CASES, ids=str)
def test_parity_on_the_persistent_tier(case, persistent):
    with tf32(case.tf32):
        p = path(case.mode, case.dtype, case.H, case.B, case.T)
    print(p)
    assert p["enabled"] and p["path"] == "persistent-grid", p
    assert p["plan"]["math"] == math_of(case), p["plan"]
    backward = p["backward_path"] == "persistent-grid"
    before = launches()
    base.test_parity_with_reference_and_cudnn(case)
    ran = launches() - before
    want = case.layers * (2 if case.bidir else 1) * (2 if backward else 1)
    assert ran == want, f"{ran} persistent launches, expected {want} (backward: {backward})"


def test_the_backward_takes_the_persistent_tier_in_most_cases(persistent):
    """The parity cases above exercise the persistent backward too (the
    launch counts say which ran); on an H100/H200 all of them plan it."""
    took = [path(c.mode, c.dtype, c.H, c.B, c.T)["backward_path"] == "persistent-grid"
            for c in CASES]
    print(took)
    if torch.cuda.get_device_properties(0).multi_processor_count >= 132:
        assert all(took)
    assert any(took)


def fp32_layer_inputs(mode, H, B, T, seed):
    """A layer-direction's CPU fp32 operands: x_proj, W_hh, h0, and c0 (LSTM)
    or b_hh (GRU)."""
    torch.manual_seed(seed)
    G = 4 if mode == "LSTM" else 3
    x = torch.randn(T * B, G * H, dtype=F32)
    w = torch.randn(G * H, H, dtype=F32) * H ** -0.5
    h0 = torch.randn(B, H, dtype=F32) * 0.5
    extra = torch.randn(B, H, dtype=F32) * 0.5 if mode == "LSTM" else torch.randn(G * H, dtype=F32) * 0.3
    return x, w, h0, extra


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_exact_fp32_matches_its_cpu_emulation(mode, persistent):
    """TF32 off: the kernel's recurrent sums are the emulator's FMAs in the
    same order, so the GPU's outputs differ from the CPU emulation of the
    same partition only by the activations' last bits (CUDA's expf/tanhf vs
    the CPU's) carried through the steps: within 2e-5, where a TF32 product
    would be ~1e-3 off."""
    H, B, T = 200, 40, 30
    x, w, h0, extra = fp32_layer_inputs(mode, H, B, T, seed=3)
    with tf32(False):
        p = path(mode, F32, H, B, T)
        assert p["path"] == "persistent-grid" and p["plan"]["math"] == "fma", p
        before = launches()
        cuda = [v.to(DEVICE) for v in (x, w, h0, extra)]
        if mode == "LSTM":
            got = OPS.lstm_fwd(cuda[0], cuda[1], None, cuda[2], cuda[3], None, False, True)
        else:
            got = OPS.gru_fwd(cuda[0], cuda[1], cuda[3], cuda[2], None, False, True)
        torch.cuda.synchronize()
        assert launches() == before + 1
    q = p["plan"]
    if mode == "LSTM":
        emu = OPS.persistent_emulate_lstm(x, w, h0, extra, None, False, True, q["J"], q["R"],
                                          q["hbuf_rows"], 4, 0, 0, True)
    else:
        emu = OPS.persistent_emulate_gru(x, w, extra, h0, None, False, True, q["J"], q["R"],
                                         q["hbuf_rows"], 4, 0, 0, True)
    for k, (g, e) in enumerate(zip(got, emu)):
        diff = (g.cpu() - e).abs()
        err = diff.max().item()
        print(f"  out{k}: GPU vs emulator {err:.2e}")
        assert err <= 2e-5, f"out{k}: {err:.3e} ({base.where(diff > 2e-5)})"


@pytest.mark.parametrize("dtype, allow_tf32", [(BF16, False), (F32, False), (F32, True)],
                         ids=["bf16", "fp32", "tf32"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_wide_forward_ctas_give_the_bits_of_a_slice(mode, dtype, allow_tf32, persistent,
                                                    monkeypatch):
    """A forward CTA of 16 units (4 LSTM or 3 GRU m-tiles, all at once: the
    MMAs 2 n-tiles a pass, the exact-fp32 FMAs 4 columns) gathers h once for
    twice a slice's units. Its sums are the same
    k-tiles in the same order as a slice's (the emulator's rule:
    test_wide_ctas_give_the_bits_of_a_slice), so the GPU's training forward
    (y, h_n, c_n, workspace) equals the slice partition's bit for bit, each
    in one persistent launch with the plan's m-tiles."""
    H, B, T = 256, 40, 9  # two 32-row chunks per step
    x, w, h0, extra = fp32_layer_inputs(mode, H, B, T, seed=11)
    d = lambda t: t.to(DEVICE, dtype)  # noqa: E731
    outs = {}
    with tf32(allow_tf32):
        for J, mt in ((8 if mode == "LSTM" else 10, 2), (16, 4 if mode == "LSTM" else 3)):
            monkeypatch.setenv("RNNFUSE_PERSISTENT_PIN", f"J={J},R=1")
            q = path(mode, dtype, H, B, T)["plan"]
            assert q["tier"] == "grid" and (q["J"], q["MT"]) == (J, mt), q
            before = launches()
            if mode == "LSTM":
                outs[J] = OPS.lstm_fwd(d(x), d(w), None, d(h0), d(extra), None, False, True)
            else:
                outs[J] = OPS.gru_fwd(d(x), d(w), d(extra), d(h0), None, False, True)
            torch.cuda.synchronize()
            assert launches() - before == 1, f"J={J}: not one persistent launch"
    slice_j, wide = outs.values()
    for k, (a, b) in enumerate(zip(slice_j, wide)):
        assert torch.equal(a, b), (f"out{k}: J=16 differs from the slice's, max "
                                   f"{(a.float() - b.float()).abs().max().item():.3e}")


def _layer_bwd_on_gpu(mode, dtype, H, B, T, seed):
    """A layer-direction's forward (training) then backward ops on CUDA in
    `dtype`: the backward's outputs, the persistent launches the backward
    made, and its CPU inputs (x, w, h0, c0 or b, gy, ghn, gcn) with the GPU
    forward's y and workspace."""
    x, w, h0, extra = fp32_layer_inputs(mode, H, B, T, seed)
    gy, ghn, gcn = torch.randn(T * B, H), torch.randn(B, H), torch.randn(B, H)
    d = lambda t: t.to(DEVICE, dtype)  # noqa: E731
    if mode == "LSTM":
        y, _, _, ws = OPS.lstm_fwd(d(x), d(w), None, d(h0), d(extra), None, False, True)
        before = launches()
        out = OPS.lstm_bwd(d(gy), d(ghn), d(gcn), d(w), None, d(h0), d(extra), y, ws, None, False)
        got = [out[0], out[1], out[3], out[4]]
    else:
        y, _, ws = OPS.gru_fwd(d(x), d(w), d(extra), d(h0), None, False, True)
        before = launches()
        got = list(OPS.gru_bwd(d(gy), d(ghn), d(w), d(extra), d(h0), y, ws, None, False))
    torch.cuda.synchronize()
    return got, launches() - before, (x, w, h0, extra, gy, ghn, gcn, y, ws)


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_split_k_backward_matches_its_cpu_emulation(mode, persistent):
    """fp32 with TF32 off above G*H = 2048: the backward's K split over CTAs
    (partial sums through global memory, added in part order). Fed the
    GPU's own forward (y, workspace), the GPU backward differs from the CPU
    emulation of the same plan only by the last bits of the activations'
    derivatives carried through the steps: within 2e-5 of the outputs' scale,
    where a wrong part, slot or order would be off by the sums themselves."""
    H, B, T = 768, 40, 12
    with tf32(False):
        p = path(mode, F32, H, B, T)
        q = p["backward_plan"]
        assert p["backward_path"] == "persistent-grid" and q["ksplit"] >= 2 and q["math"] == "fma", p
        got, n, (x, w, h0, extra, gy, ghn, gcn, y, ws) = _layer_bwd_on_gpu(mode, F32, H, B, T, 5)
        assert n == 1, "the backward did not run persistent"
    y, ws = y.cpu(), ws.cpu()
    args = (q["J"], q["R"], q["hbuf_rows"], 4, 0, 0, True, q["ksplit"])
    if mode == "LSTM":
        e = OPS.persistent_emulate_lstm_bwd(gy, ghn, gcn, w, h0, extra, y, ws, None, False, *args)
        emu = [e[0], e[1], e[3], e[4]]
    else:
        emu = list(OPS.persistent_emulate_gru_bwd(gy, ghn, w, extra, h0, y, ws, None, False, *args))
    for k, (g, e) in enumerate(zip(got, emu)):
        scale = max(e.abs().max().item(), 1.0)
        diff = (g.cpu() - e).abs()
        err = diff.max().item()
        print(f"  out{k}: GPU vs emulator {err:.2e} (scale {scale:.2e})")
        assert err <= 2e-5 * scale, f"out{k}: {err:.3e} ({base.where(diff > 2e-5 * scale)})"


@pytest.mark.parametrize("dtype, allow_tf32", [(BF16, False), (F32, False), (F32, True)],
                         ids=["bf16", "fp32", "tf32"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_wide_backward_ctas_give_the_bits_of_their_k_split(mode, dtype, allow_tf32, persistent,
                                                           monkeypatch):
    """J = 32 and 64 units per backward CTA (2 and 4 m-tiles, K split 2 and
    4 ways) gather fewer bytes per step. A CTA's output sums are the same
    k-tiles in the same order whatever its units (the emulator's rule:
    test_partitions_of_one_k_split_give_the_same_bits), so the GPU's
    backward equals the J = 16 partition of the same K split bit for bit,
    each in one persistent launch with the plan's m-tiles."""
    H, B, T = 256, 40, 9  # two 32-row chunks per step; G*H / S k-tiles per part
    with tf32(allow_tf32):
        for S, wide in ((2, 32), (4, 64)):
            outs = {}
            for J in (16, wide):
                monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_PIN", f"J={J},ksplit={S},R=1")
                q = path(mode, dtype, H, B, T)["backward_plan"]
                assert q["tier"] == "grid" and (q["J"], q["ksplit"], q["MT"]) == (J, S, -(-J // 16)), q
                outs[J], n, _ = _layer_bwd_on_gpu(mode, dtype, H, B, T, seed=S)
                assert n == 1, f"J={J} S={S}: {n} persistent launches"
            for k, (a, b) in enumerate(zip(outs[16], outs[wide])):
                assert a is not None and torch.equal(a, b), (
                    f"S={S} out{k}: J=16 vs J={wide} differ, max "
                    f"{(a.float() - b.float()).abs().max().item():.3e}")


def _bidir_ops(mode, a, persistent_on, monkeypatch):
    """The bidirectional ops forward (training) and backward on CUDA: outputs,
    gradients, and the persistent launches each made."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1" if persistent_on else "0")
    c = {k: (v.to(DEVICE) if isinstance(v, torch.Tensor) and k != "bs" else v) for k, v in a.items()}
    n0 = launches()
    if mode == "LSTM":
        fwd = OPS.lstm_bidir_fwd(c["x"], c["w"], c["w_rev"], None, None, c["h0"], c["c0"], c["bs"], True)
        n1 = launches()
        bwd = OPS.lstm_bidir_bwd(c["gy"], c["ghn"], c["gcn"], c["w"], c["w_rev"], None, None, c["h0"],
                                 c["c0"], fwd[0], fwd[3], c["bs"])
    else:
        fwd = OPS.gru_bidir_fwd(c["x"], c["w"], c["w_rev"], c["b"], c["b_rev"], c["h0"], c["bs"], True)
        n1 = launches()
        bwd = OPS.gru_bidir_bwd(c["gy"], c["ghn"], c["w"], c["w_rev"], c["b"], c["b_rev"], c["h0"],
                                fwd[0], fwd[2], c["bs"])
    torch.cuda.synchronize()
    outs = [t for t in list(fwd[:-1]) + list(bwd) if t is not None and t.numel()]
    return outs, (n1 - n0, launches() - n1)


@pytest.mark.parametrize("tier", ["grid", "cluster", "auto"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("mode, dtype, allow_tf32", [
    ("LSTM", BF16, True), ("GRU", F16, True), ("LSTM", F32, False), ("GRU", F32, False),
    ("GRU", F32, True)], ids=["lstm-bf16", "gru-f16", "lstm-f32", "gru-f32", "gru-tf32"])
def test_bidirectional_ops_in_one_launch(mode, dtype, allow_tf32, packed, tier, monkeypatch):
    """The bidirectional ops (one (N, 2*G*H) projection, one (N, 2*H)
    output, column blocks per direction) run on the persistent tier as
    recurrence_path(directions=2) plans it: with the grid tier alone, both
    directions in one launch forward and one backward; with the cluster tier
    (sm_90) for the forward, both directions' clusters in one launch; with
    every tier, exactly the launches it names. Either way they agree with the
    same ops on the
    per-step kernels: at bf16/fp16 level (3e-2 of the largest value) for
    16-bit and TF32, 1e-4 for exact fp32 (different summation orders)."""
    from test_persistent_emulator import make_bidir_inputs
    H, B, T = 96, 24, 12
    a = make_bidir_inputs(mode, torch.float64, H, B, T, packed, seed=5)
    gen = torch.Generator().manual_seed(6)
    a["gy"] = torch.randn(a["x"].shape[0], 2 * H, generator=gen, dtype=torch.float64)
    a["ghn"] = torch.randn(2, B, H, generator=gen, dtype=torch.float64)
    if mode == "LSTM":
        a["gcn"] = torch.randn(2, B, H, generator=gen, dtype=torch.float64)
    a = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and k != "bs" else v) for k, v in a.items()}
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", tier)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "grid")  # the forward's tiers under test
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    if tier == "cluster" and ((dtype == F32 and not allow_tf32)
                              or torch.cuda.get_device_capability()[0] < 9
                              or not path(mode, dtype, H, B, T)["cluster_kernels"]):
        pytest.skip("the cluster tier: sm_90 and its kernels built; no exact fp32")
    with tf32(allow_tf32):
        p = path(mode, dtype, H, B, T, runs=len(set(a["bs"].tolist())) if packed else 1,
                 directions=2)
        print(p)
        if tier == "grid":
            assert (p["path"], p["backward_path"]) == ("persistent-grid",) * 2, p
            assert p["plan"]["directions"] == 2 and p["backward_plan"]["directions"] == 2
        if tier == "cluster":
            assert p["path"] == "persistent-cluster" and p["plan"]["directions"] == 2, p
        want = (p["launches_per_call"], p["backward_launches"])
        assert min(want) >= 1, p
        cluster_before = path(mode, dtype, H, B, T)["cluster_launches"]
        got, ran = _bidir_ops(mode, a, True, monkeypatch)
        cluster = path(mode, dtype, H, B, T)["cluster_launches"] - cluster_before
        ref, ran_ref = _bidir_ops(mode, a, False, monkeypatch)
    assert ran == want, f"persistent launches (forward, backward): {ran}, planned {want}"
    assert cluster == (want[0] if "cluster" in p["path"] else 0), (cluster, p["path"])
    assert ran_ref == (0, 0)
    tol = 1e-4 if dtype == F32 and not allow_tf32 else 3e-2
    for k, (g, r) in enumerate(zip(got, ref)):
        scale = max(r.abs().max().item(), 1.0)
        diff = (g.double() - r.double()).abs() / scale
        err = diff.max().item()
        print(f"  out{k}: persistent vs per-step {err:.2e}")
        assert err <= tol, f"out{k}: {err:.3e} > {tol} ({base.where(diff > tol)})"


def test_off_unless_enabled(monkeypatch):
    monkeypatch.delenv("RNNFUSE_PERSISTENT", raising=False)
    p = path("LSTM", BF16, 256, 16, 100)
    assert not p["enabled"] and p["path"] == "per-step"
    before = launches()
    lstm = rnnfuse.LSTM(8, 256, device=DEVICE, dtype=BF16)
    lstm(torch.randn(100, 16, 8, device=DEVICE, dtype=BF16))
    torch.cuda.synchronize()
    assert launches() == before


@pytest.mark.parametrize("kwargs, reason", [
    (dict(dtype=torch.float64), "fp64"), (dict(proj=32), "proj_size"), (dict(T=2), "3 steps")])
def test_fallbacks_run_the_per_step_kernels(kwargs, reason, persistent):
    dtype = kwargs.get("dtype", BF16)
    p = path("LSTM", dtype, 64, 4, kwargs.get("T", 10), kwargs.get("proj", 0))
    assert p["path"] == "per-step" and reason in p["plan"]["reason"]
    before = launches()
    lstm = rnnfuse.LSTM(8, 64, proj_size=kwargs.get("proj", 0), device=DEVICE, dtype=dtype)
    lstm(torch.randn(kwargs.get("T", 10), 4, 8, device=DEVICE, dtype=dtype))
    torch.cuda.synchronize()
    assert launches() == before


def _run(model, x):
    out, state = model(x)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_bitwise_deterministic_and_close_to_the_per_step_path(mode, monkeypatch):
    torch.manual_seed(0)
    cls = rnnfuse.LSTM if mode == "LSTM" else rnnfuse.GRU
    model = cls(32, 200, device=DEVICE, dtype=BF16)
    x = torch.randn(60, 24, 32, device=DEVICE, dtype=BF16)
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "grid")
    with torch.no_grad():
        a, b = _run(model, x), _run(model, x)
    for u, v in zip(a, b):
        assert torch.equal(u, v), f"two identical persistent runs differ: {base.where(u != v)}"
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "0")
    with torch.no_grad():
        ref = _run(model, x)
    for u, v in zip(a, ref):  # different reduction order: bf16-level agreement
        err = (u.float() - v.float()).abs().max().item()
        print(f"  persistent vs per-step: {err:.3e}")
        assert err <= 3e-2


def test_cuda_graph_capture_and_replay(persistent):
    torch.manual_seed(1)
    model = rnnfuse.LSTM(16, 128, num_layers=2, device=DEVICE, dtype=F16)
    static_x = torch.randn(40, 8, 16, device=DEVICE, dtype=F16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(2):
            _run(model, static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = _run(model, static_x)
    for trial in range(2):
        static_x.copy_(torch.randn_like(static_x))
        graph.replay()
        torch.cuda.synchronize()
        with torch.no_grad():
            eager = _run(model, static_x)
        for e, r in zip(eager, static_out):
            assert torch.equal(e, r), f"trial {trial}: replay differs from eager"


def test_two_streams_at_once(persistent):
    """Two persistent grids launched on two streams without waiting for each
    other: cooperative launches are co-resident as a whole, so neither can
    wait on the other (a hang would trip the watchdog instead of passing)."""
    torch.manual_seed(2)
    models = [rnnfuse.LSTM(16, 512, device=DEVICE, dtype=BF16),
              rnnfuse.GRU(16, 512, device=DEVICE, dtype=BF16)]
    xs = [torch.randn(200, 16, 16, device=DEVICE, dtype=BF16) for _ in models]
    with torch.no_grad():
        expected = [_run(m, x) for m, x in zip(models, xs)]
        torch.cuda.synchronize()
        streams = [torch.cuda.Stream() for _ in models]
        outs = []
        for s, m, x in zip(streams, models, xs):
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                outs.append(_run(m, x))
        torch.cuda.synchronize()
    for e, o in zip(expected, outs):
        for u, v in zip(e, o):
            assert torch.equal(u, v)


def test_issue_point_lstm_h768_b16(persistent):
    """FlashRNN's published point (LSTM H=768, B=16, fp16), T=256 to keep the
    file fast: the persistent tier runs and matches the reference rule."""
    case = _c("LSTM", F16, 256, 16, 64, 768)
    test_parity_on_the_persistent_tier(case, None)

