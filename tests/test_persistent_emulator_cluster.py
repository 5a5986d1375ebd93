"""The CPU emulator of the cluster tier's kernel (csrc/persistent/
emulate_cluster.cpp) against the CPU kernels (the executable spec) and
against the grid tier's emulator.

The emulator runs cluster_layout.h's decomposition (slices dealt to the
CTAs of a cluster, W fragments in register or shared-memory slots, staged
x_proj, the cell state kept per CTA) and its mbarrier protocol: every
st.async is a message delivered at a random later moment; a phase
completes only when its arrival came and all its declared bytes landed; a
message must land in the phase it was meant for and never in a buffer its
destination still has to read; every h element read must be the previous
step's. A CTA's step runs bracket by bracket (the kernel's code between
barriers), so the pipelined push (each slice's h sent while later slices
compute) is interleaved with the peers' steps and deliveries as on a GPU;
both push modes are proven. Float64 runs prove the decomposition exactly; every dtype must equal
the grid emulator bit for bit (the cluster kernel computes each slice with
the grid kernel's functions), which test_persistent_emulator.py ties to the
float64 reference.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from test_persistent_emulator import BF16, F16, F32, F64, emulate, make_inputs, spec

OPS = torch.ops.rnnfuse


def cemu(cell, a, reverse, J, R, S, eb, seed=0, fault=0, slice_push=True, group=1, red_pad=8):
    if cell == "LSTM":
        return OPS.persistent_emulate_cluster_lstm(a["x"], a["w"], a["h0"], a["c0"], a["bs"],
                                                   reverse, True, J, R, S, eb, seed, fault,
                                                   slice_push, group, red_pad)
    return OPS.persistent_emulate_cluster_gru(a["x"], a["w"], a["b"], a["h0"], a["bs"], reverse,
                                              True, J, R, S, eb, seed, fault, slice_push, group,
                                              red_pad)


# (J, R, S, elem_bytes): units per slice, replicas, the most CTAs per
# cluster. Clusters of 2 to 16 CTAs, ragged last CTAs (fewer slices), both
# fragment layouts, one and several replicas.
PARTITIONS = {
    "LSTM": [(8, 1, 2, 2), (8, 2, 4, 4), (4, 3, 16, 2), (8, 1, 3, 2), (8, 2, 8, 4)],
    "GRU": [(10, 1, 2, 2), (10, 2, 4, 4), (10, 3, 16, 2), (10, 1, 5, 4)],
}
# (H, B, T): odd sizes; H=45 bf16 has k-tiles on only 3 of 8 warps and a pad
# element past H in the last CTA's words; H=130 at S=2 puts W fragments in
# shared memory (more than 16 pairs per warp); B=37 over 3 replicas.
SHAPES = [(40, 5, 6), (45, 37, 7), (17, 20, 4), (130, 3, 5)]


def _close(exp, got, tol, what):
    assert len(exp) == len(got)
    for k, (e, g) in enumerate(zip(exp, got)):
        assert e.shape == g.shape, (what, k, e.shape, g.shape)
        err = (e - g).abs().max().item() if e.numel() else 0.0
        assert err <= tol, f"{what} out{k}: {err:.3e}"


@pytest.mark.parametrize("slice_push", [True, False], ids=["slice-push", "step-push"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_float64_decomposition_equals_the_spec(cell, packed, reverse, slice_push):
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_inputs(cell, F64, H, B, T, packed, seed=i)
        exp = spec(cell, a, reverse)
        for J, R, S, eb in PARTITIONS[cell]:
            if R > B:
                continue
            _close(exp, cemu(cell, a, reverse, J, R, S, eb, seed=i, slice_push=slice_push), 1e-12,
                   f"H{H} B{B} T{T} J{J} R{R} S{S} eb{eb}")


@pytest.mark.parametrize("H, S", [(40, 4), (80, 4), (60, 2)])
def test_pipelined_push_of_words_that_straddle_slices(H, S):
    """GRU with 5 bf16 units (10 bytes) per slice: a slice ends mid-word, so
    the word it shares with the next slice must leave with the next one
    (earlier, the emulator reports h pushed before it was computed; never,
    a deadlock). Several chunks of rows (B=70 in one replica)."""
    a = make_inputs("GRU", F64, H, 70, 5, packed=True, seed=H)
    exp = spec("GRU", a, True)
    for seed in range(3):
        _close(exp, cemu("GRU", a, True, 5, 1, S, 2, seed=seed), 1e-12, f"H{H} S{S}")


def shrinking_batch(H, B, T, seed):
    """LSTM inputs whose batch shrinks from B to 8 rows after the first
    step: at every later step the continuing rows all lie in the first chunk
    of 32 while the last chunk is still read."""
    a = make_inputs("LSTM", F64, H, B, T, packed=False, seed=seed)
    bs = torch.tensor([B] + [8] * (T - 1), dtype=torch.long)
    a["x"] = torch.randn(int(bs.sum()), 4 * H, generator=torch.Generator().manual_seed(seed),
                         dtype=F64)
    a["bs"] = bs
    return a


def test_pipelined_push_sends_the_last_slice_after_the_last_chunk():
    """A chunk's last slice sent once that chunk is done (fault 7) lets a
    peer complete its phase and push the next step into a buffer this CTA
    is still reading in a later chunk: the emulator must report it, and the
    kernel's order (every chunk's last slice at the step's end) must pass."""
    a = shrinking_batch(64, 70, 6, seed=21)
    exp = spec("LSTM", a, False)
    for seed in range(4):
        _close(exp, cemu("LSTM", a, False, 8, 1, 4, 2, seed=seed), 1e-12, "kernel order")
    caught = 0
    for seed in range(16):  # the race needs a peer to run ahead: most schedules show it
        try:
            cemu("LSTM", a, False, 8, 1, 4, 2, seed=seed, fault=7)
        except RuntimeError as e:
            assert "write after read" in str(e), str(e)
            caught += 1
    print(f"fault 7 caught in {caught} of 16 schedules")
    assert caught >= 4


@pytest.mark.parametrize("dtype", [BF16, F32], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_push_modes_agree_to_the_bit(cell, dtype):
    """Where h goes out changes when peers may read it, never what they read."""
    eb = 4 if dtype == F32 else 2
    J = 8 if cell == "LSTM" else 10
    a = make_inputs(cell, dtype, 96, 40, 7, packed=True, seed=11)
    for x, y in zip(cemu(cell, a, True, J, 2, 4, eb, seed=1),
                    cemu(cell, a, True, J, 2, 4, eb, seed=2, slice_push=False)):
        assert torch.equal(x, y)


@pytest.mark.parametrize("dtype", [F16, BF16, F32, F64], ids=str)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bitwise_equal_to_the_grid_tier(cell, dtype):
    """Same units and replicas: the same numbers to the last bit, whatever
    the cluster size, padded or packed, forwards or in reverse."""
    eb = 4 if dtype == F32 else 2
    J = 8 if cell == "LSTM" else 10
    for packed, reverse in ((False, False), (True, True), (True, False)):
        a = make_inputs(cell, dtype, 96, 19, 9, packed, seed=7)
        grid = emulate(cell, a, reverse, J, 2, 32, eb)
        for S in (2, 4, 16):
            for g, c in zip(grid, cemu(cell, a, reverse, J, 2, S, eb, seed=S)):
                assert torch.equal(g, c), (packed, reverse, S)


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_delivery_order_does_not_change_a_bit(cell):
    a = make_inputs(cell, BF16, 64, 20, 6, packed=True, seed=2)
    J = 8 if cell == "LSTM" else 10
    runs = [cemu(cell, a, True, J, 2, 4, 2, seed=s) for s in (0, 1, 2, 3)]
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(x, y)


# The checker's own tests: each broken protocol must be reported, under
# both push modes (fault 6 breaks the pipelined push only).
FAULTS = [
    (1, "protocol violation", "no-wait"),          # stale h is read
    (2, "protocol violation|deadlock", "one-row-short"),  # the phase ends early (or, if every
                                                   # byte landed first, never: tx-count < 0)
    (3, "protocol violation", "single-buffer"),    # a peer overwrites h still to be read
    (4, "deadlock", "peer-skipped"),               # the phase never completes
    (5, "deadlock", "own-bytes-expected"),         # the CTA's own bytes expected too
    (6, "not computed", "slice-pushed-early"),     # a slice pushed before the barrier after
                                                   # its gate math: stale h would travel
]


@pytest.mark.parametrize("fault, error, slice_push", [
    pytest.param(f, e, push, id=f"{name}-{'slice' if push else 'step'}-push")
    for f, e, name in FAULTS for push in (True, False) if push or f != 6])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_broken_protocol_is_caught(cell, fault, error, slice_push):
    a = make_inputs(cell, F64, 40, 9, 5, packed=False, seed=4)
    J = 8 if cell == "LSTM" else 10
    for seed in range(3):
        with pytest.raises(RuntimeError, match=error):
            cemu(cell, a, False, J, 1, 4, 2, seed=seed, fault=fault, slice_push=slice_push)


@pytest.mark.parametrize("eb", [2, 4])
def test_w_fragments_in_shared_memory(eb):
    """H=200 in clusters of two: 13 slices per CTA, 26 (bf16) or 52 (TF32
    k-tiles) fragment pairs per warp, 16 in registers and the rest in the
    shared-memory slots (each slot used once, checked by the emulator)."""
    for cell, J in (("LSTM", 8), ("GRU", 10)):
        a = make_inputs(cell, F64, 200, 11, 4, packed=True, seed=eb)
        _close(spec(cell, a, False), cemu(cell, a, False, J, 1, 2, eb), 1e-12, f"{cell} eb{eb}")


def test_a_reverse_packed_replica_that_joins_late():
    """Reverse packed with 3 replicas: replica 2's rows join only at the last
    steps (all from h0, nothing to wait for), while peers already push."""
    gen = torch.Generator().manual_seed(5)
    a = make_inputs("LSTM", F64, 24, 9, 8, packed=False, seed=5)
    lengths = [8, 7, 6, 5, 4, 3, 2, 2, 1]
    bs = torch.tensor([sum(1 for n in lengths if n > t) for t in range(8)], dtype=torch.long)
    a["x"] = torch.randn(int(bs.sum()), 4 * 24, generator=gen, dtype=F64)
    a["bs"] = bs
    _close(spec("LSTM", a, True), cemu("LSTM", a, True, 8, 3, 2, 2), 1e-12, "late joiners")


def test_rejects_partitions_the_kernel_cannot_run():
    a = make_inputs("LSTM", F64, 4, 4, 3, False)
    with pytest.raises(RuntimeError, match="at least two"):
        cemu("LSTM", a, False, 8, 1, 16, 2)  # one slice: no cluster of two CTAs
    a = make_inputs("GRU", F64, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="4-byte words"):
        cemu("GRU", a, False, 5, 1, 8, 2)  # 5 bf16 units per CTA: not whole words
    with pytest.raises(RuntimeError, match="2 to 16"):
        cemu("GRU", a, False, 10, 1, 17, 2)
    a = make_inputs("LSTM", BF16, 40, 4, 3, False)
    with pytest.raises(RuntimeError, match="elem_bytes"):
        cemu("LSTM", a, False, 8, 1, 4, 4)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_bidirectional_layer_as_one_cluster_launch_per_direction(cell, packed):
    """Where one cluster-tier launch per direction beats one grid launch for
    both, each direction runs on its column blocks of the bidirectional
    op's (N, 2*G*H) projection and (N, 2*H) output through row strides
    (x_proj staged from strided rows, y written to strided rows): float64
    equal to the CPU bidirectional op to 1e-12, and in bf16 bit for bit the
    grid tier's bidirectional emulation."""
    from test_persistent_emulator import emulate_bidir, make_bidir_inputs, spec_bidir
    J = 8 if cell == "LSTM" else 10
    for i, (H, B, T) in enumerate(SHAPES):
        a = make_bidir_inputs(cell, F64, H, B, T, packed, seed=30 + i)
        for R, S, eb in ((1, 4, 2), (2, 2, 4)):
            if R > B:
                continue
            _close(spec_bidir(cell, a), cemu_bidir(cell, a, J, R, S, eb, seed=i), 1e-12,
                   f"H{H} B{B} R{R} S{S}")
        b = {k: (v.to(BF16) if isinstance(v, torch.Tensor) and k != "bs" else v) for k, v in a.items()}
        for e, g in zip(emulate_bidir(cell, b, J, 1, 32, 2), cemu_bidir(cell, b, J, 1, 4, 2)):
            assert torch.equal(e, g)


def cemu_bidir(cell, a, J, R, S, eb, seed=0, group=1, red_pad=8):
    if cell == "LSTM":
        return OPS.persistent_emulate_cluster_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"], a["c0"],
                                                         a["bs"], True, J, R, S, eb, seed, group,
                                                         red_pad)
    return OPS.persistent_emulate_cluster_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"],
                                                    a["h0"], a["bs"], True, J, R, S, eb, seed,
                                                    group, red_pad)


@pytest.mark.parametrize("dtype, fma", [(F16, False), (BF16, False), (F32, False), (F32, True)],
                         ids=["fp16", "bf16", "tf32", "fp32"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_every_partition_gives_the_same_bits(cell, dtype, fma):
    """An output's arithmetic is one slice's (slice.cuh: the same k-tiles per
    warp, warps added in order) whatever the units per CTA, the replicas,
    the h buffer or the tier: every partition a pin can select
    (RNNFUSE_PERSISTENT_PIN) gives the same bits. persist_check's sweep
    requires it of the forward partitions on the GPU."""
    eb = 4 if dtype == F32 else 2
    j_max = 8 if cell == "LSTM" else 10
    a = make_inputs(cell, dtype, 96, 37, 7, packed=True, seed=13)
    ref = emulate(cell, a, False, j_max, 1, 32, eb, fma=fma)
    for J, R, hb in ((j_max // 2, 1, 32), (j_max, 2, 16), (j_max // 2, 4, 8), (j_max, 3, 32)):
        for x, y in zip(ref, emulate(cell, a, False, J, R, hb, eb, seed=J + R, fma=fma)):
            assert torch.equal(x, y), ("grid", J, R, hb)
    if fma:
        return  # the cluster tier has no exact-FMA kernel
    for J, R, S in ((j_max, 1, 8), (j_max // 2, 2, 16), (j_max, 4, 4), (j_max // 2, 1, 2)):
        for x, y in zip(ref, cemu(cell, a, False, J, R, S, eb, seed=S)):
            assert torch.equal(x, y), ("cluster", J, R, S)
    # Slice groups (10 rows per replica at R=4: chunks of 16, groups of 2;
    # 8 rows at R=5: chunks of 8, groups of 4), short last groups included.
    for J, R, S, group, pad in ((j_max, 4, 4, 2, 8), (j_max // 2, 4, 16, 2, 0),
                                (j_max, 5, 2, 4, 8), (j_max, 5, 4, 2, 0)):
        for x, y in zip(ref, cemu(cell, a, False, J, R, S, eb, seed=S, group=group, red_pad=pad)):
            assert torch.equal(x, y), ("cluster", J, R, S, group, pad)


# (H, B, J, R, S, group, red_pad): several slices per CTA, at most 16 rows
# per replica (group 2) or 8 (group 4). H=64 LSTM: 8 slices; S=3 gives
# CTAs of 3, 3 and 2 slices (a short last group of 1 in groups of 2); S=2
# at group 4 gives two full groups; H=100 with J=4: 25 slices, S=4 gives 7,
# 7, 7, 4 (groups 4 + 3, a hole); B=3 under a 8-row n-tile; H=130 at S=2
# puts W pairs in shared memory in group order.
GROUPED = {
    "LSTM": [(64, 7, 8, 1, 3, 2, 8), (64, 13, 8, 1, 2, 2, 0), (64, 8, 8, 1, 2, 4, 8),
             (100, 15, 4, 2, 4, 4, 0), (130, 3, 8, 1, 2, 4, 8), (130, 16, 8, 2, 4, 2, 8)],
    "GRU": [(64, 7, 10, 1, 3, 2, 8), (100, 8, 10, 1, 2, 4, 0), (130, 9, 10, 2, 2, 4, 8),
            (130, 16, 5, 1, 8, 2, 0)],
}


@pytest.mark.parametrize("slice_push", [True, False], ids=["slice-push", "step-push"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_slice_groups_equal_the_spec(cell, packed, reverse, slice_push):
    """Groups of 2 and 4 slices per bracket (cluster_layout.h): each slice
    in its own accumulator slots, the group's sums side by side in one
    tile (padded or not), one epilogue pass per group, pushes by group; a
    CTA's last group may be short. Float64 equal to the spec to 1e-12."""
    for i, (H, B, J, R, S, group, pad) in enumerate(GROUPED[cell]):
        a = make_inputs(cell, F64, H, B, 5, packed, seed=50 + i)
        _close(spec(cell, a, reverse),
               cemu(cell, a, reverse, J, R, S, 2, seed=i, slice_push=slice_push, group=group,
                    red_pad=pad), 1e-12, f"H{H} B{B} J{J} R{R} S{S} group{group} pad{pad}")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_a_group_pushed_early_is_caught(cell):
    """Fault 6 with groups of 2: a group's words leave one bracket early,
    before the barrier after its gate math; the emulator must see stale h."""
    a = make_inputs(cell, F64, 64, 7, 5, packed=False, seed=4)
    J = 8 if cell == "LSTM" else 10
    for seed in range(3):
        with pytest.raises(RuntimeError, match="not computed"):
            cemu(cell, a, False, J, 1, 2, 2, seed=seed, fault=6, group=2)


def test_rejects_slice_groups_the_kernel_cannot_run():
    a = make_inputs("LSTM", F64, 64, 20, 3, False)
    with pytest.raises(RuntimeError, match="accumulator slots"):
        cemu("LSTM", a, False, 8, 1, 2, 2, group=2)  # 20 rows: chunks of 24 take 3 of 4 slots
    a = make_inputs("LSTM", F64, 64, 5, 3, False)
    with pytest.raises(RuntimeError, match="1, 2 or 4 slices"):
        cemu("LSTM", a, False, 8, 1, 2, 2, group=3)
    with pytest.raises(RuntimeError, match="larger than a CTA's slices"):
        cemu("LSTM", a, False, 8, 1, 8, 2, group=2)  # clusters of 8: one slice per CTA
    with pytest.raises(RuntimeError, match="padding"):
        cemu("LSTM", a, False, 8, 1, 2, 2, group=2, red_pad=4)
