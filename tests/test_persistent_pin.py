"""Pinned partitions (plan.h Pin; RNNFUSE_PERSISTENT_PIN for forward plans,
RNNFUSE_PERSISTENT_BWD_PIN for backward plans): a pin restricts the planner
to the candidates whose plan fields equal it, so a GPU run can time the
latency model's other candidates (benchmarks/persist_check.py's sweep).
Checked on fake devices: the parser's errors, that a pinned plan has the
pinned fields, that the planner's own choice is the fastest pinned
candidate by its model, and that a pin nothing satisfies falls back to the
per-step path with a reason that names it."""
from __future__ import annotations

import itertools
import json

import pytest
import torch

import rnnfuse.ops  # noqa: F401  (registers torch.ops.rnnfuse)
from test_persistent_plan import F16, BF16, F32, H100, H100_CLUSTERS

OPS = torch.ops.rnnfuse


def plan(cell="LSTM", dtype=BF16, H=768, B=16, dev=H100_CLUSTERS, cluster=True, backward=False,
         pin="", tf32=True, grid=True):
    out = json.loads(OPS.persistent_plan(cell, dtype, H, B, 1024, 0, 1, tf32, dev, grid, cluster,
                                         backward, 1, True, pin))
    print(cell, dtype, H, B, repr(pin), out)
    return out


def unpinned(p: dict) -> dict:
    return {k: v for k, v in p.items() if k != "pin"}


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("text, message", [
    ("R=0", "integer from 1 to 4096"),
    ("R=x", "integer from 1 to 4096"),
    ("R=", "integer from 1 to 4096"),
    ("R=2.5", "integer from 1 to 4096"),
    ("R=5000", "integer from 1 to 4096"),
    ("Q=2", "unknown key 'Q'"),
    ("r=2", "unknown key 'r'"),
    ("R=2,R=4", "given twice"),
    ("R=2,", "ends with ','"),
    ("R2", "not KEY=VALUE"),
    ("R=2,,J=8", "not KEY=VALUE"),
])
def test_a_malformed_pin_is_an_error(backward, text, message):
    with pytest.raises(RuntimeError, match=message):
        plan(backward=backward, pin=text)


def test_ksplit_pins_backward_plans_only():
    with pytest.raises(RuntimeError, match="RNNFUSE_PERSISTENT_BWD_PIN"):
        plan(pin="ksplit=2")
    assert plan(backward=True, pin="ksplit=2")["ksplit"] == 2


@pytest.mark.parametrize("backward", [False, True])
def test_no_pin_and_an_empty_pin_are_the_same_plan(backward):
    free = plan(backward=backward)
    assert "pin" not in free
    assert plan(backward=backward, pin="") == free


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("cell, dtype, H, B", [("LSTM", F16, 768, 16), ("GRU", BF16, 512, 64),
                                               ("LSTM", F32, 512, 8)])
def test_pinning_the_chosen_fields_gives_the_same_plan(cell, dtype, H, B, backward):
    free = plan(cell, dtype, H, B, backward=backward)
    assert free["tier"] != "per-step"
    # The grid backward's K split; the forward cluster's slice group (the
    # cluster backward has neither).
    fields = (["R", "J", "P"] + (["ksplit"] if backward and free["tier"] == "grid" else [])
              + (["group"] if free["tier"] == "cluster" and not backward else []))
    text = ",".join(f"{k}={free[k]}" for k in fields)
    pinned = plan(cell, dtype, H, B, backward=backward, pin=text)
    assert pinned["pin"] == text
    assert unpinned(pinned) == free


def candidates(cell, backward):
    """(R, J[, P][, ksplit][, group]) pins: with and without P (a cluster may
    have fewer CTAs than the 8 or 16 the planner tries; the grid tier's P
    follows from J) and the cluster tier's group; for the backward also
    (R, P) for every cluster size (the cluster backward's J follows from P).
    The grid backward's J: one m-tile, half of one, and with K split 2 or 4
    ways 2 or 4 m-tiles; the forward's: a slice's units, half of them, and
    16 (the grid tier's 3 or 4 m-tiles). Together they cover every partition
    the planner considers."""
    G = 4 if cell == "LSTM" else 3
    Js = (16, 8, 32, 64) if backward else (32 // G, 32 // G // 2, 16)
    Ps = (None, 8, 16)
    S = (1, 2, 4) if backward else (1,)
    groups = (None,) if backward else (None, 1, 2, 4)
    Rs = (1, 2, 4, 8, 16)
    for R, J, P, s, g in itertools.product(Rs, Js, Ps, S, groups):
        yield (f"R={R},J={J}" + (f",P={P}" if P else "")
               + (f",ksplit={s}" if backward else "") + (f",group={g}" if g else ""))
    if backward:
        for R, P in itertools.product(Rs, range(2, 17)):
            yield f"R={R},P={P}"


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("cell, dtype, H, B, tf32", [
    ("LSTM", F16, 768, 16, True), ("GRU", BF16, 512, 64, True), ("LSTM", BF16, 512, 256, True),
    ("GRU", F32, 768, 16, True), ("LSTM", F32, 512, 8, False)])
def test_the_planner_takes_the_fastest_pinned_candidate(cell, dtype, H, B, tf32, backward):
    """The pins partition the candidates: every pinned plan has its pinned
    fields, and the unpinned plan is the one the model rates fastest among
    them (the same plan, field for field, where a tie leaves a choice), the
    grid tier's where any grid candidate fits: the cluster tier comes only
    where the grid cannot run (an H200's measurements, plan.cpp)."""
    free = plan(cell, dtype, H, B, backward=backward, tf32=tf32)
    found = []
    for text in candidates(cell, backward):
        p = plan(cell, dtype, H, B, backward=backward, pin=text, tf32=tf32)
        if p["tier"] == "per-step":
            assert "matches the pin " + text in p["reason"]
            continue
        for kv in text.split(","):
            key, value = kv.split("=")
            # A cluster backward splits no K: it matches ksplit=1 only.
            got = p.get("ksplit", 1) if key == "ksplit" else p[key]
            assert got == int(value), (text, p)
        found.append(p)
    assert found, "no pinned candidate fits"
    grid = [p for p in found if p["tier"] == "grid"]
    best = min(p["us_per_step"] for p in grid or found)
    print(f"{len(found)} candidates; chosen {free['us_per_step']}, fastest pinned {best}")
    assert free["us_per_step"] == pytest.approx(best, abs=1e-3)
    assert any(unpinned(p) == free for p in found)


def test_a_pin_nothing_satisfies_falls_back_per_step_and_says_so():
    p = plan(pin="R=3")
    assert p["tier"] == "per-step" and "matches the pin R=3" in p["reason"], p
    b = plan(backward=True, pin="J=5")
    assert b["tier"] == "per-step" and "matches the pin J=5" in b["reason"], b
    # Only the grid tier built: the grid's reason.
    g = plan(cluster=False, pin="R=3")
    assert "no grid partition that fits matches the pin R=3" in g["reason"], g


def test_a_pin_keeps_the_capacity_reasons_where_nothing_fits_anyway():
    """A pin never makes an unfit partition fit: where W_hh fits no CTA the
    reason stays the capacity one."""
    p = plan("LSTM", F32, 2048, 16, dev=H100, cluster=False, pin="R=1")
    assert p["tier"] == "per-step" and "does not fit" in p["reason"], p


def test_pin_selects_the_cluster_size():
    """Both cluster sizes are candidates at LSTM bf16 H=512 (the cluster
    tier alone takes 16), and P picks one: no grid partition has 8 or 16
    CTAs per replica there, so the pin leaves the grid tier nothing."""
    assert plan("LSTM", BF16, 512, 64, grid=False)["P"] == 16
    for size in (8, 16):
        p = plan("LSTM", BF16, 512, 64, pin=f"P={size}")
        assert p["tier"] == "cluster" and p["P"] == size, p


def test_group_pins_forward_cluster_plans_only():
    with pytest.raises(RuntimeError, match="RNNFUSE_PERSISTENT_PIN"):
        plan(backward=True, pin="group=2")
    # A grid plan has no group: with the grid tier alone a group pin matches nothing.
    g = plan(cluster=False, pin="group=1")
    assert g["tier"] == "per-step" and "matches the pin group=1" in g["reason"], g


def test_group_pins_take_the_padded_tile_where_it_fits():
    """Headline LSTM fp16 H=768 B=16 (2 replicas of 8 rows, chunks of 8): in
    groups of 2 the padded partial-sum tiles (24 columns, two of them) do
    not fit beside W, the unpadded ones (16 columns) do; groups of 4 fit
    neither (cluster_layout.h, ClusterSmem). LSTM bf16 H=512 B=8 has the
    room for groups of 4, padded."""
    one = plan("LSTM", F16, 768, 16, pin="R=2,J=8,group=1")
    two = plan("LSTM", F16, 768, 16, pin="R=2,J=8,group=2")
    assert (one["group"], one["red_pad"], two["group"], two["red_pad"]) == (1, 8, 2, 0), (one, two)
    # 2 x 8 x 32 x 16 partial-sum floats either way; a 16-byte push span per
    # group (cluster_layout.h push_span): 6 groups or 3.
    assert one["smem_bytes"] - two["smem_bytes"] == 16 * (6 - 3)
    assert two["smem_bytes"] <= H100_CLUSTERS[4]
    # The model's bracket terms (plan JSON): 6 slices per CTA in 7 brackets or
    # 4; a bracket of 2 slices streams twice the W pairs and issues twice the MMAs.
    assert (one["brackets"], two["brackets"]) == (7, 4)
    for term in ("mma", "w_smem"):
        assert two["bracket_us"][term] == pytest.approx(2 * one["bracket_us"][term], rel=1e-3)
    assert two["bracket_us"]["chain"] == one["bracket_us"]["chain"]
    four = plan("LSTM", F16, 768, 16, pin="R=2,J=8,group=4")
    assert four["tier"] != "cluster" or four["R"] != 2, four
    small = plan("LSTM", BF16, 512, 8, pin="group=4")
    assert small["tier"] == "cluster" and small["red_pad"] == 8 and small["NG"] >= 4, small
