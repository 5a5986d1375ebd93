"""The grid tier's step trace (RNNFUSE_PERSISTENT_TRACE_CTA; args.h
kTraceHeader), forward and backward, run by the kernels' own source on the
fibers (simt.h, whose cycle counter counts calls): thread 0 of the traced
CTA stamps each phase of each step it processes, in order; steps its
replica has no rows for stay zero; tracing changes no output bit;
persistent_take_trace hands each pass's trace out once.
persist_check.step_phases turns a trace into ns per phase (a synthetic trace
here: the GPU's are read in the GPU check)."""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_inputs
from test_persistent_emulator_bwd import spec_bwd, with_grads
from test_persistent_simt import assert_same_bits, simt, simt_bwd

OPS = torch.ops.rnnfuse
PHASES = 6  # args.h kTracePhases
BWD_PHASES = 7  # args.h kBwdTracePhases
HEADER = 4


def take(backward=False):
    return OPS.persistent_take_trace(torch.empty(0), backward).tolist()


def drain():
    for backward in (False, True):
        try:
            take(backward)
        except RuntimeError:
            pass


def assert_stamped_in_order(trace, phases, has_rows):
    """Every step with rows (has_rows[s]) stamped phase after phase, between
    the CTA's start and end; the others all zero; steps one after another."""
    assert len(trace) == HEADER + len(has_rows) * phases
    t0, c0, t1, c1 = trace[:HEADER]
    assert c1 > c0 > 0 and t1 >= t0
    steps = [trace[HEADER + s * phases:HEADER + (s + 1) * phases] for s in range(len(has_rows))]
    print(steps)
    for s, st in enumerate(steps):
        if has_rows[s]:
            assert all(x < y for x, y in zip(st, st[1:])), (s, st)
            assert c0 < st[0] and st[-1] < c1
        else:
            assert st == [0] * phases, (s, st)
    live = [st for st in steps if st[0]]
    assert all(p[-1] < q[0] for p, q in zip(live, live[1:]))


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
@pytest.mark.parametrize("exchange", ["flags", "ll"])
def test_trace_stamps_every_phase_of_every_step_in_order(monkeypatch, exchange):
    """LSTM bf16 H=32, a packed batch shrinking from 9 to 1 over 6 steps, 2
    replicas of 4 CTAs: CTA 5 (replica 1) has rows while the batch is 2 or
    more, none after; its stamps rise phase by phase and step by step."""
    monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", exchange)
    a = make_inputs("LSTM", torch.bfloat16, 32, 9, 6, True, seed=4)
    a["bs"] = torch.tensor([9, 7, 4, 2, 1, 1])
    a["x"] = a["x"][:int(a["bs"].sum())]
    plain = simt("LSTM", a, False, 8, 2, 8, 2, seed=1)
    drain()
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TRACE_CTA", "5")
    traced = simt("LSTM", a, False, 8, 2, 8, 2, seed=1)
    assert_same_bits(plain, traced, "traced")
    # Replica 1 holds batch rows 1, 3, 5, ...: rows while bs >= 2.
    assert_stamped_in_order(take(), PHASES, [int(b) >= 2 for b in a["bs"]])
    with pytest.raises(RuntimeError, match="no traced persistent forward"):
        take()  # taken once


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
@pytest.mark.parametrize("S", [1, 2], ids=["whole-K", "K-split-2"])
def test_backward_trace_stamps_every_phase_of_every_step_in_order(monkeypatch, S):
    """The backward of the same packed batch (walked in reverse: batch 1, 1,
    2, 4, 7, 9), 2 replicas of 2 x S CTAs of 16 units (S: the K split): CTA
    2 S - 1 (replica 1) has rows from the walk's third step on; its seven
    stamps (the K split's parts among them) rise phase by phase and step by
    step. The forward's trace is not touched."""
    a = with_grads(make_inputs("LSTM", torch.bfloat16, 32, 9, 6, True, seed=4), "LSTM",
                   torch.bfloat16)
    a["bs"] = torch.tensor([9, 7, 4, 2, 1, 1])
    rows = int(a["bs"].sum())
    a["x"], a["gy"] = a["x"][:rows], a["gy"][:rows]
    _, saved = spec_bwd("LSTM", a, False)
    plain = simt_bwd("LSTM", a, saved, False, 16, 2, 8, 2, seed=1, S=S)
    drain()
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TRACE_CTA", str(2 * S + 2 * S - 1))
    traced = simt_bwd("LSTM", a, saved, False, 16, 2, 8, 2, seed=1, S=S)
    assert_same_bits(plain, traced, "traced backward")
    walk = [int(b) for b in reversed(a["bs"])]
    assert_stamped_in_order(take(backward=True), BWD_PHASES, [b >= 2 for b in walk])
    with pytest.raises(RuntimeError, match="no traced persistent backward"):
        take(backward=True)  # taken once
    with pytest.raises(RuntimeError, match="no traced persistent forward"):
        take()
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TRACE_CTA", str(4 * S))
    with pytest.raises(RuntimeError, match=f"TRACE_CTA={4 * S}: the launch has {4 * S} CTAs"):
        simt_bwd("LSTM", a, saved, False, 16, 2, 8, 2, seed=1, S=S)


@pytest.mark.skipif(not _build_config.WITH_CUDA,
                    reason="the kernels' host execution is built with CUDA")
def test_trace_cta_is_checked(monkeypatch):
    a = make_inputs("GRU", torch.float16, 20, 4, 3, False, seed=2)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TRACE_CTA", "2")  # 2 CTAs of 10 units
    with pytest.raises(RuntimeError, match="TRACE_CTA=2: the launch has 2 CTAs"):
        simt("GRU", a, False, 10, 1, 32, 2)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TRACE_CTA", "first")
    with pytest.raises(RuntimeError, match="must be a CTA index"):
        simt("GRU", a, False, 10, 1, 32, 2)


def test_step_phases_from_a_trace():
    """2 ns per cycle (globaltimer 1000 -> 1800 over cycles 100 -> 500); 8
    steps of 50 cycles whose phases take 5, 10, 15, 12, 3 cycles, the rest
    before the next step; a step of no rows (zeros) is skipped."""
    from benchmarks.persist_check import step_phases
    trace = [1000, 100, 1800, 500]
    for s in range(9):
        if s == 4:
            trace += [0] * PHASES
            continue
        start = 110 + 50 * s
        trace += [start + d for d in (0, 5, 15, 30, 42, 45)]
    ph = step_phases(trace)
    assert ph["steps"] == 8 and ph["ns_per_cycle"] == pytest.approx(2.0)
    for name, cycles in (("wait", 5), ("gather", 10), ("mma", 15), ("epilogue", 12),
                         ("publish", 3)):
        assert ph[name] == pytest.approx(2.0 * cycles), name
    assert ph["step"] == pytest.approx(100.0)  # 50 cycles between the steps' starts
    assert step_phases([1000, 100, 1800, 500] + [0] * PHASES * 3) is None


def test_backward_step_phases_from_a_trace():
    """The backward's seven stamps a step: the K split's parts (20 cycles)
    between the MMAs and the epilogue; 2.5 ns per cycle (2000 ns over 800
    cycles)."""
    from benchmarks.persist_check import BWD_SPANS, step_phases
    trace = [0, 1000, 2000, 1000 + 100 * 8]
    for s in range(6):
        start = 1010 + 100 * s
        trace += [start + d for d in (0, 4, 14, 30, 50, 62, 65)]
    ph = step_phases(trace, BWD_SPANS)
    assert ph["steps"] == 6 and ph["ns_per_cycle"] == pytest.approx(2.5)
    for name, cycles in (("wait", 4), ("gather", 10), ("mma", 16), ("parts", 20),
                         ("epilogue", 12), ("publish", 3)):
        assert ph[name] == pytest.approx(2.5 * cycles), name
    assert ph["step"] == pytest.approx(250.0)
