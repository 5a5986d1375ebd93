"""The grid backward kernel with its K split's partial sums through LL words
(kernel_bwd.cuh with PersistBwdArgs::ll_partials, poll_other_parts),
executed on the CPU by the fibers (simt.h), as test_persistent_simt.py runs
it with chunk flags (RNNFUSE_PERSISTENT_EXCHANGE=ll; the gate gradients
still go through xch and the step flags).

Each part stores its sums of a chunk's items as 8-byte words (the float and
the chunk's tag), and the other parts poll those words until they carry
the tag: no barrier, release, chunk flag or acquire. That changes how the
sums travel, not which are added in which order, so every gradient must
equal the emulator's bit for bit, as with the flags: every type, packed
and reversed, replicas, several chunks a step, both item slots, any fiber
order. A word past the awaited tag traps. Two slots are the protocol's: with
one (a fault the test build can inject) a part overwrites sums another has
yet to read, and the run must fail.
"""
from __future__ import annotations

import json

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_inputs
from test_persistent_emulator_bwd import spec_bwd, with_grads
from test_persistent_plan import H100
from test_persistent_simt import (CASES, KIND_IDS, KINDS, assert_same_bits, check_backward_cases,
                                  simt_bwd)

OPS = torch.ops.rnnfuse
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32

# (J, R, hbuf_rows, S): K split 2 and 4, replicas, h buffers of 8 rows
# (several chunks a step), a split of 64 units.
LL_PARTITIONS = [(16, 1, 32, 2), (16, 1, 8, 4), (16, 2, 8, 2), (40, 2, 8, 4), (64, 1, 16, 4)]

needs_cuda_build = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                      reason="the kernels' host execution is built with CUDA")


@pytest.fixture
def ll(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "ll")
    monkeypatch.delenv("RNNFUSE_SIMT_LL_ONE_BUFFER", raising=False)


@needs_cuda_build
@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_partials_backward_equals_the_emulator_bit_for_bit(cell, kind, ll):
    check_backward_cases(cell, kind, CASES, LL_PARTITIONS, seed0=70, label="LL partials ")


@needs_cuda_build
@pytest.mark.parametrize("kind", [KINDS[0], KINDS[3]], ids=[KIND_IDS[0], KIND_IDS[3]])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_partials_of_both_item_slots(cell, kind, ll):
    """Chunks of 17 to 32 rows: threads poll both item slots' sums from the
    3 other parts (6 words in flight), B = 21 shrinking to 5."""
    check_backward_cases(cell, kind, [((40, 21, 4), True, False)], [(64, 1, 32, 4)], 80,
                         label="LL partials ")


@needs_cuda_build
def test_ll_partials_fiber_order_changes_no_bit(ll):
    a = with_grads(make_inputs("GRU", BF16, 34, 19, 6, True, seed=3), "GRU", BF16)
    _, saved = spec_bwd("GRU", a, True)
    runs = [simt_bwd("GRU", a, saved, True, 16, 2, 8, 2, seed=s, S=2) for s in (1, 2, 3, 4)]
    for s, r in enumerate(runs[1:], 2):
        assert_same_bits(runs[0], r, f"LL partials seed {s}")


@needs_cuda_build
def test_one_slot_for_every_chunk_fails(monkeypatch, ll):
    """The fault the protocol's second slot prevents: with every chunk's
    sums in one slot, a part that has read the others' sums of chunk c
    stores chunk c + 1's over its own words of chunk c, which a lagging part
    may not have read yet (several chunks a step: within a step only the
    partial sums order the parts). That part then sees a later tag and traps
    (or waits forever: the watchdog). The same inputs and seeds pass with
    two slots, and with the chunk flags the fault has nothing to break."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT_WATCHDOG_S", "1")
    a = with_grads(make_inputs("LSTM", BF16, 32, 24, 4, False, seed=5), "LSTM", BF16)
    _, saved = spec_bwd("LSTM", a, False)
    seeds = range(8)
    good = [simt_bwd("LSTM", a, saved, False, 16, 1, 8, 2, seed=s, S=2) for s in seeds]
    monkeypatch.setenv("RNNFUSE_SIMT_LL_ONE_BUFFER", "1")
    failed = 0
    for s in seeds:
        try:
            got = simt_bwd("LSTM", a, saved, False, 16, 1, 8, 2, seed=s, S=2)
        except RuntimeError as e:
            assert "__trap" in str(e) or "deadlock" in str(e), str(e)
            failed += 1
        else:
            assert_same_bits(good[s], got, f"seed {s}: a run that passes is still right")
    print(f"one slot: {failed} of {len(seeds)} seeds failed")
    assert failed > 0
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "flags")
    for s in seeds:
        assert_same_bits(good[s], simt_bwd("LSTM", a, saved, False, 16, 1, 8, 2, seed=s, S=2),
                         f"flags seed {s}")


def backward_plan(H, B, ll_exchange, tf32=True, dtype=F16):
    return json.loads(OPS.persistent_plan("LSTM", dtype, H, B, 1024, 0, 1, tf32, H100, True, False,
                                          True, 1, True, "", ll_exchange))


def test_the_backward_plan_says_how_its_partial_sums_travel():
    """The planner's backward: "partials" is "ll" on request where it splits
    K, "flags" otherwise, "none" without a split; the partition is the same
    either way (the model does not rate LL yet)."""
    split = backward_plan(768, 16, False)
    print(split)
    assert split["tier"] == "grid" and split["ksplit"] > 1 and split["partials"] == "flags"
    ll = backward_plan(768, 16, True)
    assert ll["partials"] == "ll"
    assert {k: v for k, v in ll.items() if k != "partials"} == \
        {k: v for k, v in split.items() if k != "partials"}
    whole = backward_plan(256, 16, True)
    print(whole)
    assert whole["tier"] == "grid" and whole["ksplit"] == 1 and whole["partials"] == "none"
