"""The backward planner's cluster tier (csrc/persistent/plan.cpp
plan_backward) on fake device properties: where the cluster tier's
backward (cluster_bwd_layout.h) is built and the grid tier's backward
cannot run, the backward plan is the cluster candidate, field for field,
for one direction or both in one launch; otherwise the grid tier's plan is
unchanged (an H200 measured the grid backward faster at most points,
though the model ranks the cluster's first). Exact fp32 and devices without
clusters keep the grid tier;
with the grid tier excluded (RNNFUSE_PERSISTENT_BWD_TIER=cluster) what the
cluster tier cannot take runs per step, saying why; pins select among its
partitions; the partitions it picks for the GPU tests' driver cases
(test_cuda_persistent_cluster_bwd.py) equal the CPU spec on the emulator."""
from __future__ import annotations

import json
import math

import pytest
import torch

from test_persistent_plan import A100, BF16, F16, F32, H100, H100_CLUSTERS, device, plan

OPS = torch.ops.rnnfuse
H100C = H100_CLUSTERS
# The cluster backward's plan fields beside the backward's common ones.
CLUSTER_BWD_FIELDS = {"P", "J", "R", "grid", "directions", "hbuf_rows", "chunk", "mtiles",
                      "mstride", "own_ktiles", "kk", "w_frags", "w_smem_frags", "smem_bytes",
                      "elem_bytes", "math", "us_per_step", "passes", "terms_us"}


def candidate(cell, dtype, H, B, tf32=True, dev=H100C, directions=1):
    """The cluster backward's best partition alone (persistent_cluster_bwd_plan)."""
    return json.loads(OPS.persistent_cluster_bwd_plan(cell, dtype, H, B, 1024, tf32, dev,
                                                      directions))


def bwd(cell, dtype, H, B, **kw):
    kw.setdefault("dev", H100C)
    return plan(cell, dtype, H, B, backward=True, **kw)


SHAPES = [(cell, dtype, H, B)
          for cell in ("LSTM", "GRU")
          for dtype in (F16, BF16, F32)
          for H, B in ((64, 8), (256, 16), (512, 8), (512, 64), (768, 16), (768, 64), (1024, 16),
                       (200, 256))]


@pytest.mark.parametrize("directions", [1, 2])
@pytest.mark.parametrize("cell, dtype, H, B", SHAPES, ids=str)
def test_the_grid_tier_first_and_the_candidate_field_for_field(cell, dtype, H, B, directions):
    grid = bwd(cell, dtype, H, B, directions=directions)  # no cluster kernels: the grid tier's
    both = bwd(cell, dtype, H, B, cluster=True, directions=directions)
    only = bwd(cell, dtype, H, B, grid=False, cluster=True, directions=directions)
    c = candidate(cell, dtype, H, B, directions=directions)
    assert grid["tier"] != "cluster"
    if c["tier"] == "cluster":
        assert only["tier"] == "cluster" and only["pass"] == "backward" and only["reason"] == ""
        assert set(only) == CLUSTER_BWD_FIELDS | {"pass", "tier", "reason"}, only
        assert {k: only[k] for k in CLUSTER_BWD_FIELDS} == {k: c[k] for k in CLUSTER_BWD_FIELDS}
        assert only["math"] == ("tf32" if dtype == F32 else "mma16")
    assert both == (only if grid["tier"] == "per-step" and c["tier"] == "cluster" else grid)


def test_the_cluster_backward_has_a_candidate_at_most_training_points():
    """Not vacuous: the cluster backward can take most of the shapes above,
    the published point (LSTM fp16 H=768 B=16: 16-CTA clusters of 48 units,
    2 replicas) among them, though with both tiers built the grid's runs
    wherever it fits (all of them here)."""
    tiers = [bwd(*s, grid=False, cluster=True)["tier"] for s in SHAPES]
    print({t: tiers.count(t) for t in set(tiers)})
    assert tiers.count("cluster") >= len(SHAPES) // 2
    assert all(bwd(*s, cluster=True)["tier"] == "grid" for s in SHAPES)
    p = bwd("LSTM", F16, 768, 16, grid=False, cluster=True)
    assert (p["tier"], p["P"], p["J"], p["R"], p["mstride"]) == ("cluster", 16, 48, 2, 6), p


@pytest.mark.parametrize("dev", [H100, A100, device(max_clusters=0, max_clusters16=0)],
                         ids=["no-clusters-reported", "a100", "occupancy-refuses"])
def test_devices_without_usable_clusters_keep_the_grid_backward(dev):
    for cell, dtype, H, B in (("LSTM", F16, 768, 16), ("GRU", BF16, 512, 64)):
        assert bwd(cell, dtype, H, B, dev=dev, cluster=True) == bwd(cell, dtype, H, B, dev=dev)


def test_exact_fp32_keeps_the_grid_backward():
    for cell in ("LSTM", "GRU"):
        exact = bwd(cell, F32, 512, 8, tf32=False, cluster=True)
        assert exact["tier"] == "grid" and exact["math"] == "fma", exact


def test_both_directions_in_one_cluster_backward_launch():
    """directions=2: each direction's replicas on their own clusters, all
    co-resident for the modelled step (2R clusters of the size), so a
    direction may get fewer replicas than alone, and the same step where it
    keeps them."""
    took = 0
    for cell in ("LSTM", "GRU"):
        for H, B in ((256, 64), (512, 64), (768, 16), (200, 256)):
            one = bwd(cell, BF16, H, B, cluster=True, grid=False)
            two = bwd(cell, BF16, H, B, cluster=True, grid=False, directions=2)
            if two["tier"] != "cluster":
                continue
            took += 1
            active = 16 if two["P"] <= 8 else 7  # H100_CLUSTERS: co-resident clusters per size
            assert two["directions"] == 2 and 2 * two["R"] <= active and 2 * two["grid"] <= 132
            if (one["P"], one["R"]) == (two["P"], two["R"]):
                assert two["us_per_step"] == one["us_per_step"]
            else:
                assert two["us_per_step"] >= one["us_per_step"]
    assert took >= 6


@pytest.mark.parametrize("kwargs, reason", [
    (dict(dtype=F32, tf32=False), "TF32 off"),
    (dict(H=2048), "no cluster backward partition"),
    (dict(dev=A100), "thread-block clusters"),
    (dict(T=2), "fewer than 3 steps"),
    (dict(proj=128), "proj_size"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_cluster_only_backward_fallbacks_name_their_reason(kwargs, reason):
    """With the grid tier excluded, what the cluster backward cannot take runs
    per step, saying why."""
    kw = {"dtype": BF16, "H": 256, "B": 16, "dev": H100C, **kwargs}
    p = plan("LSTM", backward=True, grid=False, cluster=True, **kw)
    assert p["tier"] == "per-step" and reason in p["reason"], p


def pinned(cell, dtype, H, B, pin, grid=True):
    out = json.loads(OPS.persistent_plan(cell, dtype, H, B, 1024, 0, 1, True, H100C, grid, True,
                                         True, 1, True, pin))
    print(pin, out)
    return out


@pytest.mark.parametrize("cell, dtype, H, B", [("LSTM", BF16, 512, 64), ("GRU", F16, 768, 16),
                                               ("LSTM", F32, 256, 32)])
def test_pins_select_among_the_cluster_backward_partitions(cell, dtype, H, B):
    """(R, P) pins with the grid tier excluded: each plans that cluster size
    (J = H / P in whole 8-unit vectors) or nothing, saying the pin; the
    unpinned plan is the fastest of them by the model."""
    free = pinned(cell, dtype, H, B, "", grid=False)
    assert free["tier"] == "cluster", free
    found = []
    for R in (1, 2, 4, 8):
        for P in range(2, 17):
            p = pinned(cell, dtype, H, B, f"R={R},P={P}", grid=False)
            if p["tier"] == "per-step":
                assert "matches the pin R=%d,P=%d" % (R, P) in p["reason"], p
                continue
            J = math.ceil(math.ceil(H / P) / 8) * 8
            assert (p["tier"], p["R"], p["P"], p["J"]) == ("cluster", R, P, J), p
            assert p["P"] == math.ceil(H / J), "the last CTA owns units"
            found.append(p)
    assert len(found) >= 2
    assert free["us_per_step"] == pytest.approx(min(p["us_per_step"] for p in found), abs=1e-3)


def test_grid_only_pins_leave_the_grid_backward():
    """A K-split pin or a J no cluster partition has admits only grid plans;
    with the grid tier excluded as well, the pin's reason. A J only the
    cluster tier has (48) leaves the grid tier nothing: the cluster's."""
    assert pinned("LSTM", F16, 768, 16, "")["tier"] == "grid"
    assert pinned("LSTM", F16, 768, 16, "J=48")["tier"] == "cluster"
    assert pinned("LSTM", F16, 768, 16, "ksplit=2")["tier"] == "grid"
    assert pinned("LSTM", F16, 768, 16, "J=16")["tier"] == "grid"
    only = pinned("LSTM", F16, 768, 16, "J=16", grid=False)
    assert only["tier"] == "per-step" and "matches the pin J=16" in only["reason"], only


def gpu_test_partitions():
    """(cell, dtype, H, B, packed) of the GPU tests' driver cases, as the
    cluster-only backward plans them on an H100/H200 (T does not change a
    partition)."""
    from test_cuda_persistent_cluster_bwd import DRIVER_CASES, DRIVER_SHAPES
    shapes = [(c.mode, c.dtype, c.H, c.B, c.packed) for c in DRIVER_CASES]
    shapes += [(cell, dtype, H, B, packed) for cell, dtype, H, B, _, packed, _ in DRIVER_SHAPES]
    return shapes


@pytest.mark.parametrize("cell, dtype, H, B, packed", gpu_test_partitions(), ids=str)
def test_the_gpu_tests_partitions_equal_the_spec(cell, dtype, H, B, packed):
    """The partition each GPU driver test will launch (cluster sizes 5 to 16,
    M = 1, 2, 6, up to 8 replicas), on the cluster backward emulator in
    float64: every gradient equal to the CPU spec to 1e-12, forward and
    reverse."""
    from test_persistent_emulator import make_inputs
    from test_persistent_emulator_bwd import assert_equal_to_float64, spec_bwd, with_grads
    from test_persistent_emulator_cluster_bwd import emulate

    p = bwd(cell, dtype, H, B, grid=False, cluster=True)
    assert p["tier"] == "cluster", p
    for reverse in (False, True):
        a = with_grads(make_inputs(cell, torch.float64, H, B, 3, packed, seed=H), cell,
                       torch.float64, seed=B)
        exp, saved = spec_bwd(cell, a, reverse)
        got = emulate(cell, a, saved, reverse, p["J"], p["R"], p["elem_bytes"], seed=1)
        assert_equal_to_float64(exp, got, f"{p} reverse={reverse} ")


def test_the_cluster_backward_where_the_grid_cannot_run():
    """20 SMs (MPS, a green context): no grid backward of LSTM fp16 H=512
    fits (its CTAs each hold a slice of W_hh^T in registers), one cluster
    does: the cluster tier's plan, the candidate's partition."""
    small = device(avail=20, max_clusters=15, max_clusters16=7)
    grid = bwd("LSTM", F16, 512, 16, dev=small)
    both = bwd("LSTM", F16, 512, 16, dev=small, cluster=True)
    c = candidate("LSTM", F16, 512, 16, dev=small)
    assert grid["tier"] == "per-step", grid
    assert both["tier"] == "cluster" and (both["P"], both["R"]) == (c["P"], c["R"]), (both, c)
