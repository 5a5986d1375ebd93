"""The cluster tier's backward decomposition (csrc/persistent/cluster_bwd_layout.h)
on its CPU emulator (emulate_cluster_bwd.cpp) against the CPU backward kernels.
Its kernel (cluster_bwd_kernel.cuh) must equal this emulator bit for bit
(test_persistent_simt_cluster_bwd.py); no launch path runs it on a GPU yet.

The step dh_prev^T = W_hh^T x dgates^T is split over K where the gradients are
made: CTA c multiplies its own units' G gate gradients by their W_hh rows for
every output unit, and pushes those fp32 partial sums to the units' owners
(itself included), who add the P sources in order. The emulator delivers every
push at a random moment and checks the mbarrier protocol (phases, bytes, write
after read). float64: equal to the spec to 1e-12; reduced precision: within 2x
the CPU kernel's error against float64 plus one operand rounding.
"""
from __future__ import annotations

import json

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from test_persistent_emulator import (assert_rounding_like_cpu, make_bidir_inputs, make_inputs,
                                      spec_bidir)
from test_persistent_emulator_bwd import assert_equal_to_float64, cast, spec_bwd, with_grads
from test_persistent_plan import H100_CLUSTERS

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def emulate(cell, a, saved, reverse, J, R, eb=2, seed=0, fault=0):
    y, ws = saved
    if cell == "LSTM":
        out = OPS.persistent_emulate_cluster_lstm_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], a["h0"],
                                                      a["c0"], y, ws, a["bs"], reverse, J, R, eb,
                                                      seed, fault)
        return [out[0], out[1], out[3], out[4]]
    return list(OPS.persistent_emulate_cluster_gru_bwd(a["gy"], a["ghn"], a["w"], a["b"], a["h0"],
                                                       y, ws, a["bs"], reverse, J, R, eb, seed,
                                                       fault))


# (H, B, T, [(J, R, eb)]): clusters of 2 to 15 CTAs, a short last CTA, 1 to 3
# replicas; several MMA passes per step (H=17: 32-row chunks of 70 rows; H=300:
# 3 m-tiles per warp in M = 4 slots, 16-row chunks); W beyond the registers
# (H=300, J=48: LSTM 48 fragment slots per warp at k = 16, 96 at k = 8).
CASES = [
    (45, 37, 6, [(8, 1, 2), (3, 2, 4), (16, 3, 2)]),
    (17, 70, 4, [(2, 1, 4), (8, 2, 2)]),
    (40, 5, 7, [(24, 1, 2), (8, 2, 4)]),
    (300, 20, 3, [(48, 1, 2), (48, 2, 4), (24, 1, 2)]),
]


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_cluster_backward_equals_the_spec(cell, packed, reverse):
    for i, (H, B, T, parts) in enumerate(CASES):
        a = with_grads(make_inputs(cell, F64, H, B, T, packed, seed=i), cell, F64)
        exp, saved = spec_bwd(cell, a, reverse)
        for J, R, eb in parts:
            got = emulate(cell, a, saved, reverse, J, R, eb, seed=i)
            assert_equal_to_float64(exp, got, f"H{H} B{B} T{T} J{J} P{-(-H // J)} R{R} eb{eb} ")


def bidir_case(cell, dtype, H, B, T, packed, seed):
    """Both directions' inputs, forward (y, workspace) and upstream gradients
    in `dtype`, and the CPU bidirectional backward op's outputs."""
    a = make_bidir_inputs(cell, dtype, H, B, T, packed, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    N = a["x"].shape[0]
    rand = (lambda *s: torch.randn(*s, generator=gen, dtype=F64).to(dtype))  # noqa: E731
    a["gy"], a["ghn"] = rand(N, 2 * H), rand(2, B, H)
    if cell == "LSTM":
        a["gcn"] = rand(2, B, H)
        y, _, _, ws = spec_bidir(cell, a)
        exp = OPS.lstm_bidir_bwd(a["gy"], a["ghn"], a["gcn"], a["w"], a["w_rev"], None, None,
                                 a["h0"], a["c0"], y, ws, a["bs"])
    else:
        y, _, ws = spec_bidir(cell, a)
        exp = OPS.gru_bidir_bwd(a["gy"], a["ghn"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"],
                                y, ws, a["bs"])
    return a, (y, ws), list(exp)


def emulate_bidir(cell, a, saved, J, R, eb, seed=0):
    y, ws = saved
    if cell == "LSTM":
        return list(OPS.persistent_emulate_cluster_lstm_bidir_bwd(
            a["gy"], a["ghn"], a["gcn"], a["w"], a["w_rev"], a["h0"], a["c0"], y, ws, a["bs"], J, R,
            eb, seed))
    return list(OPS.persistent_emulate_cluster_gru_bidir_bwd(
        a["gy"], a["ghn"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], y, ws, a["bs"], J, R,
        eb, seed))


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_backward_launch_equals_the_spec(cell, packed):
    """Both directions in one launch (each on its own clusters, the same
    partition): grad_y, y and the x_proj gradient are column blocks read and
    written through row strides; float64 equal to the CPU bidirectional
    backward op to 1e-12, every output."""
    for i, (H, B, T, parts) in enumerate(CASES[:3]):
        a, saved, exp = bidir_case(cell, F64, H, B, T, packed, seed=30 + i)
        for J, R, eb in parts:
            got = emulate_bidir(cell, a, saved, J, R, eb, seed=i)
            assert_equal_to_float64(exp, got, f"bidir H{H} B{B} T{T} J{J} R{R} eb{eb} ")


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_cluster_backward_rounding_points(cell, dtype):
    """Gate gradients rounded to the operand type once, as the B operand and
    in global memory; partial sums fp32 through the exchange (fp32 here is
    TF32's operand rounding)."""
    eb = 4 if dtype == F32 else 2
    for packed, reverse in ((False, False), (True, True)):
        a = with_grads(make_inputs(cell, dtype, 64, 19, 10, packed, seed=5), cell, dtype)
        cpu, saved = spec_bwd(cell, a, reverse)
        a64 = cast(a, F64)
        saved64 = tuple(t.to(F64) for t in saved)
        ref = emulate(cell, a64, saved64, reverse, 16, 1, 2)
        emu = emulate(cell, a, saved, reverse, 8, 2, eb)
        assert_rounding_like_cpu(ref, cpu, emu, dtype)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_cluster_backward_bits_do_not_depend_on_delivery_order(cell):
    """Every output adds its sources in order whatever order the pushes land
    in: bf16 runs under different schedules give the same bits."""
    a = with_grads(make_inputs(cell, BF16, 45, 37, 6, True, seed=3), cell, BF16)
    _, saved = spec_bwd(cell, a, False)
    first = emulate(cell, a, saved, False, 8, 2, 2, seed=0)
    for seed in (1, 2):
        for e, g in zip(first, emulate(cell, a, saved, False, 8, 2, 2, seed=seed)):
            assert torch.equal(e, g)


# fault -> what the emulator must report (emulate_cluster_bwd.cpp's hooks).
FAULTS = {1: "protocol violation", 2: "protocol violation", 3: "protocol violation",
          4: "deadlock", 5: "protocol violation"}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_broken_protocols_are_caught(fault):
    """Each deliberately broken protocol fails under some schedule: no wait,
    one row fewer expected, one buffer for all steps, a skipped peer, the
    CTA's own sums not awaited."""
    a = with_grads(make_inputs("LSTM", F64, 45, 16, 8, True, seed=1), "LSTM", F64)
    _, saved = spec_bwd("LSTM", a, False)
    caught = []
    for seed in range(12):
        try:
            emulate("LSTM", a, saved, False, 8, 2, 2, seed=seed, fault=fault)
        except RuntimeError as e:
            caught.append(str(e))
    print(f"fault {fault}: caught under {len(caught)} of 12 schedules")
    assert caught and all(FAULTS[fault] in m for m in caught), caught[:1]


def test_partitions_it_cannot_run_are_refused():
    a = with_grads(make_inputs("LSTM", F64, 40, 4, 3, False), "LSTM", F64)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="at least two"):
        emulate("LSTM", a, saved, False, 40, 1)  # one CTA
    with pytest.raises(RuntimeError, match="more than 16"):
        emulate("LSTM", a, saved, False, 2, 1)  # 20 CTAs
    with pytest.raises(RuntimeError, match="elem_bytes"):
        emulate("LSTM", a, saved, False, 8, 1, eb=3)
    b = with_grads(make_inputs("GRU", F64, 800, 2, 3, False), "GRU", F64)
    _, saved = spec_bwd("GRU", b, False)
    with pytest.raises(RuntimeError, match="m-tiles per warp"):
        emulate("GRU", b, saved, False, 56, 1)  # 50 m-tiles: 7 for warp 0


# ------------------------------------------------------------- the planner's candidate
def cluster_bwd_plan(cell, dtype, H, B, tf32=True, dev=H100_CLUSTERS, directions=1):
    return json.loads(OPS.persistent_cluster_bwd_plan(cell, dtype, H, B, 100, tf32, dev,
                                                      directions))


def smem_account(cell, p, eb):
    """cluster_bwd_smem, independently: W beyond 32 register fragments, two
    fp32 receive buffers, the B operand, 2 mbarriers (the same for both cells)."""
    a16 = (lambda x: -(-x // 16) * 16)  # noqa: E731
    kk = p["kk"]
    return (8 * p["w_smem_frags"] * 512 + a16(2 * p["P"] * p["hbuf_rows"] * p["J"] * 4)
            + a16(p["hbuf_rows"] * (p["own_ktiles"] * kk + 16 // eb) * eb) + 16)


@pytest.mark.parametrize("cell,dtype,H,B", [("LSTM", F16, 768, 16), ("LSTM", BF16, 512, 8),
                                            ("GRU", BF16, 512, 64), ("LSTM", F32, 512, 64),
                                            ("GRU", F16, 768, 16)])
def test_the_candidate_fits_and_holds_w(cell, dtype, H, B):
    """The partition it picks: clusters of 2 to 16, W_hh held once per
    cluster (registers + shared memory), the shared memory as accounted
    independently and within the device's opt-in."""
    eb = 4 if dtype == F32 else 2
    p = cluster_bwd_plan(cell, dtype, H, B)
    print(p)
    assert p["tier"] == "cluster" and p["pass"] == "backward"
    G = 4 if cell == "LSTM" else 3
    J, P, R = p["J"], p["P"], p["R"]
    assert 2 <= P <= 16 and P == -(-H // J) and p["grid"] == P * R
    mt_w0 = -(-(-(-H // 16)) // 8)
    assert p["mstride"] == (mt_w0 if mt_w0 <= 2 else -(-mt_w0 // 2) * 2)
    assert p["own_ktiles"] == -(-(G * J) // p["kk"]) and p["mtiles"] == -(-H // 16)
    assert p["w_frags"] + p["w_smem_frags"] == p["mstride"] * p["own_ktiles"]
    # Every CTA holds W_hh's rows of its units for every output: the cluster holds all of it.
    assert P * p["own_ktiles"] * p["kk"] * p["mtiles"] * 16 >= G * H * H
    assert p["smem_bytes"] == smem_account(cell, p, eb) <= H100_CLUSTERS[4]
    assert p["us_per_step"] > 0 and p["passes"] == -(-(-(-B // R)) // p["chunk"])


def test_the_candidate_refuses_what_it_cannot_run():
    assert "exact-FMA" in cluster_bwd_plan("LSTM", F32, 512, 8, tf32=False)["reason"]
    sm80 = list(H100_CLUSTERS)
    sm80[0], sm80[9] = 8, 0
    assert "clusters" in cluster_bwd_plan("LSTM", F16, 512, 8, dev=sm80)["reason"]
    big = cluster_bwd_plan("LSTM", F16, 2048, 16)
    assert big["tier"] == "none" and "no cluster backward partition" in big["reason"]
