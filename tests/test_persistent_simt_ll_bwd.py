"""The grid backward kernel with its exchanges through LL words
(RNNFUSE_PERSISTENT_EXCHANGE=ll; kernel_bwd.cuh LL = true), executed on the
CPU by the fibers (simt.h), as test_persistent_simt.py runs it with flags:
- the gate gradients of each step (PersistBwdArgs::ll_xch; ll_layout.h
  make_grid_ll_bwd): each CTA stores its items' gate gradients as 8-byte
  words with the step's tag (16-bit types: two rows a word), and polls its
  part's columns until they carry the step before's tag; no step flag;
- a K split's partial sums (ll_partials, poll_other_parts): each part stores
  its sums of a chunk's items as words with the chunk's tag, and the other
  parts poll them; no chunk flag, release or barrier.
That changes how values travel, not which are added in which order, so
every gradient must equal the emulator's bit for bit, as with the flags:
every type, packed and reversed, replicas, several chunks a step, whole K
and K split, both item slots, any fiber order. A word past the awaited tag
traps. Two buffers by step parity and two slots by chunk parity are the
protocol's: with one of either (faults the test build can inject) a CTA
overwrites words another has yet to read, and the run must fail.
"""
from __future__ import annotations

import json

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_bidir_inputs, make_inputs
from test_persistent_emulator_bwd import spec_bwd, with_grads
from test_persistent_plan import H100
from test_persistent_simt import (CASES, KIND_IDS, KINDS, assert_same_bits, bidir_backward,
                                  check_backward_cases, simt_bwd)

OPS = torch.ops.rnnfuse
BF16, F16, F32 = torch.bfloat16, torch.float16, torch.float32

# (J, R, hbuf_rows, S): whole K, K split 2 and 4, replicas, h buffers of 8
# rows (several chunks a step), a split of 64 units, a ragged last unit
# group (H = 40 or 38, J = 16).
LL_PARTITIONS = [(16, 1, 32, 1), (8, 2, 16, 1), (16, 1, 32, 2), (16, 1, 8, 4), (16, 2, 8, 2),
                 (40, 2, 8, 4), (64, 1, 16, 4)]

needs_cuda_build = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                      reason="the kernels' host execution is built with CUDA")


@pytest.fixture
def ll(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "ll")
    monkeypatch.delenv("RNNFUSE_SIMT_LL_ONE_BUFFER", raising=False)
    monkeypatch.delenv("RNNFUSE_SIMT_LL_ONE_SLOT", raising=False)


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
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_bidirectional_backward_equals_the_emulator(cell, ll):
    """Both directions' backward in one launch (CTAs [grid, 2 grid) run the
    reverse direction), each with its own gate-gradient words, packed."""
    a = make_bidir_inputs(cell, BF16, 24, 9, 5, True, seed=7)
    J = 8 if cell == "LSTM" else 10
    if cell == "LSTM":
        fwd = OPS.persistent_emulate_lstm_bidir(a["x"], a["w"], a["w_rev"], a["h0"], a["c0"],
                                                a["bs"], True, J, 1, 32, 2, 0)
    else:
        fwd = OPS.persistent_emulate_gru_bidir(a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"],
                                               a["h0"], a["bs"], True, J, 1, 32, 2, 0)
    emu, got = bidir_backward(cell, a, fwd[0], fwd[-1])
    assert_same_bits(emu, got, f"LL {cell} bidir backward")


def count_faults(run, good, seeds):
    """How many seeds' runs fail (a trap, or the watchdog's deadlock); a run
    that passes must still give the good run's bits."""
    failed = 0
    for s in seeds:
        try:
            got = run(s)
        except RuntimeError as e:
            assert "__trap" in str(e) or "deadlock" in str(e), str(e)
            failed += 1
        else:
            assert_same_bits(good[s], got, f"seed {s}: a run that passes is still right")
    return failed


@needs_cuda_build
@pytest.mark.parametrize("fault, S", [("RNNFUSE_SIMT_LL_ONE_SLOT", 2),
                                      ("RNNFUSE_SIMT_LL_ONE_BUFFER", 1)],
                         ids=["one-slot", "one-buffer"])
def test_one_slot_or_one_buffer_fails(monkeypatch, ll, fault, S):
    """The faults the protocol's second slot and second buffer prevent:
    - one slot for every chunk's partial sums (K split 2): a part that has
      read the others' sums of chunk c stores chunk c + 1's over its own
      words of chunk c, which a lagging part may not have read yet;
    - one buffer for both step parities' gate gradients (whole K): a CTA
      that gathered step t - 1 writes step t over words a lagging CTA has
      yet to read.
    The lagging reader then sees a later tag and traps (or waits forever:
    the watchdog). The same inputs and seeds pass without the fault, and
    with the flags the fault has nothing to break."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT_WATCHDOG_S", "1")
    a = with_grads(make_inputs("LSTM", BF16, 32, 24, 4, False, seed=5), "LSTM", BF16)
    _, saved = spec_bwd("LSTM", a, False)
    J = 16 if S > 1 else 8
    seeds = range(8)

    def run(s):
        return simt_bwd("LSTM", a, saved, False, J, 1, 8, 2, seed=s, S=S)

    good = [run(s) for s in seeds]
    monkeypatch.setenv(fault, "1")
    failed = count_faults(run, good, seeds)
    print(f"{fault}: {failed} of {len(seeds)} seeds failed")
    assert failed > 0
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "flags")
    for s in seeds:
        assert_same_bits(good[s], run(s), f"flags seed {s}")


@needs_cuda_build
def test_odd_hidden_size_keeps_the_flags(ll):
    """A 16-byte poll takes two columns' words: an odd H is refused by the
    layout (grid_bwd_ll_error) and runs the flags, with the same bits."""
    check_backward_cases("GRU", KINDS[1], [((37, 9, 4), False, False)], [(16, 1, 32, 2)], 90,
                         label="odd H ")


def backward_plan(H, B, ll_exchange, tf32=True, dtype=F16):
    return json.loads(OPS.persistent_plan("LSTM", dtype, H, B, 1024, 0, 1, tf32, H100, True, False,
                                          True, 1, True, "", ll_exchange))


def test_the_backward_plan_says_how_its_exchanges_travel():
    """The planner's backward: "exchange" is "ll" on request (the gate
    gradients), "partials" too where it splits K ("none" without a split);
    the partition is the same either way (the model does not rate LL yet);
    an odd H keeps the flags."""
    split = backward_plan(768, 16, False)
    print(split)
    assert split["tier"] == "grid" and split["ksplit"] > 1
    assert (split["exchange"], split["partials"]) == ("flags", "flags")
    ll = backward_plan(768, 16, True)
    assert (ll["exchange"], ll["partials"]) == ("ll", "ll")
    assert {k: v for k, v in ll.items() if k not in ("partials", "exchange")} == \
        {k: v for k, v in split.items() if k not in ("partials", "exchange")}
    whole = backward_plan(256, 16, True)
    print(whole)
    assert whole["tier"] == "grid" and whole["ksplit"] == 1
    assert (whole["exchange"], whole["partials"]) == ("ll", "none")
    odd = backward_plan(255, 16, True)
    assert odd["tier"] == "grid" and odd["exchange"] == "flags", odd


@needs_cuda_build
@pytest.mark.parametrize("cell, H", [("LSTM", 40), ("GRU", 48)])
def test_ll_gate_gradients_of_several_poll_rounds(cell, H, ll):
    """More word pairs a gather than one round polls (256 threads x 4): whole
    K, 16 word rows of G*H / 2 = 80 (LSTM) or 72 (GRU) pairs; neither
    divides 256, so a round's pair stepping carries into the next word row
    (poll_ll_rows)."""
    check_backward_cases(cell, KINDS[1], [((H, 32, 3), False, False)], [(16, 1, 32, 1)], 95,
                         label="LL rounds ")
