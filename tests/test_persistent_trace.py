"""The grid forward's step trace (RNNFUSE_PERSISTENT_TRACE_CTA; args.h
kTraceHeader), run by the kernel's own source on the fibers (simt.h, whose
cycle counter counts calls): thread 0 of the traced CTA stamps each phase
of each step it processes, in order; steps its replica has no rows for stay
zero; tracing changes no output bit; persistent_take_trace hands each trace
out once. persist_check.step_phases turns a trace into ns per phase (a
synthetic trace here: the GPU's are read in the GPU check)."""
from __future__ import annotations

import pytest
import torch

import rnnfuse.ops  # noqa: F401
from rnnfuse import _build_config
from test_persistent_emulator import make_inputs
from test_persistent_simt import assert_same_bits, simt

OPS = torch.ops.rnnfuse
PHASES = 6  # args.h kTracePhases
HEADER = 4


def take():
    return OPS.persistent_take_trace(torch.empty(0)).tolist()


def drain():
    try:
        take()
    except RuntimeError:
        pass


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
    trace = take()
    assert len(trace) == HEADER + 6 * PHASES
    t0, c0, t1, c1 = trace[:HEADER]
    assert c1 > c0 > 0 and t1 >= t0
    steps = [trace[HEADER + s * PHASES:HEADER + (s + 1) * PHASES] for s in range(6)]
    print(steps)
    # Replica 1 holds batch rows 1, 3, 5, ...: rows while bs >= 2.
    for s, st in enumerate(steps):
        if int(a["bs"][s]) >= 2:
            assert all(x < y for x, y in zip(st, st[1:])), (s, st)
            assert c0 < st[0] and st[-1] < c1
        else:
            assert st == [0] * PHASES, (s, st)
    live = [st for st in steps if st[0]]
    assert all(p[-1] < q[0] for p, q in zip(live, live[1:]))
    with pytest.raises(RuntimeError, match="no traced persistent forward"):
        take()  # taken once


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
