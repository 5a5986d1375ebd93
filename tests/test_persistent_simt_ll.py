"""The grid forward kernel with its exchange through LL words (kernel.cuh
with PersistArgs::ll; exchange.cuh gather_ll / publish_ll; ll_layout.h
GridLl), executed on the CPU by the fibers (simt.h), as
test_persistent_simt.py runs it with flags.

The LL exchange changes how h_{t-1} reaches the CTAs, not what they
compute, so every output must equal the emulator's bit for bit, as the
flag exchange's does: in every type, packed and reversed, several
gathers per step, replicas, ragged CTAs, chunks of two item slots, both
directions in one launch, whatever the fibers' order. The fibers let any
CTA lag or run ahead as far as the protocol allows, and a poll that never
sees its tag is a deadlock or the kernel's watchdog; the kernel traps where
a word carries a later step than it waits for. Two buffers are the
protocol's: with one (a fault the test build can inject) a CTA overwrites
words its replica has yet to read, and the run must fail.
"""
from __future__ import annotations


import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import emulate, make_bidir_inputs, make_inputs
from test_persistent_simt import KIND_IDS, KINDS, assert_same_bits, check_forward_cases, simt

pytestmark = pytest.mark.skipif(not _build_config.WITH_CUDA,
                                reason="the kernels' host execution is built with CUDA")

OPS = torch.ops.rnnfuse
BF16, F16 = torch.bfloat16, torch.float16


@pytest.fixture
def ll(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "ll")
    monkeypatch.delenv("RNNFUSE_SIMT_LL_ONE_BUFFER", raising=False)


# (J, R, hbuf_rows): a ragged last CTA, replicas (odd replica rows: a word
# with one row), an h buffer of 8 rows (several gathers a step, each
# starting at a word row), 16 units (4 m-tiles).
PARTITIONS = {"LSTM": [(8, 1, 32), (4, 2, 8), (16, 1, 32), (11, 2, 16)],
              "GRU": [(10, 1, 32), (5, 2, 8), (16, 1, 32), (13, 1, 8)]}
# (H, B, T, packed, reverse): 16-byte h0 gathers (H = 40) and element-wise
# ones (H = 38); a packed batch shrinking (forward) and growing (reverse:
# rows start from h0 mid-sequence, beside rows read from words).
CASES = [(40, 11, 5, False, False), (40, 11, 5, True, True), (38, 7, 4, True, False)]


@pytest.mark.parametrize("kind", KINDS, ids=KIND_IDS)
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_forward_equals_the_emulator_bit_for_bit(cell, kind, ll):
    check_forward_cases(cell, kind, CASES, PARTITIONS[cell], 60, label="LL ")


@pytest.mark.parametrize("kind", [KINDS[0], KINDS[2]], ids=[KIND_IDS[0], KIND_IDS[2]])
@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_chunks_of_two_item_slots(cell, kind, ll):
    """Chunks of 17 to 32 rows (item_bits 5: both item slots, the row pair of
    a word on neighbouring lanes of one slot), B = 21 shrinking to 5."""
    check_forward_cases(cell, kind, [(40, 21, 4, True, False)], [(16, 1, 32)], 50, label="LL ")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_fiber_order_changes_no_bit(cell, ll):
    a = make_inputs(cell, BF16, 34, 19, 6, True, seed=3)
    J = 8 if cell == "LSTM" else 10
    runs = [simt(cell, a, True, J, 2, 16, 2, seed=s) for s in (1, 2, 3, 4)]
    for s, r in enumerate(runs[1:], 2):
        assert_same_bits(runs[0], r, f"LL J{J} seed {s}")


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_ll_bidirectional_launch_equals_the_emulator(cell, ll):
    """Both directions in one launch, each with its own words."""
    a = make_bidir_inputs(cell, BF16, 24, 9, 5, True, seed=7)
    J = 8 if cell == "LSTM" else 10
    if cell == "LSTM":
        args = (a["x"], a["w"], a["w_rev"], a["h0"], a["c0"], a["bs"], True, J, 1, 32, 2, 0)
        emu = OPS.persistent_emulate_lstm_bidir(*args)
        got = OPS.persistent_simt_lstm_bidir(*args)
    else:
        args = (a["x"], a["w"], a["w_rev"], a["b"], a["b_rev"], a["h0"], a["bs"], True, J, 1, 32,
                2, 0)
        emu = OPS.persistent_emulate_gru_bidir(*args)
        got = OPS.persistent_simt_gru_bidir(*args)
    assert_same_bits(emu, got, f"LL {cell} bidir forward")


def test_one_buffer_for_both_parities_fails(monkeypatch, ll):
    """The fault the protocol's second buffer prevents: with both steps'
    words in one buffer, a CTA that gathered step t - 1 writes step t over
    words a lagging CTA of its replica has yet to read. That CTA then sees a
    later tag and traps (or waits forever: the watchdog). The same inputs
    and seeds pass with two buffers, so the fault, not the inputs, fails;
    and without RNNFUSE_PERSISTENT_EXCHANGE=ll the fault has nothing to
    break."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT_WATCHDOG_S", "1")
    a = make_inputs("LSTM", BF16, 32, 8, 6, False, seed=5)
    seeds = range(6)
    good = [simt("LSTM", a, False, 8, 1, 8, 2, seed=s) for s in seeds]
    monkeypatch.setenv("RNNFUSE_SIMT_LL_ONE_BUFFER", "1")
    failed = 0
    for s in seeds:
        try:
            got = simt("LSTM", a, False, 8, 1, 8, 2, seed=s)
        except RuntimeError as e:
            assert "__trap" in str(e) or "deadlock" in str(e), str(e)
            failed += 1
        else:
            assert_same_bits(good[s], got, f"seed {s}: a run that passes is still right")
    print(f"one buffer: {failed} of {len(seeds)} seeds failed")
    assert failed > 0
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "flags")
    for s in seeds:
        assert_same_bits(good[s], simt("LSTM", a, False, 8, 1, 8, 2, seed=s), f"flags seed {s}")


def test_odd_hidden_size_keeps_the_flags(ll):
    """A 16-byte read takes two units' words: an odd H is refused by the
    layout (grid_ll_error) and runs the flag exchange, with the same bits."""
    a = make_inputs("GRU", F16, 37, 9, 4, False, seed=9)
    emu = emulate("GRU", a, False, 10, 1, 32, 2, seed=0)
    assert_same_bits(emu, simt("GRU", a, False, 10, 1, 32, 2, seed=0), "GRU H37")


def test_exchange_variable_is_checked(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", "fast")
    a = make_inputs("LSTM", BF16, 16, 8, 3, False, seed=1)
    with pytest.raises(RuntimeError, match="RNNFUSE_PERSISTENT_EXCHANGE must be 'flags' or 'll'"):
        simt("LSTM", a, False, 8, 1, 32, 2)


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[3]], ids=[KIND_IDS[1], KIND_IDS[3]])
def test_ll_gathers_of_several_poll_rounds(kind, ll):
    """More word pairs a gather than one round polls (256 threads x 8, exact
    fp32 x 4): 16 word rows of 132 pairs (bf16, H = 264) or 32 of 36 (fp32,
    H = 72). A round's pairs step by 256 with a carry into the next word row
    (poll_ll_rows): 132 and 36 do not divide 256, so the carry happens."""
    H = 264 if kind == KINDS[1] else 72
    check_forward_cases("LSTM", kind, [(H, 32, 3, False, False)], [(16, 1, 32)], 90, label="LL ")
