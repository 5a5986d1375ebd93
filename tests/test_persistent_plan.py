"""The persistent tier's planner and index maps (csrc/persistent/plan.cpp,
layout.h), on fake device properties: which tier and partition it picks,
that every fallback fires for its reason, and that the maps the kernel and
the emulator share are bijections that agree with the PTX ISA's fragment
layouts (written out independently below)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import rnnfuse.ops  # noqa: F401  (registers torch.ops.rnnfuse)

OPS = torch.ops.rnnfuse
ROOT = Path(__file__).resolve().parents[1]
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

REG_FRAGS = 32      # layout.h kRegFrags: A fragments per warp


def fwd_mtiles(G, J):
    """layout.h Partition::mtiles(): a slice's 2 m-tiles (32 rows), or as many
    16-row tiles as a wider CTA's G x J rows need (up to 4)."""
    return max(2, math.ceil(G * J / 16))


def device(sm=132, avail=0, smem=232448, cc=(9, 0), regs=65536, coop=True, clusters=None,
           max_clusters=0, max_clusters16=0):
    """[cc_major, cc_minor, sm_count, sm_available, smem_optin, smem_per_sm,
    regs_per_sm, regs_per_block, cooperative, clusters, max_active_clusters (8 CTAs),
    max_active_clusters_16]"""
    clusters = cc[0] >= 9 if clusters is None else clusters
    return [cc[0], cc[1], sm, avail, smem, smem + 1024, regs, regs, int(coop), int(clusters),
            max_clusters, max_clusters16]


H100 = device()
A100 = device(sm=108, smem=166912, cc=(8, 0))
MPS_HALF = device(avail=66)
T4 = device(sm=40, smem=65536, cc=(7, 5))
# An H100/H200 as the host reports it with the cluster kernels built: 15
# co-resident 8-CTA clusters, 7 of 16 CTAs (GPC harvesting; an H200's
# occupancy API, benchmarks/results/nvidia-h200_2026-11-30_gpu-check).
H100_CLUSTERS = device(max_clusters=15, max_clusters16=7)


def plan(cell="LSTM", dtype=BF16, H=768, B=16, T=1024, proj=0, runs=1, tf32=True, dev=H100,
         grid=True, cluster=False, backward=False, directions=1, slice_push=True, pin=""):
    out = json.loads(OPS.persistent_plan(cell, dtype, H, B, T, proj, runs, tf32, dev, grid,
                                         cluster, backward, directions, slice_push, pin))
    print(cell, dtype, H, B, out)
    return out


def check_hbuf_rows(p, rows):
    """Whole chunks of 32 rows up to the replica's rows, or 16 or 8 rows (an
    n-tile's multiple) where 32 do not fit the shared memory."""
    hb = p["hbuf_rows"]
    assert hb in (8, 16) or (32 <= hb <= math.ceil(rows / 32) * 32 and hb % 32 == 0), hb


def check_grid_plan(p, cell, H, B, dev):
    """The capacity rules a grid plan must satisfy."""
    G = 4 if cell == "LSTM" else 3
    assert p["tier"] == "grid" and p["reason"] == ""
    # Up to 16 units: a chunk's epilogue items fit 256 threads x 2 slots.
    assert p["J"] <= 16 and p["MT"] == fwd_mtiles(G, p["J"]) <= 4
    assert p["P"] == math.ceil(H / p["J"])
    assert p["grid"] == p["P"] * p["R"]
    usable = dev[3] if 0 < dev[3] < dev[2] else dev[2]
    assert p["grid"] <= usable, "one CTA per SM: the grid must fit the available SMs"
    assert p["smem_bytes"] <= dev[4]
    assert p["KT"] == math.ceil(H / p["kk"])
    assert p["w_frags"] == math.ceil(p["KT"] / 8) * p["MT"] <= REG_FRAGS
    # The warps' partial sums (8 x rows x 40 fp32), GRU's b_hh slice, the h buffer.
    pitch = p["KT"] * p["kk"] + 16 // p["elem_bytes"]
    red = 8 * 16 * p["MT"] * 40 * 4 + 16 * p["MT"] * 4
    assert p["smem_bytes"] == p["hbuf_rows"] * pitch * p["elem_bytes"] + red
    rows = math.ceil(B / p["R"])
    check_hbuf_rows(p, rows)
    assert p["R"] == 1 or math.ceil(B / p["R"]) >= 8
    assert p["us_per_step"] > 0


@pytest.mark.parametrize("dtype", [F16, BF16, F32], ids=str)
def test_issue_point_takes_the_grid_tier(dtype):
    p = plan(dtype=dtype)
    check_grid_plan(p, "LSTM", 768, 16, H100)
    # 16-bit: CTAs of 16 units (4 m-tiles) gather h half as often, and 2
    # replicas keep 96 SMs busy; fp32's k-tiles of 8 leave no room for them.
    want = (96, 8, 1) if dtype == F32 else (48, 16, 2)
    assert (p["P"], p["J"], p["R"]) == want
    assert p["kk"] == (8 if dtype == F32 else 16)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
@pytest.mark.parametrize("dev", [H100, A100, MPS_HALF], ids=["h100", "a100", "mps50"])
def test_capacity_rules_over_a_sweep(cell, dev):
    """Every grid plan satisfies the capacity rules, and fitting is monotone:
    a hidden size that fits means every smaller one fits too."""
    for dtype in (BF16, F32):
        for B in (1, 8, 16, 64, 256):
            fits = [plan(cell, dtype, H, B, dev=dev)["tier"] == "grid"
                    for H in (32, 100, 256, 512, 768, 1024, 1320, 2048)]
            assert fits[0], "the smallest size must always fit"
            assert fits == sorted(fits, reverse=True), f"not monotone in H: {fits}"
            for H in (100, 512, 1024):
                p = plan(cell, dtype, H, B, dev=dev)
                if p["tier"] == "grid":
                    check_grid_plan(p, cell, H, B, dev)


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_exact_fp32_takes_the_grid_tier_with_fmas(cell, backward):
    """fp32 with TF32 off (cudnn.allow_tf32=False) runs the exact-FMA kernels:
    the TF32 plan's partition (same k-tiles and register budget), "math":
    "fma", a slower modelled step; never the cluster tier (it has no FMA
    kernel), even where the cluster kernels are built and would win for TF32."""
    for H, B in ((256, 8), (512, 64), (768, 16), (512, 256)):
        kw = dict(cell=cell, dtype=F32, H=H, B=B, backward=backward)
        exact = plan(**kw, tf32=False, dev=H100_CLUSTERS, cluster=True)
        tf32 = plan(**kw, tf32=True)
        assert exact["tier"] == tf32["tier"], (exact, tf32)
        if exact["tier"] != "grid":
            continue
        if not backward:
            check_grid_plan(exact, cell, H, B, H100)
        else:
            check_bwd_plan(exact, cell, H, B, H100)
        assert exact["math"] == "fma" and tf32["math"] == "tf32"
        # The backward may split K differently: the FMAs' longer compute
        # pays for a split's handoff at smaller sizes than the MMAs' does.
        same = ("J", "kk", "KT", "elem_bytes") if backward else ("P", "J", "kk", "KT", "w_frags",
                                                                 "elem_bytes")
        for key in same:
            assert exact[key] == tf32[key], key
        assert exact["us_per_step"] > tf32["us_per_step"]
    assert plan(dtype=BF16)["math"] == "mma16"


@pytest.mark.parametrize("backward", [False, True], ids=["fwd", "bwd"])
def test_both_directions_in_one_launch(backward):
    """directions=2 on the grid tier: both directions' grids must be
    co-resident, so each gets at most half the SMs (fewer replicas, or
    per-step where one direction alone needs more than half)."""
    for cell in ("LSTM", "GRU"):
        for dtype in (BF16, F32):
            for H, B in ((256, 64), (512, 64), (768, 16), (200, 256)):
                kw = dict(cell=cell, dtype=dtype, H=H, B=B, backward=backward)
                one = plan(**kw)
                two = plan(**kw, directions=2)
                if two["tier"] == "per-step":
                    assert "per direction" in two["reason"] or one["tier"] == "per-step", two
                    continue
                assert two["tier"] == "grid" and two["directions"] == 2
                assert 2 * two["grid"] <= 132
                assert one["tier"] == "grid" and two["R"] <= one["R"]
                assert (two["P"], two["J"]) == (one["P"], one["J"]) or two["grid"] < one["grid"]
    # fp32 H=768 LSTM: 96 CTAs per direction (J=8; 16 units' W_hh rows do
    # not fit the registers) cannot run twice on 132 SMs.
    p = plan(H=768, B=16, dtype=F32, directions=2)
    assert p["tier"] == "per-step" and "66 CTAs" in p["reason"] and "per direction" in p["reason"]
    # bf16: 48 CTAs of 16 units per direction can.
    p = plan(H=768, B=16, directions=2)
    assert (p["tier"], p["J"], p["grid"]) == ("grid", 16, 48), p
    assert plan(H=512, B=64, directions=2)["R"] == 2  # 32 CTAs of 16 units per replica
    assert plan(H=512, B=64)["R"] == 4


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_both_directions_in_one_cluster_launch(cell):
    """The cluster tier takes both directions of a bidirectional layer in one
    launch too: clusters [d*R, (d+1)*R) run direction d, so twice the
    clusters (2R co-resident for the modelled step) on twice the SMs, each
    cluster with the single direction's partition and step. No exact fp32
    (no FMA kernel)."""
    took = 0
    for H, B in ((256, 16), (512, 16), (512, 64), (256, 256), (768, 16)):
        one = plan(cell, BF16, H, B, dev=H100_CLUSTERS, grid=False, cluster=True)
        two = plan(cell, BF16, H, B, dev=H100_CLUSTERS, grid=False, cluster=True, directions=2)
        if two["tier"] != "cluster":
            continue
        took += 1
        assert two["directions"] == 2 and two["MT"] == 2
        active = 15 if two["P"] <= 8 else 7  # H100_CLUSTERS: co-resident 8- / up to 16-CTA clusters
        assert 2 * two["R"] <= active and 2 * two["grid"] <= 132
        if one["tier"] == "cluster" and (one["P"], one["R"]) == (two["P"], two["R"]):
            assert two["us_per_step"] == one["us_per_step"]  # the directions run side by side
        else:
            assert two["us_per_step"] >= one["us_per_step"]  # fewer replicas, or a bigger cluster
    assert took >= 3
    # 3 co-resident 8-CTA clusters: one direction may take 2 replicas, both only 1 each.
    dev = device(max_clusters=3, max_clusters16=0)
    assert plan(cell, BF16, 256, 64, dev=dev, cluster=True, grid=False)["R"] == 2
    assert plan(cell, BF16, 256, 64, dev=dev, cluster=True, grid=False, directions=2)["R"] == 1
    # The backward's cluster tier takes both directions too (the cluster backward's own
    # tests: test_persistent_plan_cluster_bwd.py).
    assert plan(cell, BF16, 256, 64, dev=H100_CLUSTERS, grid=False, cluster=True, directions=2,
                backward=True)["directions"] == 2
    assert plan(cell, F32, 256, 16, tf32=False, dev=H100_CLUSTERS, cluster=True,
                directions=2)["math"] == "fma"


def test_mps_at_half_the_sms_limits_the_grid():
    full = plan(H=768, B=64)
    half = plan(H=768, B=64, dev=MPS_HALF)
    assert full["tier"] == "grid" and full["grid"] > 66
    # 768 units at J = 16 are 48 CTAs a replica; under MPS only 66 SMs are
    # usable: one replica instead of the whole device's two.
    check_grid_plan(half, "LSTM", 768, 64, MPS_HALF)
    assert (half["J"], half["R"], full["J"], full["R"]) == (16, 1, 16, 2)
    # fp32 (k-tiles of 8): 16 units' rows do not fit the registers, and
    # 96 CTAs of 8 units do not fit 66 SMs.
    fp32 = plan(H=768, B=64, dtype=F32, dev=MPS_HALF)
    assert fp32["tier"] == "per-step" and "66" in fp32["reason"]
    small = plan(H=256, B=64, dev=MPS_HALF)
    check_grid_plan(small, "LSTM", 256, 64, MPS_HALF)


def test_a100_108_sms():
    check_grid_plan(plan(H=768, dev=A100), "LSTM", 768, 16, A100)
    p = plan(H=1024, dev=A100)  # 128 CTAs at J = 8 > 108 SMs, 64 at J = 16 (4 m-tiles)
    check_grid_plan(p, "LSTM", 1024, 16, A100)
    assert (p["J"], p["grid"]) == (16, 64)
    p = plan(H=1100, dev=A100)  # J = 16 exceeds the registers; 138 CTAs at J = 8
    assert p["tier"] == "per-step" and "108" in p["reason"]
    check_grid_plan(plan("GRU", H=1024, dev=A100), "GRU", 1024, 16, A100)  # J = 10: 103 CTAs


def test_replicas_split_large_batches():
    p = plan(H=256, B=256)
    check_grid_plan(p, "LSTM", 256, 256, H100)
    assert p["R"] > 1, "32 CTAs for H=256 leave SMs free for batch replicas"


@pytest.mark.parametrize("kwargs, reason", [
    (dict(dtype=F64), "fp64"),
    (dict(proj=128), "proj_size"),
    (dict(T=2), "fewer than 3 steps"),
    (dict(runs=300), "distinct lengths"),
    (dict(dev=T4), "sm_75"),
    (dict(dev=device(coop=False)), "cooperative"),
    (dict(dev=device(regs=32768)), "register file"),
    (dict(H=4096), "does not fit"),
    (dict(grid=False), "no persistent kernel"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_fallbacks_name_their_reason(kwargs, reason):
    p = plan(**kwargs)
    assert p["tier"] == "per-step"
    assert reason in p["reason"]
    assert set(p) == {"tier", "reason"}


def test_cluster_rules_only_where_built():
    """Without the cluster kernels in the build (Built.cluster false) the
    planner never picks the tier, whatever the device says."""
    assert plan(H=256, B=16, dev=H100_CLUSTERS)["tier"] == "grid"


# -------------------------------------------------------------- backward
MTILE = 16          # layout.h: unit rows per backward m-tile (up to 4 m-tiles, 64 units)


def red_bwd(mtiles):
    """The warps' partial sums: warps x rows x pitch x fp32."""
    return 8 * 16 * mtiles * 40 * 4


def check_bwd_plan(p, cell, H, B, dev):
    G = 4 if cell == "LSTM" else 3
    assert p["pass"] == "backward" and p["tier"] == "grid"
    S = p["ksplit"]  # CTAs per unit group, each holding 1/S of the k-tiles
    assert S in (1, 2, 4)
    # Up to 16 units per part: a part's epilogue items fit its 256 threads x 2 slots.
    assert p["J"] <= MTILE * S and p["MT"] == math.ceil(p["J"] / MTILE) <= 4
    assert p["P"] == math.ceil(H / p["J"]) * S and p["grid"] == p["P"] * p["R"]
    usable = dev[3] if 0 < dev[3] < dev[2] else dev[2]
    assert p["grid"] <= usable
    assert p["KT"] == math.ceil(G * H / p["kk"])
    part = math.ceil(p["KT"] / S)
    assert (S - 1) * part < p["KT"], "a part without k-tiles"
    assert p["w_frags"] == math.ceil(part / 8) * p["MT"] <= REG_FRAGS
    pitch = part * p["kk"] + 16 // p["elem_bytes"]
    red = red_bwd(p["MT"])
    assert p["smem_bytes"] == p["hbuf_rows"] * pitch * p["elem_bytes"] + red <= dev[4]
    check_hbuf_rows(p, math.ceil(B / p["R"]))
    if p["hbuf_rows"] < 32:  # only where 32 rows do not fit
        assert 32 * pitch * p["elem_bytes"] + red > dev[4]


@pytest.mark.parametrize("cell, dtype, H, B", [
    ("LSTM", BF16, 768, 16), ("GRU", BF16, 768, 16), ("LSTM", F16, 512, 256), ("GRU", F32, 256, 64),
    ("LSTM", BF16, 40, 3)])
def test_backward_plans_satisfy_the_capacity_rules(cell, dtype, H, B):
    check_bwd_plan(plan(cell, dtype, H, B, backward=True), cell, H, B, H100)


@pytest.mark.parametrize("cell, dtype, H, B, tf32, dev, rows", [
    # 4H x H fragments of K = 4096: 32 k-tiles per warp is the limit (H=1024 LSTM
    # bf16: 32 ok), and 32 rows of 8 KB each do not fit next to the partial sums.
    ("LSTM", BF16, 1024, 16, True, H100, 16),
    ("LSTM", BF16, 1024, 256, True, H100, 16),
    # A100's 163 KB of shared memory cannot hold 32 rows of 4 x 768 gate gradients.
    ("LSTM", BF16, 768, 16, True, A100, 16),
    # fp32 (TF32 or exact): 32 rows of 4 x 512 fp32 are 262 KB.
    ("LSTM", F32, 512, 64, False, H100, 16),
    ("LSTM", F32, 512, 8, True, H100, 16),
    # 99 KB of shared memory, K split in 2: 16 rows of 2 x 1024 fp32 (131 KB) do not fit.
    ("LSTM", F32, 1024, 8, False, device(smem=101376), 8),
])
def test_backward_gathers_16_or_8_rows_where_32_do_not_fit(cell, dtype, H, B, tf32, dev, rows):
    """The backward's h buffer (the exchanged gate gradients, K = G*H per
    row) falls to 16 or 8 batch rows before the plan falls back per step.
    At J = 16 units per CTA: a wider CTA splits K more ways, so its part of a
    row is shorter and 32 rows may fit (test_wide_backward_ctas_...)."""
    p = plan(cell, dtype, H, B, tf32=tf32, dev=dev, backward=True, pin="J=16")
    check_bwd_plan(p, cell, H, B, dev)
    assert p["hbuf_rows"] == rows


def test_backward_fallbacks():
    # 4H x H fragments of K = 5120: 40 k-tiles per warp exceed the 32 register fragments.
    p = plan(H=1280, backward=True)
    assert p["tier"] == "per-step" and "backward" in p["reason"]
    # 8 rows of 4 x 1024 bf16 gate gradients (65 KB) do not fit 48 KB.
    assert plan(H=1024, dev=device(smem=49152), backward=True)["tier"] == "per-step"
    assert plan(dtype=F64, backward=True)["reason"].startswith("fp64")
    assert "cooperative" in plan(dev=device(coop=False), backward=True)["reason"]
    check_bwd_plan(plan("LSTM", F32, 256, 16, backward=True), "LSTM", 256, 16, H100)
    # fp32 (k = 8) H=1536: unsplit 96 k-tiles per warp; split 4 ways, 96 groups x 4 CTAs.
    p = plan("LSTM", F32, 1536, 16, backward=True)
    assert p["tier"] == "per-step" and "split" in p["reason"]


@pytest.mark.parametrize("B", [1, 16, 64, 256])
@pytest.mark.parametrize("cell, H, tf32", [("LSTM", 768, True), ("LSTM", 1024, False),
                                           ("GRU", 768, False), ("GRU", 1024, True)])
def test_32_bit_backward_splits_k_where_one_cta_cannot_hold_it(cell, H, tf32, B):
    """fp32 above G*H = 2048 (TF32 or exact): W_hh^T's k-tiles exceed one
    CTA's 32 register fragments per warp, so 2 (or 4) CTAs share each unit
    group; before the split these ran per step."""
    G = 4 if cell == "LSTM" else 3
    assert math.ceil(math.ceil(G * H / 8) / 8) > REG_FRAGS  # one CTA cannot hold it
    p = plan(cell, F32, H, B, tf32=tf32, backward=True)
    check_bwd_plan(p, cell, H, B, H100)
    assert p["ksplit"] >= 2 and p["math"] == ("tf32" if tf32 else "fma")


def test_a_split_is_taken_only_where_it_models_faster():
    """Where one CTA per unit group fits, a split adds a handoff per chunk:
    the small batches keep S = 1."""
    for cell, dtype, H in (("LSTM", BF16, 512), ("GRU", F16, 768), ("LSTM", F32, 256)):
        p = plan(cell, dtype, H, 16, backward=True)
        check_bwd_plan(p, cell, H, 16, H100)
        assert p["ksplit"] == 1


# ------------------------------------------------------------------ maps
def isa_a(kk, lane, e):
    """PTX ISA, mma.m16n8k16 (.f16/.bf16) A fragment a_e; mma.m16n8k8 .tf32 a_e."""
    g, t = lane // 4, lane % 4
    if kk == 16:
        row = g if e in (0, 1, 4, 5) else g + 8
        col = t * 2 + (e & 1) + (8 if e >= 4 else 0)
    else:
        row = g if e in (0, 2) else g + 8
        col = t if e in (0, 1) else t + 4
    return row, col


def isa_b(kk, lane, e):
    g, t = lane // 4, lane % 4
    if kk == 16:
        return t * 2 + (e & 1) + (8 if e >= 2 else 0), g
    return (t if e == 0 else t + 4), g


def isa_c(lane, e):
    g, t = lane // 4, lane % 4
    return (g if e < 2 else g + 8), t * 2 + (e & 1)


@pytest.mark.parametrize("eb", [2, 4])
def test_fragment_maps_match_the_isa_and_are_bijections(eb):
    kk = 16 if eb == 2 else 8
    _, a, b, c, _ = OPS.persistent_maps("LSTM", 64, 8, 8, 1, eb)
    for frag, isa, shape in ((a, lambda l, e: isa_a(kk, l, e), (16, kk)),
                             (b, lambda l, e: isa_b(kk, l, e), (kk, 8)),
                             (c, isa_c, (16, 8))):
        coords = {tuple(frag[lane, e].tolist()) for lane in range(32) for e in range(frag.shape[1])}
        assert len(coords) == 32 * frag.shape[1] == shape[0] * shape[1], "not a bijection"
        assert coords == {(r, k) for r in range(shape[0]) for k in range(shape[1])}
        for lane in range(32):
            for e in range(frag.shape[1]):
                assert tuple(frag[lane, e].tolist()) == isa(lane, e), (lane, e)


def test_register_packing_the_kernel_relies_on():
    """Beyond the maps, the kernel packs two 16-bit elements per register and
    loads/stores pairs: A and B element pairs (2i, 2i+1) are adjacent in k,
    and C elements (2h, 2h+1) adjacent in n (one float2 store)."""
    _, a, b, c, _ = OPS.persistent_maps("LSTM", 64, 8, 8, 1, 2)
    for lane in range(32):
        for i in range(4):
            r0, k0 = a[lane, 2 * i].tolist()
            assert a[lane, 2 * i + 1].tolist() == [r0, k0 + 1] and k0 % 2 == 0
        for v in range(2):
            k0, n0 = b[lane, 2 * v].tolist()
            assert b[lane, 2 * v + 1].tolist() == [k0 + 1, n0] and k0 % 2 == 0
        for h in range(2):
            r0, n0 = c[lane, 2 * h].tolist()
            assert c[lane, 2 * h + 1].tolist() == [r0, n0 + 1] and n0 % 2 == 0


@pytest.mark.parametrize("cell, H, B, J, R, eb", [
    ("LSTM", 768, 16, 8, 1, 2), ("LSTM", 100, 13, 8, 2, 4), ("LSTM", 45, 37, 4, 4, 2),
    ("GRU", 100, 13, 10, 2, 2), ("GRU", 33, 70, 5, 8, 4), ("GRU", 1, 1, 10, 1, 2),
    ("LSTM", 1024, 9, 16, 2, 2), ("LSTM", 45, 37, 13, 1, 4), ("GRU", 100, 13, 16, 2, 4),
])
def test_every_unit_gate_and_row_is_owned_once(cell, H, B, J, R, eb):
    G = 4 if cell == "LSTM" else 3
    owners, _, _, _, ktiles = OPS.persistent_maps(cell, H, B, J, R, eb)
    P = math.ceil(H / J)
    triples = set()
    for q, rr, n, gate, unit, b in owners.tolist():
        r, c = q // P, q % P
        assert 0 <= q < P * R and 0 <= rr < 16 * fwd_mtiles(G, J)
        assert gate == rr // J and unit == c * J + rr % J < H
        assert b == n * R + r < B
        triples.add((gate, unit, b))
    assert len(triples) == owners.shape[0] == G * H * B, "an element is owned twice or never"
    # k-tiles: each exactly once, warps balanced (fixed reduction order over warps).
    kk = 16 if eb == 2 else 8
    assert ktiles.shape[0] == math.ceil(H / kk)
    per_warp = torch.bincount(ktiles[:, 0], minlength=8)
    assert (ktiles[:, 0] >= 0).all() and per_warp.max() - per_warp.min() <= 1
    for tile, (w, i) in enumerate(ktiles.tolist()):
        assert tile == w + 8 * i


@pytest.mark.parametrize("cell, H, B, J, R, eb", [
    ("LSTM", 768, 16, 16, 2, 2), ("GRU", 45, 37, 5, 4, 4), ("LSTM", 17, 70, 16, 8, 2)])
def test_backward_owns_every_unit_and_row_once(cell, H, B, J, R, eb):
    G = 4 if cell == "LSTM" else 3
    owners, _, _, _, ktiles = OPS.persistent_maps(cell, H, B, J, R, eb, True)
    P = math.ceil(H / J)
    pairs = set()
    for q, rr, n, gate, unit, b in owners.tolist():
        assert gate == -1 and unit == (q % P) * J + rr < H and rr < J
        assert b == n * R + q // P < B
        pairs.add((unit, b))
    assert len(pairs) == owners.shape[0] == H * B
    kk = 16 if eb == 2 else 8
    assert ktiles.shape[0] == math.ceil(G * H / kk) and (ktiles[:, 0] >= 0).all()


def test_maps_reject_a_slice_larger_than_the_cta():
    with pytest.raises(RuntimeError, match="exceeds the CTA's 64 rows"):
        OPS.persistent_maps("LSTM", 64, 8, 17, 1, 2)  # 4 x 17 = 68 rows > 4 m-tiles


# -------------------------------------------------- builds without ATen
@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++")
def test_planner_and_layout_compile_without_torch(tmp_path):
    """The core logic is plain C++: it builds with g++ and only the standard
    library (so the kernel side and any host can share it)."""
    main = tmp_path / "main.cpp"
    main.write_text('#include "persistent/plan.h"\n#include <cstdio>\n'
                    "int main() { rnnfuse::persist::DeviceProps d; d.cc_major = 9; d.sm_count = 132;"
                    " d.smem_optin = 232448; d.regs_per_sm = 65536; d.cooperative = true;"
                    " rnnfuse::persist::Problem p; p.hidden = 768; p.batch = 16; p.steps = 8;"
                    " std::puts(rnnfuse::persist::make_plan(p, d).describe().c_str()); }\n")
    exe = tmp_path / "plan"
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", "-O1", f"-I{ROOT / 'csrc'}",
                    str(main), str(ROOT / "csrc/persistent/plan.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    out = json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
    assert out == plan(H=768, B=16, T=8, dev=device(max_clusters=0))


def test_ll_exchange_is_taken_on_request_where_the_layout_allows():
    """RNNFUSE_PERSISTENT_EXCHANGE=ll (the op's ll_exchange): the grid
    forward exchanges through LL words (ll_layout.h), with the same
    partition; an odd H keeps the flags (16-byte reads take two units'
    words); per-step and cluster plans have no such choice; the grid
    backward takes it too, with the same partition
    (test_persistent_simt_ll_bwd.py)."""
    def with_ll(**kw):
        kw = {"cell": "LSTM", "dtype": BF16, "H": 768, "B": 16, "T": 1024, "proj": 0, "runs": 1,
              "tf32": True, "dev": H100, "grid": True, "cluster": False, "backward": False,
              "directions": 1, "slice_push": True, "pin": "", **kw}
        out = json.loads(OPS.persistent_plan(kw["cell"], kw["dtype"], kw["H"], kw["B"], kw["T"],
                                             kw["proj"], kw["runs"], kw["tf32"], kw["dev"],
                                             kw["grid"], kw["cluster"], kw["backward"],
                                             kw["directions"], kw["slice_push"], kw["pin"], True))
        print(kw["cell"], kw["H"], out)
        return out

    flags, ll = plan(), with_ll()
    assert flags["tier"] == ll["tier"] == "grid"
    assert flags["exchange"] == "flags" and ll["exchange"] == "ll"
    assert {k: v for k, v in flags.items() if k != "exchange"} == \
        {k: v for k, v in ll.items() if k != "exchange"}
    assert with_ll(cell="GRU", dtype=torch.float32, H=512, B=64)["exchange"] == "ll"
    odd = with_ll(cell="GRU", H=37, B=9)
    assert odd["tier"] == "grid" and odd["exchange"] == "flags"
    bwd = with_ll(backward=True)
    assert bwd["tier"] == "grid" and bwd["exchange"] == "ll", bwd
    assert with_ll(H=4096)["tier"] == "per-step"
    assert "exchange" not in with_ll(H=4096)
