"""The planner's own partitions, run.

test_persistent_plan*.py check the plans against the capacity rules; the
emulator and SIMT tests run partitions chosen by hand at small sizes. Here
the two meet: for the benchmark points the GPU check times, every partition
the planner picks (forward and backward, grid and cluster tier, K split,
both directions in one launch), on the device properties of an H100/H200
(the GPU check's card), with and without the cluster tier, runs with
exactly that partition:
- on the emulators, in float64, padded and packed, equal to the CPU spec to
  1e-12 (the decomposition at the real sizes: ragged CTAs, replicas, the
  h buffer the plan sized);
- for the headline point (LSTM fp16, H=768, B=16), the kernels' source on
  the SIMT fibers, bit for bit equal to the emulator, under the fibers'
  shared- and global-memory checks: the exact launch the GPU check makes
  first, with the ordering checks the GPU cannot make.
The cluster backward's planned partitions (one direction, or both in one
launch) run on its emulator like the others, the published point's also on
the fibers bit for bit; its candidates at the standard preset's other
training points, and those the planner does not take (where the grid
tier's model is faster), run on the emulator too.
The whole of both GPU presets on four devices (H100 with and without the
cluster kernels, A100, MPS at half the SMs: 451 distinct partitions) is
slower than CI allows; benchmarks/results/plan-runs_2026-11-29/ has that
sweep and its log.
"""
from __future__ import annotations

import json

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from benchmarks import grid
from rnnfuse import _build_config
from test_persistent_emulator import (emulate, emulate_bidir, make_bidir_inputs, make_inputs,
                                      spec, spec_bidir)
from test_persistent_emulator_bwd import assert_equal_to_float64, emulate_bwd, spec_bwd, with_grads
from test_persistent_plan import H100_CLUSTERS

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
# benchmark dtype name -> (torch dtype, allow_tf32), as benchmarks/grid.py defines them.
DTYPES = {"fp32": (F32, False), "tf32": (F32, True), "fp16": (F16, False), "bf16": (BF16, False)}
# (device properties, cluster kernels used): an H100/H200 as the host reports
# it, with the cluster tier, and with the grid tier alone (as under
# RNNFUSE_PERSISTENT_TIER=grid, or a build without the sm_90 kernels).
# (device properties, tiers): both (the planner's order: the grid tier where
# it runs), the grid tier alone, and the cluster tier alone
# (RNNFUSE_PERSISTENT_TIER / _BWD_TIER=cluster: what the GPU check times
# beside the planner's choice, and its sweep pins).
DEVICES = {"h100": (H100_CLUSTERS, "auto"), "h100-grid": (H100_CLUSTERS, "grid"),
           "h100-cluster": (H100_CLUSTERS, "cluster")}


def plan_of(cell, dtype, H, B, T, dev, tiers, backward=False, directions=1, pin=""):
    torch_dtype, tf32 = DTYPES[dtype]
    return json.loads(OPS.persistent_plan(cell, torch_dtype, H, B, T, 0, 1, tf32, dev,
                                          tiers != "cluster", tiers != "grid", backward,
                                          directions, True, pin))


def gpu_check_points():
    """The sequence-module points of the GPU check: the quick preset, the
    published (flashrnn) and fastrnns points, and the 2-layer bidirectional
    stack (a layer of it plans as the bidirectional launch)."""
    pts = grid.preset("quick", "cuda")
    pts += [p for p in grid.preset("standard", "cuda")
            if (p.T, p.B, p.H) in ((1024, 16, 768), (100, 64, 512)) or p.bidirectional]
    return list(dict.fromkeys(pts))  # Points are frozen dataclasses: drop repeats, keep order


def plan_key(pl, cell, H, B, dirs, backward):
    """What a run depends on (the dtype only through the partition's element
    size and math)."""
    return (cell, H, B, dirs, backward, pl["tier"], pl["P"], pl["J"], pl["R"], pl["hbuf_rows"],
            pl["elem_bytes"], pl["math"], pl.get("ksplit", 1), pl.get("group", 1),
            pl.get("red_pad", 8))


def distinct_plans(points, devices):
    """{key: (plan, [where it was planned])} over the points and devices
    ({name: (device properties, tiers)}). Per-step plans are
    left out."""
    plans = {}
    for p in points:
        if p.is_cell:
            continue
        cell, dirs = p.cell.upper(), 2 if p.bidirectional else 1
        for name, (dev, tiers) in devices.items():
            for backward in ((False, True) if p.mode == "training" else (False,)):
                pl = plan_of(cell, p.dtype, p.H, p.B, p.T, dev, tiers, backward, dirs)
                if pl["reason"]:
                    continue
                key = plan_key(pl, cell, p.H, p.B, dirs, backward)
                plans.setdefault(key, (pl, []))[1].append(f"{p.dtype}/T={p.T}/{name}")
    return plans


def sweep_group_plans():
    """The cluster partitions the GPU check's sweep pins by slice group
    (benchmarks/persist_check.py: SWEEPS, sweep_pins), on the H100 with
    clusters: the runs the sweep times beyond the planner's choices."""
    from benchmarks import persist_check

    names = {v: k for k, (v, _) in DTYPES.items() if k != "fp32"}
    plans = {}
    dev, tiers = DEVICES["h100-cluster"]
    for cell, dtype, H, B, T in persist_check.SWEEPS:
        for tier, pin in persist_check.sweep_pins(cell, False):
            if "group=" not in pin:
                continue
            pl = plan_of(cell, names[dtype], H, B, T, dev, tiers, pin=pin)
            if pl["tier"] != "cluster":
                continue
            key = plan_key(pl, cell, H, B, 1, False)
            plans.setdefault(key, (pl, []))[1].append(f"sweep {pin}")
    return plans


PLANS = {**sweep_group_plans(), **distinct_plans(gpu_check_points(), DEVICES)}


def run_plan(pl, cell, H, B, dirs, backward, packed, seed):
    """(CPU spec outputs, emulator outputs) in float64 for this plan's partition."""
    T = 2  # one exchange; packed: rows of length 1 end before it
    J, R, hb, eb, fma = pl["J"], pl["R"], pl["hbuf_rows"], pl["elem_bytes"], pl["math"] == "fma"
    S = pl.get("ksplit", 1)
    if dirs == 2:
        a = make_bidir_inputs(cell, F64, H, B, T, packed, seed=seed)
        fwd = spec_bidir(cell, a)
        if not backward:
            if pl["tier"] == "grid":
                return fwd, emulate_bidir(cell, a, J, R, hb, eb, fma=fma)
            if cell == "LSTM":
                return fwd, OPS.persistent_emulate_cluster_lstm_bidir(
                    a["x"], a["w"], a["w_rev"], a["h0"], a["c0"], a["bs"], True, J, R, pl["P"], eb,
                    seed, pl["group"], pl["red_pad"])
            return fwd, OPS.persistent_emulate_cluster_gru_bidir(
                a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], a["bs"], True, J, R,
                pl["P"], eb, seed, pl["group"], pl["red_pad"])
        if pl["tier"] == "cluster":
            from test_persistent_emulator_cluster_bwd import bidir_case
            from test_persistent_emulator_cluster_bwd import emulate_bidir as emulate_cluster
            a, saved, exp = bidir_case(cell, F64, H, B, T, packed, seed)
            return exp, emulate_cluster(cell, a, saved, J, R, eb, seed)
        gen = torch.Generator().manual_seed(seed)
        N = a["x"].shape[0]
        gy = torch.randn(N, 2 * H, generator=gen, dtype=F64)
        ghn = torch.randn(2, B, H, generator=gen, dtype=F64)
        if cell == "LSTM":
            y, _, _, ws = fwd
            gcn = torch.randn(2, B, H, generator=gen, dtype=F64)
            exp = OPS.lstm_bidir_bwd(gy, ghn, gcn, a["w"], a["w_rev"], None, None, a["h0"],
                                     a["c0"], y, ws, a["bs"])
            got = OPS.persistent_emulate_lstm_bidir_bwd(gy, ghn, gcn, a["w"], a["w_rev"], a["h0"],
                                                        a["c0"], y, ws, a["bs"], J, R, hb, eb,
                                                        seed, fma, S)
            return exp, got
        y, _, ws = fwd
        exp = OPS.gru_bidir_bwd(gy, ghn, a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], y, ws,
                                a["bs"])
        got = OPS.persistent_emulate_gru_bidir_bwd(gy, ghn, a["w"], a["w_rev"], a["b"],
                                                   a["b_rev"], a["h0"], y, ws, a["bs"], J, R, hb,
                                                   eb, seed, fma, S)
        return exp, got
    a = make_inputs(cell, F64, H, B, T, packed, seed=seed)
    if backward:
        a = with_grads(a, cell, F64, seed=seed)
        exp, saved = spec_bwd(cell, a, False)
        if pl["tier"] == "cluster":
            from test_persistent_emulator_cluster_bwd import emulate as emulate_cluster_bwd
            return exp, emulate_cluster_bwd(cell, a, saved, False, J, R, eb, seed=seed)
        return exp, emulate_bwd(cell, a, saved, False, J, R, hb, eb, seed=seed, fma=fma, S=S)
    exp = spec(cell, a, False)
    if pl["tier"] == "grid":
        return exp, emulate(cell, a, False, J, R, hb, eb, seed=seed, fma=fma)
    cluster = (J, R, pl["P"], eb, seed, 0, pl["push"] == "slice", pl["group"], pl["red_pad"])
    if cell == "LSTM":
        return exp, OPS.persistent_emulate_cluster_lstm(a["x"], a["w"], a["h0"], a["c0"], a["bs"],
                                                        False, True, *cluster)
    return exp, OPS.persistent_emulate_cluster_gru(a["x"], a["w"], a["b"], a["h0"], a["bs"], False,
                                                   True, *cluster)


def test_the_gpu_check_points_plan_persistent_partitions():
    """Not vacuous: the points plan the partitions the runs below exercise."""
    kinds = {(k[4], k[5], k[11], k[12] > 1, k[3]) for k in PLANS}
    print(len(PLANS), sorted(kinds), sorted({k[13:] for k in PLANS if k[5] == "cluster"}))
    assert len(PLANS) >= 30
    # Slice groups of 2 and 4, padded and unpadded tiles (the sweep's pins).
    for group_pad in ((1, 8), (2, 0), (2, 8), (4, 0)):
        assert any(k[5] == "cluster" and k[13:] == group_pad for k in PLANS), group_pad
    for need in [(False, "cluster", "mma16", False, 1), (True, "cluster", "mma16", False, 1),
                 (True, "cluster", "tf32", False, 1), (False, "grid", "fma", False, 1),
                 (False, "grid", "tf32", False, 1), (True, "grid", "mma16", False, 1),
                 (True, "grid", "fma", True, 1), (False, "grid", "mma16", False, 2)]:
        assert need in kinds, need
    # The backward with both directions in one launch, K split or not.
    assert {(True, "grid", "mma16", False, 2), (True, "grid", "mma16", True, 2)} & kinds
    # More than one m-tile of units per backward CTA (J > 16), every math.
    wide = {(k[11], k[3]) for k in PLANS if k[4] and k[5] == "grid" and k[7] > 16}
    print("wide backward CTAs:", sorted(wide))
    assert {("mma16", 1), ("tf32", 1), ("fma", 1), ("mma16", 2)} <= wide, wide
    # Forward CTAs of 16 units (3 or 4 m-tiles), every math, both cells.
    wide_fwd = {(k[0], k[11]) for k in PLANS if not k[4] and k[5] == "grid" and k[7] == 16}
    print("wide forward CTAs:", sorted(wide_fwd))
    assert {(c, m) for c in ("LSTM", "GRU") for m in ("mma16", "tf32", "fma")} <= wide_fwd, wide_fwd


@pytest.mark.parametrize("key", sorted(PLANS, key=str), ids=lambda k: "-".join(map(str, k)))
def test_each_planned_partition_equals_the_spec(key):
    """The emulator of the plan's tier, with exactly the plan's partition,
    in float64: every output (y, h_n, c_n, workspace; the backward's
    gradients) equal to the CPU spec to 1e-12, padded and packed. The
    cluster tier's emulator derives its partition from (J, R, P) as the
    planner did: the plan's NG slices of P CTAs must be what that gives (the
    backward's P CTAs of J units must cover H)."""
    pl, where = PLANS[key]
    cell, H, B, dirs, backward = key[:5]
    if pl["tier"] == "cluster" and backward:
        assert pl["P"] == -(-H // pl["J"]) and pl["directions"] == dirs, pl
    elif pl["tier"] == "cluster":
        ctas = pl["slices"]
        assert pl["NG"] == -(-ctas // pl["P"]) and pl["P"] == -(-ctas // pl["NG"]), pl
    for packed in (False, True):
        if packed and B == 1:
            continue  # one row: nothing to shrink
        exp, got = run_plan(pl, cell, H, B, dirs, backward, packed, seed=H + B)
        assert_equal_to_float64(exp, got, f"{where[0]} {key} packed={packed} ")


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
@pytest.mark.parametrize("backward, pin", [(False, ""), (False, "group=2"), (True, "")],
                         ids=["forward", "forward-group2", "backward"])
def test_headline_launch_runs_on_the_kernels_bit_for_bit(backward, pin):
    """LSTM fp16 H=768 B=16 (the published point) as an H100/H200 with the
    cluster kernels plans it: the cluster tier forward the GPU check times
    beside the planner's grid tier (16-CTA clusters, 2 replicas), and in
    groups of 2 slices (unpadded tiles), which the sweep times; the grid
    tier backward, the planner's (the cluster backward's own test is below). The kernels' source on the fibers with
    exactly that partition equals the emulator bit for bit, with every
    shared- and global-memory check on (T=2: one exchange)."""
    from test_persistent_simt import assert_same_bits, simt_bwd

    dev, tiers = DEVICES["h100" if backward else "h100-cluster"]
    pl = plan_of("LSTM", "fp16", 768, 16, 1024, dev, tiers, backward, pin=pin)
    print(pl)
    a = make_inputs("LSTM", F16, 768, 16, 2, False, seed=3)
    J, R, eb = pl["J"], pl["R"], pl["elem_bytes"]
    if not backward:
        assert pl["tier"] == "cluster" and pl["group"] == (2 if pin else 1), pl
        args = (a["x"], a["w"], a["h0"], a["c0"], a["bs"], False, True, J, R, pl["P"], eb, 5)
        group = (pl["group"], pl["red_pad"])
        emu = OPS.persistent_emulate_cluster_lstm(*args, 0, pl["push"] == "slice", *group)
        got = OPS.persistent_simt_cluster_lstm(*args, pl["push"] == "slice", *group)
    else:
        assert pl["tier"] == "grid" and pl["math"] == "mma16", pl
        a = with_grads(a, "LSTM", F16, seed=3)
        _, saved = spec_bwd("LSTM", a, False)
        S = pl["ksplit"]
        emu = emulate_bwd("LSTM", a, saved, False, J, R, pl["hbuf_rows"], eb, seed=5, S=S)
        got = simt_bwd("LSTM", a, saved, False, J, R, pl["hbuf_rows"], eb, seed=5, S=S)
    assert_same_bits(emu, got, f"headline {'backward' if backward else 'forward'} {pl}")


def smallest_grid_plan(backward, math_kind, takes_units):
    """(key, plan) of the GPU check's one-direction grid plans of this pass
    and math whose J `takes_units` accepts: the smallest (H x grid)."""
    found = [(k, pl) for k, (pl, _) in PLANS.items()
             if k[4] == backward and k[5] == "grid" and k[3] == 1 and takes_units(pl["J"])
             and pl["math"] == math_kind]
    assert found, f"no planned {math_kind} {'backward' if backward else 'forward'} of these units"
    return min(found, key=lambda kp: (kp[0][1] * kp[1]["grid"], str(kp[0])))


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
@pytest.mark.parametrize("math_kind", ["mma16", "tf32", "fma"])
def test_a_planned_wide_backward_runs_on_the_kernel_bit_for_bit(math_kind):
    """A grid backward the planner runs with more than 16 units per CTA (J >
    16: several m-tiles, K split): of the GPU check's one-direction plans
    with that math, the smallest (H x grid). The kernel's source on the fibers
    with exactly that partition equals the emulator bit for bit, under the
    fibers' shared- and global-memory checks (T=2: one exchange). One
    replica of 10 batch rows (two n-tiles, the last one partial), so the
    fibers take seconds, not a minute: the CTA's own work (units, m-tiles,
    K part, register fragments, h buffer) is the plan's; its replicas and
    rows run on the emulator above."""
    from test_persistent_simt import assert_same_bits, simt_bwd

    key, pl = smallest_grid_plan(True, math_kind, lambda J: J > 16)
    print(key, pl)
    cell, H = key[:2]
    B = 10
    dtype = F16 if math_kind == "mma16" else F32
    a = with_grads(make_inputs(cell, dtype, H, B, 2, False, seed=4), cell, dtype, seed=4)
    _, saved = spec_bwd(cell, a, False)
    args = (cell, a, saved, False, pl["J"], 1, pl["hbuf_rows"], pl["elem_bytes"])
    kw = {"seed": 6, "fma": math_kind == "fma", "S": pl["ksplit"]}
    emu = emulate_bwd(*args, **kw)
    got = simt_bwd(*args, **kw)
    assert_same_bits(emu, got, f"wide backward {key}")


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
@pytest.mark.parametrize("math_kind", ["mma16", "tf32", "fma"])
def test_a_planned_wide_forward_runs_on_the_kernel_bit_for_bit(math_kind):
    """A grid forward the planner runs with 16 units per CTA (3 or 4
    m-tiles, all at once): of the GPU check's one-direction plans with
    that math, the smallest (H x grid). The kernel's source on the fibers
    with exactly that partition's CTA equals the emulator bit for bit, under
    the fibers' shared- and global-memory checks (T=2: one exchange; one
    replica of 10 rows, as the wide backward's test above)."""
    from test_persistent_simt import assert_same_bits, simt

    key, pl = smallest_grid_plan(False, math_kind, lambda J: J == 16)
    print(key, pl)
    cell, H = key[:2]
    dtype = F16 if math_kind == "mma16" else F32
    a = make_inputs(cell, dtype, H, 10, 2, False, seed=4)
    args = (cell, a, False, pl["J"], 1, pl["hbuf_rows"], pl["elem_bytes"])
    kw = {"seed": 6, "fma": math_kind == "fma"}
    assert_same_bits(emulate(*args, **kw), simt(*args, **kw), f"wide forward {key}")


# ------------------------------------------- the cluster backward's candidates
def cluster_bwd_candidates():
    """{(cell, H, B, P, J, R, elem bytes): (candidate, [where])} over the
    training points of both GPU presets on the H100 with clusters
    (persistent_cluster_bwd_plan: the cluster backward's best partition,
    whatever the grid tier's), less those PLANS already runs (the GPU
    check's points): the standard preset's other cluster partitions, and
    those the grid tier's model beats (none at the GPU check's points; at
    the standard preset's LSTM H=768 B=8 it does)."""
    dev, _ = DEVICES["h100"]
    planned = {(k[0], k[1], k[2], PLANS[k][0]["P"], PLANS[k][0]["J"], PLANS[k][0]["R"],
                PLANS[k][0]["elem_bytes"]) for k in PLANS if k[4] and k[5] == "cluster"}
    out = {}
    for p in dict.fromkeys(gpu_check_points() + grid.preset("standard", "cuda")):
        if p.is_cell or p.mode != "training":
            continue
        cell, dirs = p.cell.upper(), 2 if p.bidirectional else 1
        dtype, tf32 = DTYPES[p.dtype]
        c = json.loads(OPS.persistent_cluster_bwd_plan(cell, dtype, p.H, p.B, p.T, tf32, dev,
                                                       dirs))
        if c["tier"] != "cluster":
            continue
        key = (cell, p.H, p.B, c["P"], c["J"], c["R"], c["elem_bytes"])
        if key not in planned:
            out.setdefault(key, (c, []))[1].append(f"{p.dtype}/T={p.T}/dirs={dirs}")
    return out


CLUSTER_BWD = cluster_bwd_candidates()


def test_the_cluster_backward_at_the_published_point():
    """Not vacuous: the published point's backward on the cluster tier, as
    the GPU check runs it beside the planner's grid backward (16-CTA
    clusters of 48 units, 2 replicas, M = 6, 40 fragments per warp in shared
    memory), LSTM and GRU reach it, one direction and both in one launch."""
    dev, tiers = DEVICES["h100-cluster"]
    pl = plan_of("LSTM", "fp16", 768, 16, 1024, dev, tiers, True)
    print(pl, sorted(CLUSTER_BWD))
    assert (pl["tier"], pl["P"], pl["J"], pl["R"]) == ("cluster", 16, 48, 2), pl
    assert pl["mstride"] == 6 and pl["w_smem_frags"] == 40, pl
    planned = [PLANS[k][0] for k in PLANS if k[4] and k[5] == "cluster"]
    assert CLUSTER_BWD, "no candidate the planner leaves: the emulator test below would be empty"
    assert {k[0] for k in PLANS if k[4] and k[5] == "cluster"} == {"LSTM", "GRU"}
    assert {p["mstride"] for p in planned} >= {4, 6}
    assert {p["directions"] for p in planned} == {1, 2}


@pytest.mark.parametrize("key", sorted(CLUSTER_BWD, key=str), ids=lambda k: "-".join(map(str, k)))
def test_each_cluster_backward_candidate_equals_the_spec(key):
    """The cluster backward emulator with exactly the candidate's partition,
    float64, padded and packed: every gradient equal to the CPU spec to
    1e-12 (T=2: one exchange)."""
    from test_persistent_emulator_cluster_bwd import emulate as emulate_cluster_bwd

    c, where = CLUSTER_BWD[key]
    cell, H, B, P, J, R, eb = key
    for packed in (False, True):
        if packed and B == 1:
            continue
        a = with_grads(make_inputs(cell, F64, H, B, 2, packed, seed=H + B), cell, F64, seed=H + B)
        exp, saved = spec_bwd(cell, a, False)
        got = emulate_cluster_bwd(cell, a, saved, False, J, R, eb, seed=H + B)
        assert_equal_to_float64(exp, got, f"{where[0]} {key} packed={packed} ")


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
def test_headline_cluster_backward_runs_on_the_kernel_bit_for_bit():
    """The published point's backward on the cluster tier as the GPU check
    launches it on an H100/H200: the cluster backward kernel's source
    on the fibers with exactly that partition equals the emulator bit for
    bit (T=2: one exchange)."""
    from test_persistent_emulator_cluster_bwd import emulate as emulate_cluster_bwd
    from test_persistent_simt import assert_same_bits
    from test_persistent_simt_cluster_bwd import simt as simt_cluster_bwd

    dev, tiers = DEVICES["h100-cluster"]
    pl = plan_of("LSTM", "fp16", 768, 16, 1024, dev, tiers, True)
    assert pl["tier"] == "cluster" and pl["elem_bytes"] == 2, pl
    a = with_grads(make_inputs("LSTM", F16, 768, 16, 2, False, seed=3), "LSTM", F16, seed=3)
    _, saved = spec_bwd("LSTM", a, False)
    emu = emulate_cluster_bwd("LSTM", a, saved, False, pl["J"], pl["R"], 2, seed=5)
    got = simt_cluster_bwd("LSTM", a, saved, False, pl["J"], pl["R"], 2, seed=5)
    assert_same_bits(emu, got, f"headline cluster backward {pl}")
