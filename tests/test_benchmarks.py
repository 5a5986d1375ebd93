"""Tests of the benchmark suite (benchmarks/), on the CPU.

What a benchmark run must get right before anyone trusts a ratio: the grids
hold the points the issues list; the correctness gate rejects a wrong
implementation instead of timing it; the two implementations are timed in
alternation and a point whose spread is too wide is NOISY, not a result; the
cuDNN algorithm heuristic matches PyTorch's; the files and their schema are
written; and a tiny end-to-end run works. Stand-in implementations are
torch.nn modules with a defect injected; timings are injected through a fake
clock (no test depends on how fast this machine is).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import (cudnn_algo, gate, gpu_check_report, grid, hostload, measure, noise,
                        physics, plots, probe, report, run, timing, workload)
from benchmarks.grid import Point

REPO = Path(__file__).resolve().parent.parent
TORCH_NN = {"lstm": nn.LSTM, "gru": nn.GRU, "lstmcell": nn.LSTMCell, "grucell": nn.GRUCell}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny shapes gain nothing from intra-op threads, and on a loaded 2-core
    runner thread contention made single calls 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def quiet_host(monkeypatch):
    """No reading of the real machine's load: tests that inject timings must
    not turn NOISY because other jobs share this machine."""
    monkeypatch.setattr(hostload, "snapshot", lambda proc=None: None)


class FakeClock:
    """A clock for timing.time_sides: the k-th timed call lasts durations(k) seconds.

    time_sides reads the clock twice per call (start, stop), so every second
    reading closes a call; calls are numbered in the order they ran.
    """

    def __init__(self, durations):
        self.durations, self.now, self.reads, self.calls = durations, 1000.0, 0, 0

    def __call__(self):
        if self.reads % 2 == 1:
            self.now += self.durations(self.calls)
            self.calls += 1
        self.reads += 1
        return self.now


# ---- grids -------------------------------------------------------------------

def _values(points, field):
    return {getattr(p, field) for p in points}


def test_gpu_standard_covers_every_listed_value():
    pts = grid.gpu_standard()
    assert len(pts) == len(set(pts)), "duplicate points"
    assert _values(pts, "cell") == {"lstm", "gru", "lstmcell", "grucell"}
    assert _values(pts, "dtype") == {"fp32", "tf32", "fp16", "bf16"}
    assert {1, 8, 16, 64, 256} <= _values(pts, "B")
    assert {256, 512, 768, 1024} <= _values(pts, "H")
    assert {128, 1024} <= _values(pts, "T")
    assert _values(pts, "layers") == {1, 2}
    assert _values(pts, "bidirectional") == {False, True}
    assert _values(pts, "mode") == {"inference", "training"}
    assert all(p.I == p.H for p in pts)


def test_gpu_standard_full_sweep_at_t128():
    pts = set(grid.gpu_standard())
    for cell in ("lstm", "gru"):
        for dtype in grid.DTYPES:
            for mode in grid.MODES:
                for b in (1, 8, 16, 64, 256):
                    for h in (256, 512, 768, 1024):
                        assert Point(cell, dtype, 128, b, h, h, 1, False, mode) in pts


@pytest.mark.parametrize("mode", grid.MODES)
def test_gpu_standard_named_points(mode):
    pts = set(grid.gpu_standard())
    # PyTorch's fastrnns default.
    assert Point("lstm", "fp32", 100, 64, 512, 512, 1, False, mode) in pts
    # The published fused-kernel comparison on an H100.
    for dtype in ("fp16", "bf16"):
        assert Point("lstm", dtype, 1024, 16, 768, 768, 1, False, mode) in pts
    # 2 layers and bidirectional at one shape, every cell and dtype.
    for cell in ("lstm", "gru"):
        for dtype in grid.DTYPES:
            for layers, bi in ((2, False), (1, True)):
                assert Point(cell, dtype, 128, 64, 512, 512, layers, bi, mode) in pts


def _cell_point(cell, dtype, B, H, mode):
    return Point(cell, dtype, grid.CELL_CALLS, B, H, H, 1, False, mode)


def test_gpu_standard_cell_points():
    pts = set(grid.gpu_standard())
    for cell in grid.CELL_KINDS:
        for dtype in grid.DTYPES:
            for mode in grid.MODES:
                for b in (1, 64):
                    for h in (128, 512):
                        assert _cell_point(cell, dtype, b, h, mode) in pts


def test_gpu_quick():
    pts = grid.gpu_quick()
    layers = [p for p in pts if not p.is_cell]
    assert _values(layers, "cell") == {"lstm", "gru"}
    assert _values(layers, "dtype") == {"fp32", "bf16"}
    assert _values(layers, "H") == {512} and min(_values(layers, "T")) >= 100
    assert len(_values(layers, "B")) >= 3
    assert _values(pts, "mode") == {"inference", "training"}
    cells = [p for p in pts if p.is_cell]
    assert _values(cells, "cell") == {"lstmcell", "grucell"} and _values(cells, "B") == {1, 64}
    assert len(pts) <= 32, "quick must stay quick (under 2 minutes on the GPU)"


def test_cpu_standard_has_issue_10_points():
    std = set(grid.cpu_standard())
    assert len(std) == len(grid.cpu_standard())
    for cell in ("lstm", "gru"):
        for mode in grid.MODES:
            for b in (1, 64):
                for dtype in ("fp32", "bf16"):  # the README table, and bf16 on the CPU
                    assert Point(cell, dtype, 100, b, 512, 512, 1, False, mode) in std
    for cell in grid.CELL_KINDS:
        for mode in grid.MODES:
            for b in (1, 64):
                for h in (128, 512):
                    assert _cell_point(cell, "fp32", b, h, mode) in std
                assert _cell_point(cell, "bf16", b, 512, mode) in std
    assert len(std) <= 60, "the CPU standard run must stay within ~15 minutes on 2 cores"


def test_cpu_quick():
    quick, std = grid.cpu_quick(), grid.cpu_standard()
    assert 1 in _values(quick, "B") and _values(quick, "dtype") == {"fp32", "bf16"}
    assert _values(quick, "cell") == set(grid.CELLS)
    assert max(p.B * p.H for p in quick if not p.is_cell) <= 16 * 256, "no multi-second points"
    assert len(quick) < len(std)


def test_cell_points_are_single_layer():
    with pytest.raises(ValueError):
        Point("lstmcell", "fp32", 10, 2, 4, 4, layers=2)
    with pytest.raises(ValueError):
        Point("grucell", "fp32", 10, 2, 4, 4, bidirectional=True)
    # A cross product over layers/directions keeps one cell point per shape.
    pts = grid.cross(cells=("lstmcell", "lstm"), dtypes=("fp32",), T=(100,), B=(2,), H=(4,),
                     layers=(1, 2), bidirectional=(False, True), modes=("inference",), cell_T=(7,))
    cells = [p for p in pts if p.is_cell]
    assert cells == [Point("lstmcell", "fp32", 7, 2, 4, 4, 1, False, "inference")]
    assert len(pts) == 1 + 4


def test_preset_dispatch_and_unknown():
    assert grid.preset("quick", "cuda") == grid.gpu_quick()
    assert grid.preset("standard", "cpu") == grid.cpu_standard()
    with pytest.raises(ValueError):
        grid.preset("huge", "cuda")


def test_point_validation_and_id():
    p = Point("lstm", "bf16", 1024, 16, 768, 768, 1, False, "training")
    assert p.id == "lstm-bf16-T1024-B16-I768-H768-L1-uni-training"
    for bad in (dict(cell="rnn"), dict(dtype="fp8"), dict(mode="eval"), dict(B=0)):
        kw = dict(cell="lstm", dtype="fp32", T=2, B=2, I=4, H=4, mode="inference") | bad
        with pytest.raises(ValueError):
            Point(**kw)


def test_cli_point_selection():
    args = run.parse_args(["--cell", "GRU", "--B", "1,16", "--H", "8", "--bidirectional", "0,1",
                           "--mode", "training"])
    pts, preset = run.select_points(args, "cpu")
    assert preset is None and len(pts) == 4
    assert all(p.cell == "gru" and p.I == 8 and p.T == 100 for p in pts)
    # Point flags with a preset filter it.
    args = run.parse_args(["--preset", "standard", "--cell", "lstm", "--dtype", "bf16", "--T", "1024"])
    pts, preset = run.select_points(args, "cuda")
    assert preset == "standard" and pts
    assert all(p.cell == "lstm" and p.dtype == "bf16" and p.T == 1024 for p in pts)
    with pytest.raises(ValueError):
        grid.parse_list("maybe", bool)
    # Cells: T defaults to CELL_CALLS chained calls; --T sets it for both kinds.
    pts, _ = run.select_points(run.parse_args(["--cell", "lstm,LSTMCell", "--B", "1"]), "cpu")
    assert {(p.cell, p.T) for p in pts} == {("lstm", 100), ("lstmcell", grid.CELL_CALLS)}
    pts, _ = run.select_points(run.parse_args(["--cell", "grucell", "--T", "3"]), "cpu")
    assert {p.T for p in pts} == {3} and all(p.is_cell for p in pts)
    with pytest.raises(ValueError):
        run.select_points(run.parse_args(["--cell", "rnn"]), "cpu")
    assert set(run.load_candidates("torch")) == set(grid.CELLS)


# ---- cuDNN algorithm heuristic -------------------------------------------------

H100 = dict(cc=(9, 0), sm_count=132)


def _algo(**kw):
    base = dict(cell="lstm", dtype="fp16", hidden_size=512, input_size=512, batch=64,
                seq_length=100, **H100)
    return cudnn_algo.get_algo(**(base | kw))


@pytest.mark.parametrize("kw, expected", [
    ({}, "PERSIST_STATIC"),                                  # fp16 1-layer LSTM, batch % 8 == 0
    (dict(hidden_size=768, input_size=768, batch=16, seq_length=1024), "PERSIST_STATIC"),  # FlashRNN point
    (dict(dtype="bf16"), "STANDARD"),                        # only half gets persistence
    (dict(dtype="fp32"), "STANDARD"),
    (dict(dtype="tf32"), "STANDARD"),
    (dict(cell="gru"), "STANDARD"),                          # GRU never on sm_80+
    (dict(batch=256), "STANDARD"),                           # batch > 128
    (dict(batch=12), "STANDARD"),                            # batch % 8 != 0
    (dict(batch=128), "PERSIST_STATIC"),
    (dict(num_layers=2), "STANDARD"),
    (dict(bidirectional=True), "STANDARD"),
    (dict(hidden_size=1152, input_size=1152), "STANDARD"),   # H > 1024
    (dict(hidden_size=640, input_size=640), "PERSIST_STATIC"),
    (dict(hidden_size=576, input_size=576), "STANDARD"),     # H % 128 != 0
    (dict(input_size=500), "STANDARD"),                      # I % 128 != 0
    (dict(proj_size=128), "STANDARD"),
    (dict(packed=True), "STANDARD"),
    (dict(hidden_size=192, dtype="bf16"), "PERSIST_STATIC_SMALL_H"),
    (dict(hidden_size=192, dtype="fp32", forward=False), "STANDARD"),  # backward limit is 128
    (dict(hidden_size=128, dtype="fp32", forward=False), "PERSIST_STATIC_SMALL_H"),
    (dict(hidden_size=128, dtype="fp64"), "STANDARD"),       # double never
    (dict(hidden_size=128, proj_size=64), "STANDARD"),       # proj beats small-H
    (dict(hidden_size=128, packed=True), "STANDARD"),
    (dict(cc=(8, 0), sm_count=108), "PERSIST_STATIC"),       # A100
    (dict(cc=(8, 6), sm_count=84), "STANDARD"),              # A40 / sm_86
    (dict(cc=(8, 9), sm_count=58), "STANDARD"),              # L4: < 98 SMs
    (dict(cc=(7, 5), sm_count=40), "STANDARD"),              # Turing excluded
    (dict(cc=(7, 0), sm_count=80), "PERSIST_STATIC"),        # V100, batch 64, T 100
    (dict(cc=(7, 0), sm_count=80, batch=80), "STANDARD"),    # V100's bad batch sizes
    (dict(cc=(7, 0), sm_count=80, batch=64, seq_length=15), "STANDARD"),  # too short for 64
    (dict(cc=(7, 0), sm_count=80, batch=32, seq_length=15), "PERSIST_STATIC"),
    (dict(cc=(7, 0), sm_count=80, cell="gru"), "PERSIST_STATIC"),  # Volta has no GRU exclusion
    (dict(cc=(5, 2), sm_count=24, hidden_size=128, dtype="fp32"), "STANDARD"),  # pre-Pascal: no small-H
])
def test_cudnn_algo_known_cases(kw, expected):
    assert _algo(**kw) == expected


def test_cudnn_algo_for_point_and_errors():
    p = Point("lstm", "fp32", 128, 64, 128, 128, 1, False, "training")
    assert cudnn_algo.algos_for_point(p, (9, 0), 132) == {
        "forward": "PERSIST_STATIC_SMALL_H", "backward": "PERSIST_STATIC_SMALL_H"}
    p = Point("lstm", "fp16", 128, 64, 512, 512, 1, False, "inference")
    assert cudnn_algo.algos_for_point(p, (9, 0), 132) == {"forward": "PERSIST_STATIC", "backward": None}
    with pytest.raises(ValueError):
        _algo(dtype="int8")


# ---- physics, timing, flags --------------------------------------------------------

def test_recurrent_flops():
    p = Point("lstm", "bf16", 1024, 16, 512, 512, 1, False, "inference")
    assert physics.recurrent_flops(p) // 1024 == 2 * 16 * 512 * 4 * 512  # 33.6 M per step
    t = Point("gru", "bf16", 10, 16, 512, 512, 2, True, "training")
    assert physics.recurrent_flops(t) == 3 * 10 * 2 * 2 * (2 * 16 * 512 * 3 * 512)
    d = physics.derived(p, 1.0, 2, {"gemm_tflops": {"bf16": 800.0}, "copy_gbps": 3000.0})
    assert d["us_per_step"] == pytest.approx(1000 / 1024)
    assert d["tflops"] == pytest.approx(physics.recurrent_flops(p) / 1e-3 / 1e12)
    assert d["frac_gemm_peak"] == pytest.approx(d["tflops"] / 800)
    assert d["whh_from_memory_us"] == pytest.approx(4 * 512 * 512 * 2 / 3e12 * 1e6)
    # A cell point is counted and timed per call: both products, no division by T.
    c = Point("grucell", "fp32", 10, 64, 256, 512, mode="training")
    assert physics.recurrent_flops(c) == 3 * 2 * 64 * (256 + 512) * 3 * 512
    d = physics.derived(c, 0.5, 4, {})
    assert d["us_per_step"] == pytest.approx(500.0)
    assert d["tflops"] == pytest.approx(physics.recurrent_flops(c) / 0.5e-3 / 1e12)


def test_timing_summary_and_repeat_bounds():
    t = timing.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median_ms, t.p10_ms, t.p90_ms, t.min_ms, t.max_ms, t.repeats) == (3.0, 1.0, 5.0, 1.0, 5.0, 5)
    xs = [float(x) for x in range(1, 22)]  # 21 samples: nearest rank, no interpolation
    t = timing.summarize(xs[::-1])
    assert (t.p10_ms, t.median_ms, t.p90_ms) == (3.0, 11.0, 19.0)
    calls = []
    budget = timing.Budget(seconds=0.0, warmup=2, min_repeats=4, max_repeats=6)
    t = timing.time_fn(lambda i: calls.append(i), torch.device("cpu"), budget)
    assert t.repeats == 4 and len(calls) == 2 + 4
    assert timing.peak_memory(lambda: None, torch.device("cpu")) is None


def test_time_sides_alternates_repeat_by_repeat():
    log = []
    sides = [timing.Side(lambda i: log.append(("A", i)), before=lambda: log.append("clear A")),
             timing.Side(lambda i: log.append(("B", i)))]
    budget = timing.Budget(seconds=0.0, warmup=2, min_repeats=4, max_repeats=4)
    times = timing.time_sides(sides, torch.device("cpu"), budget)
    assert [len(t) for t in times] == [4, 4]
    calls = [e for e in log if e != "clear A"]
    # Warm-up (2) and timed repeats (4), both alternated: A B, B A, A B, ...
    assert calls == [("A", 0), ("B", 0), ("B", 1), ("A", 1),
                     ("A", 0), ("B", 0), ("B", 1), ("A", 1), ("A", 2), ("B", 2), ("B", 3), ("A", 3)]
    # Every A call has its gradient clearing right before it, outside the timing.
    assert all(log[k - 1] == "clear A" for k, e in enumerate(log) if isinstance(e, tuple) and e[0] == "A")


def test_time_sides_reads_the_clock_and_sizes_repeats():
    # Side A takes 0.1 s, side B 0.3 s; 1 s each on average -> 2 / 0.4 = 5 repeats.
    order = []
    sides = [timing.Side(lambda i: order.append("A")), timing.Side(lambda i: order.append("B"))]
    clock = FakeClock(lambda k: 0.1 if order[k] == "A" else 0.3)
    budget = timing.Budget(seconds=1.0, warmup=1, min_repeats=2, max_repeats=100)
    a, b = timing.time_sides(sides, torch.device("cpu"), budget, clock=clock)
    assert a == pytest.approx([100.0] * 5) and b == pytest.approx([300.0] * 5)
    assert timing.paired_ratios(a, b) == pytest.approx([1 / 3] * 5)
    with pytest.raises(ValueError):
        timing.paired_ratios([1.0], [1.0, 2.0])


def test_math_mode_sets_and_restores_tf32():
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    with workload.math_mode("fp32") as flags:
        assert flags == {"cudnn_allow_tf32": False, "matmul_allow_tf32": False}
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    with workload.math_mode("tf32"):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


# ---- the correctness gate rejects wrong implementations ----------------------------

class _ScaleGrad(torch.autograd.Function):
    """Identity forward, scaled backward: right outputs, wrong gradients."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.scale, None


class OffByALittleLSTM(nn.LSTM):
    """A plausible bug: outputs off by 1% (e.g. a bias added twice somewhere)."""

    def forward(self, x, hx=None):
        y, state = super().forward(x, hx)
        return y * 1.01, state


class WrongGradLSTM(nn.LSTM):
    def forward(self, x, hx=None):
        y, state = super().forward(x, hx)
        return _ScaleGrad.apply(y, 0.9), state


class NaNGRU(nn.GRU):
    def forward(self, x, hx=None):
        y, h = super().forward(x, hx)
        y = y.clone()
        y[-1, 0, 0] = float("nan")
        return y, h


class WrongFinalStateGRU(nn.GRU):
    def forward(self, x, hx=None):
        y, h = super().forward(x, hx)
        return y, torch.zeros_like(h)


TINY = dict(T=6, B=3, I=5, H=7)


def _gate(cell, candidate_cls, mode, dtype="fp32", **shape):
    p = Point(cell, dtype, mode=mode, **(TINY | shape))
    base, cand = workload.build_pair(p, torch.device("cpu"), {cell: candidate_cls})
    return gate.check(p, base, cand, torch.device("cpu"))


@pytest.mark.parametrize("mode", grid.MODES)
def test_gate_accepts_torch_nn(mode):
    for cell in ("lstm", "gru"):
        r = _gate(cell, TORCH_NN[cell], mode, bidirectional=True, layers=2)
        assert r.ok, r.reason
        assert r.errors["output"] == 0.0
        if mode == "training":
            assert "grad_input" in r.errors and "grad_weight_hh_l0" in r.errors


@pytest.mark.parametrize("cell, cls, mode, culprit", [
    ("lstm", OffByALittleLSTM, "inference", "output"),
    ("lstm", WrongGradLSTM, "training", "grad_input"),
    ("gru", NaNGRU, "inference", "output"),
    ("gru", WrongFinalStateGRU, "inference", "h_n"),
])
def test_gate_rejects_wrong(cell, cls, mode, culprit):
    r = _gate(cell, cls, mode)
    assert not r.ok
    assert r.errors[culprit] > r.tolerance["forward"]
    assert culprit in r.reason or "off" in r.reason
    json.dumps(r.as_dict(), allow_nan=False)  # inf is written as a string


def test_gate_tolerance_is_relative():
    ref = torch.tensor([0.5, -0.25, 0.0])
    assert gate.relative_error(ref + 1e-3, ref) == pytest.approx(2e-3, rel=1e-4)
    assert gate.relative_error(ref[:2], ref) == math.inf
    assert gate.relative_error(torch.tensor([float("inf"), 0, 0]), ref) == math.inf


def test_wrong_point_is_reported_wrong_never_timed():
    p = Point("lstm", "fp32", mode="training", **TINY)
    res = measure.run_point(p, torch.device("cpu"), {"lstm": WrongGradLSTM},
                            timing.Budget(0.0, 1, 1, 1), {}, {"type": "cpu"})
    assert res["status"] == "WRONG"
    assert res["ratio"] is None and res["baseline"] is None and res["candidate"] is None
    assert "grad_input" in res["error"]


def test_exception_is_reported_as_error():
    class Broken(nn.GRU):
        def forward(self, x, hx=None):
            raise RuntimeError("kernel not implemented for this shape")
    p = Point("gru", "fp32", mode="inference", **TINY)
    res = measure.run_point(p, torch.device("cpu"), {"gru": Broken},
                            timing.Budget(0.0, 1, 1, 1), {}, {"type": "cpu"})
    assert res["status"] == "ERROR" and "not implemented" in res["error"] and res["ratio"] is None


class NoBF16GRU(nn.GRU):
    """A torch.nn that refuses a dtype, as torch.nn does for some dtypes on some devices."""

    def forward(self, x, hx=None):
        if x.dtype == torch.bfloat16:
            raise RuntimeError('"addmm" not implemented for \'BFloat16\'')
        return super().forward(x, hx)


def test_torch_nn_raising_is_unsupported_not_our_error(tmp_path, monkeypatch):
    monkeypatch.setitem(workload.BASELINES, "gru", NoBF16GRU)
    p = Point("gru", "bf16", mode="inference", **TINY)
    res = measure.run_point(p, torch.device("cpu"), TORCH_NN, timing.Budget(0.0, 1, 1, 1), {},
                            {"type": "cpu"})
    assert res["status"] == "UNSUPPORTED" and res["ratio"] is None and res["candidate"] is None
    assert res["error"].startswith("torch.nn unsupported: RuntimeError") and "BFloat16" in res["error"]
    # The run does not fail for it; the report says what torch.nn could not run.
    out = tmp_path / "res"
    rc = run.main(["--device", "cpu", "--cell", "gru", "--dtype", "bf16", "--T", "3", "--B", "2",
                   "--H", "4", "--mode", "inference", "--ceilings", "off", "--no-plots",
                   "--out", str(out)], candidates=TORCH_NN)
    assert rc == 0
    res = _strict_load(out / "results.json")
    assert res["summary"]["counts"] == {"UNSUPPORTED": 1}
    assert "**UNSUPPORTED**" in (out / "report.md").read_text()


# ---- cell points ------------------------------------------------------------------------

def test_cell_chain_is_the_recurrence():
    """T chained LSTMCell calls compute what nn.LSTM computes over the sequence."""
    p = Point("lstmcell", "fp32", 6, 3, 5, 7, mode="inference")
    torch.manual_seed(0)
    layer = nn.LSTM(5, 7)
    cell = nn.LSTMCell(5, 7)
    cell.load_state_dict({k[:-3]: v for k, v in layer.state_dict().items()})
    inp = workload.make_inputs(p, torch.device("cpu"), seed=1)
    assert inp.xs[0].shape == (6, 3, 5) and inp.hx[0].shape == (3, 7)
    ys, (h, c) = workload.run_sequence(cell, p, inp.xs[0], inp.hx)
    y_ref, (h_ref, c_ref) = layer(inp.xs[0], (inp.hx[0][None], inp.hx[1][None]))
    assert len(ys) == 6
    torch.testing.assert_close(torch.stack(ys), y_ref)
    torch.testing.assert_close(c, c_ref[0])


@pytest.mark.parametrize("cell", grid.CELL_KINDS)
@pytest.mark.parametrize("mode", grid.MODES)
def test_gate_accepts_torch_nn_cells(cell, mode):
    r = _gate(cell, TORCH_NN[cell], mode)
    assert r.ok, r.reason
    assert r.errors["output"] == 0.0 and "h_n" in r.errors
    assert ("c_n" in r.errors) == (cell == "lstmcell")
    if mode == "training":
        assert {"grad_input", "grad_weight_hh", "grad_bias_ih"} <= r.errors.keys()


class WrongGradGRUCell(nn.GRUCell):
    def forward(self, x, hx=None):
        return _ScaleGrad.apply(super().forward(x, hx), 0.9)


class StaleStateLSTMCell(nn.LSTMCell):
    """Ignores the incoming state: right for the first call of a chain only."""

    def forward(self, x, hx=None):
        return super().forward(x, None)


@pytest.mark.parametrize("cell, cls, mode, culprit", [
    ("grucell", WrongGradGRUCell, "training", "grad_input"),
    ("lstmcell", StaleStateLSTMCell, "inference", "output"),
])
def test_gate_rejects_wrong_cells(cell, cls, mode, culprit):
    r = _gate(cell, cls, mode)
    assert not r.ok and culprit in r.errors
    assert r.errors[culprit] > r.tolerance["forward"]


def side_of_call(k: int) -> int:
    """Which side (0 baseline, 1 candidate) ran the k-th timed call, with an even
    warm-up count: pairs go A B, B A, A B, ... (test_time_sides_alternates_...)."""
    return k % 2 if (k // 2) % 2 == 0 else 1 - k % 2


def durations_of(baseline_s, candidate_s):
    """A FakeClock schedule: repeat r of each side lasts baseline_s[r] or candidate_s[r]
    (the lists cover warm-up and timed repeats; indices wrap)."""
    def d(k):
        seq = (baseline_s, candidate_s)[side_of_call(k)]
        return seq[(k // 2) % len(seq)]
    return d


@pytest.mark.parametrize("mode", grid.MODES)
def test_cell_point_times_per_call(mode, quiet_host):
    """A cell repeat is T chained calls; the times reported are per call."""
    p = Point("grucell", "fp32", 4, 2, 3, 5, mode=mode)
    base, cand = workload.build_pair(p, torch.device("cpu"), TORCH_NN)
    clock = FakeClock(durations_of([0.008], [0.004]))  # 8 ms and 4 ms per repeat of 4 calls
    budget = timing.Budget(seconds=0.0, warmup=2, min_repeats=6, max_repeats=6)
    b_ms, c_ms, extras = measure.time_pair(base, cand, p, torch.device("cpu"), budget, None, clock)
    assert b_ms == pytest.approx([2.0] * 6) and c_ms == pytest.approx([1.0] * 6)
    assert extras["other_cpu"] is None  # quiet_host: no reading
    res = measure.fill_timings(measure.empty_result(p), p, b_ms, c_ms, 4, {}, extras)
    assert res["status"] == "OK" and res["verdict"] == "faster"
    assert res["candidate"]["calls_per_repeat"] == 4 and res["candidate"]["us_per_step"] == pytest.approx(1000)
    assert res["ratio"] == pytest.approx(2.0)


def test_run_point_on_cells_with_torch_nn(quiet_host):
    for cell in grid.CELL_KINDS:
        p = Point(cell, "fp32", 3, 2, 4, 6, mode="training")
        clock = FakeClock(durations_of([0.003], [0.003]))
        res = measure.run_point(p, torch.device("cpu"), TORCH_NN, timing.Budget(0.0, 2, 5, 5), {},
                                {"type": "cpu"}, clock=clock)
        assert res["status"] == "OK", res["error"]
        assert res["baseline"]["median_ms"] == pytest.approx(1.0) and res["ratio"] == pytest.approx(1.0)
        assert res["verdict"] == "on par" and res["gate"]["ok"]


# ---- noise: a point whose spread is too wide is NOISY, not a result -------------------

def _judged(base_ms, cand_ms, other_cpu=None, point=None):
    point = point or Point("lstm", "fp32", 100, 64, 512, 512, mode="inference")
    return measure.fill_timings(measure.empty_result(point), point, base_ms, cand_ms, 4, {},
                                {"other_cpu": other_cpu})


def test_issue_example_sequential_load_is_noisy():
    """Issue 10: on a busy 2-core machine torch.nn measured 3164 ms for a point that
    takes ~12 ms when quiet, and the report said 4.4x with nothing to say it was noise.
    These are such samples: most torch.nn repeats hit by the load (median 3164 ms,
    4.4x the candidate's median), a few quiet ones at ~12 ms."""
    base = [12.1, 3164.0, 3170.0, 11.9, 3164.0, 3150.0, 3300.0, 12.3, 3164.0, 3180.0]
    cand = [719.0, 12.0, 725.0, 700.0, 12.2, 719.0, 740.0, 12.1, 719.0, 710.0]
    res = _judged(base, cand)
    assert res["baseline"]["median_ms"] == pytest.approx(3164.0)
    assert res["ratio_of_medians"] == pytest.approx(4.4, rel=0.01)
    assert res["status"] == "NOISY" and res["verdict"] is None
    reasons = res["noise"]["reasons"]
    assert any("paired ratios" in r for r in reasons)
    assert any(r.startswith("torch.nn p90/p10") for r in reasons)
    assert any(r.startswith("candidate p90/p10") for r in reasons)
    # Its numbers stay visible, it is not counted, and the summary says so.
    clean = _judged([12.0, 12.2, 11.9, 12.1, 12.0], [10.0, 10.1, 9.9, 10.0, 10.2])
    s = report.summarize([res, clean])
    assert s["counts"] == {"NOISY": 1, "OK": 1} and s["noisy"] == 1 and s["timed"] == 2
    assert s["geomean"][0]["n"] == 1 and s["geomean"][0]["noisy"] == 1
    assert s["overall_geomean_ratio"] == pytest.approx(clean["ratio"])
    assert "1 of 2 timed points NOISY" in report.noise_line(s)
    assert report.row(res)[report.COLUMNS.index("verdict")] == "NOISY"
    assert report.row(res)[report.COLUMNS.index("torch ms (p10-p90)")].startswith("3164 (")


def test_issue_example_through_the_timing_loop_is_noisy(quiet_host):
    """The same situation end to end: a load that comes and goes while a real point
    is timed. The fake clock multiplies each call's quiet time (12 ms, both sides
    alike) by the load of the moment, up to 264x (3164 ms / 12 ms, the issue's
    numbers). Alternated, the pairs disagree and the point is NOISY."""
    p = Point("lstm", "fp32", mode="inference", **TINY)
    load = [1, 264, 264, 1, 264, 60, 264, 1, 60, 264, 264, 60, 1, 264, 60, 264]  # per call

    def duration(k):  # quiet: 12 ms each side
        return 0.012 * load[k % len(load)]
    res = measure.run_point(p, torch.device("cpu"), TORCH_NN, timing.Budget(0.0, 2, 12, 12), {},
                            {"type": "cpu"}, clock=FakeClock(duration))
    assert res["status"] == "NOISY", res["noise"]
    assert res["ratio"] is not None and res["baseline"]["max_ms"] > 3000
    assert res["noise"]["ratio_width"] > noise.RATIO_SPREAD_MAX


def test_clean_point_is_not_noisy(quiet_host):
    """Quiet machine: a few percent of jitter, the same on both sides."""
    p = Point("gru", "fp32", mode="training", **TINY)
    jitter = [1.00, 1.03, 0.98, 1.01, 1.05, 0.99, 1.02, 0.97]
    clock = FakeClock(durations_of([0.012 * j for j in jitter], [0.010 * j for j in jitter[::-1]]))
    res = measure.run_point(p, torch.device("cpu"), TORCH_NN, timing.Budget(0.0, 2, 8, 8), {},
                            {"type": "cpu"}, clock=clock)
    assert res["status"] == "OK" and not res["noise"]["reasons"]
    assert res["verdict"] == "faster"  # 1.2x, and even the p10 paired ratio is above 1
    assert 1.1 < res["ratio_spread"]["p10"] <= res["ratio"] <= res["ratio_spread"]["p90"] < 1.3
    assert res["baseline"]["min_ms"] <= res["baseline"]["p10_ms"] <= res["baseline"]["median_ms"]
    assert res["baseline"]["median_ms"] <= res["baseline"]["p90_ms"] <= res["baseline"]["max_ms"]


def test_steady_load_on_both_sides_is_caught_by_host_load():
    """A load that lasts the whole point slows both sides alike: narrow spread,
    wrong machine. The host-load rule catches it; a quiet reading does not."""
    base, cand = [300.0, 303.0, 298.0, 301.0, 299.0], [250.0, 251.0, 249.0, 252.0, 250.0]
    assert _judged(base, cand, other_cpu=0.02)["status"] == "OK"
    res = _judged(base, cand, other_cpu=0.55)
    assert res["status"] == "NOISY" and "other processes used 55%" in res["error"]
    assert res["noise"]["other_cpu_share"] == 0.55


@pytest.mark.parametrize("base, cand, why", [
    ([10.0] * 4, [9.0] * 4, "only 4 repeats"),                                # too few to judge
    # One side unstable; the other moves with it (same load), less: ratios stay close.
    ([10.0, 10.0, 25.0, 10.0, 25.0, 10.0], [8.0, 8.0, 15.0, 8.0, 15.0, 8.0], "torch.nn p90/p10"),
    ([10.0, 16.0, 10.0, 16.0, 10.0], [16.0, 10.0, 16.0, 10.0, 16.0], "paired ratios"),
])
def test_noise_rules(base, cand, why):
    res = _judged(base, cand)
    assert res["status"] == "NOISY" and why in res["error"], res["error"]
    assert [r for r in res["noise"]["reasons"] if why in r] == [res["error"]]  # that rule alone


def test_quiet_gpu_like_spread_is_not_noisy():
    """The widest spread of the quiet H200 run: cuDNN at p90/p10 = 1.47 against a
    steady rnnfuse. Real spread, kept: OK, and its verdict comes from the interval."""
    base = [10.0, 10.0, 14.7, 10.0, 14.7, 10.0, 10.0, 14.7, 10.0, 10.0]
    res = _judged(base, [8.0] * 10)
    assert res["status"] == "OK", res["error"]
    assert 0.4 < res["noise"]["ratio_width"] <= noise.RATIO_SPREAD_MAX
    assert res["verdict"] == "faster"


@pytest.mark.parametrize("ratios, expected", [
    ([1.10, 1.12, 1.15, 1.2, 1.11], "faster"), ([0.8, 0.85, 0.9, 0.82, 0.88], "slower"),
    ([0.95, 1.02, 1.05, 0.99, 1.0], "on par"), ([1.02, 1.1, 1.2, 1.08, 1.15], "faster"),
])
def test_verdict(ratios, expected):
    assert noise.verdict(timing.spread(ratios)) == expected


PROC_STAT = """cpu  {user} 0 {system} {idle} 10 0 5 {steal} 0 0
cpu0 1 0 1 1 0 0 0 0 0 0
intr 12345
"""
SELF_STAT = "4242 (python (bench) x) R 1 1 1 0 -1 4194304 10 0 0 0 {utime} {stime} 0 0 20 0 2 0"


def test_hostload_other_share(tmp_path):
    assert hostload.parse_proc_stat(PROC_STAT.format(user=100, system=20, idle=300, steal=7)) == \
        (100 + 20 + 5 + 7, 100 + 20 + 5 + 7 + 300 + 10)
    assert hostload.parse_self_stat(SELF_STAT.format(utime=30, stime=4)) == 34
    (tmp_path / "self").mkdir()

    def snap(user, system, idle, steal, utime, stime):
        (tmp_path / "stat").write_text(PROC_STAT.format(user=user, system=system, idle=idle,
                                                        steal=steal))
        (tmp_path / "self" / "stat").write_text(SELF_STAT.format(utime=utime, stime=stime))
        return hostload.snapshot(tmp_path)
    a = snap(1000, 100, 5000, 0, 500, 50)
    # 200 jiffies of 2 CPUs pass: we use 100, another process 80 (steal 20 of it), 20 idle.
    b = snap(1130, 130, 5020, 20, 590, 60)
    assert hostload.other_share(a, b) == pytest.approx(80 / 200)
    assert hostload.other_share(a, a) is None  # no tick passed: no evidence
    assert hostload.other_share(None, b) is None
    assert hostload.snapshot(tmp_path / "missing") is None
    assert hostload.snapshot() is None or hostload.snapshot().total > 0  # this machine's /proc


# ---- the fallback probe ----------------------------------------------------------

@torch.library.custom_op("benchprobe::touch", mutates_args=())
def _touch(x: torch.Tensor) -> torch.Tensor:
    """An identity custom op, registered the way rnnfuse registers its ops."""
    return x.clone()


_touch.register_fake(lambda x: torch.empty_like(x))
_touch.register_autograd(lambda ctx, g: g)


class OpsLSTM(nn.LSTM):
    """Runs an operator of its own namespace, as rnnfuse's modules do."""

    def forward(self, x, hx=None):
        y, state = super().forward(x, hx)
        return torch.ops.benchprobe.touch(y), state


@pytest.mark.parametrize("mode", grid.MODES)
def test_probe_detects_fallback(mode):
    p = Point("lstm", "fp32", mode=mode, **TINY)
    budget, cpu = timing.Budget(0.0, 1, 1, 1), torch.device("cpu")
    res = measure.run_point(p, cpu, {"lstm": OpsLSTM}, budget, {}, {"type": "cpu"}, "benchprobe")
    # Timed (1 repeat: too few to judge, so NOISY), not refused by the probe.
    assert res["status"] in measure.TIMED and res["baseline"] is not None, res["error"]
    res = measure.run_point(p, cpu, {"lstm": nn.LSTM}, budget, {}, {"type": "cpu"}, "benchprobe")
    assert res["status"] == "ERROR" and "fell back" in res["error"]
    assert probe.namespaces(lambda: torch.ones(2) + 1) == {"aten"}


def test_torch_nn_backend_probe(capfd):
    m, x = nn.GRU(3, 4), torch.randn(2, 1, 3)
    assert probe.torch_nn_backend(lambda: m(x)) in ("native", "mkldnn")  # no cuDNN on the CPU
    assert "aten::gru" in probe.profiled_op_names(lambda: m(x))
    print("stderr restored", file=sys.stderr)
    assert "stderr restored" in capfd.readouterr().err


@pytest.mark.parametrize("mode,layers,bi,added,want", [
    ("inference", 1, False, (0, 0), "per-step"),
    ("inference", 2, True, (4, 4), "persistent-cluster 4/4"),
    ("training", 1, False, (2, 1), "persistent-grid+cluster 2/2"),
    ("training", 1, False, (1, 0), "persistent-grid 1/2"),
])
def test_rnnfuse_path_reads_the_persistent_launch_counters(mode, layers, bi, added, want):
    counters = [10, 3]

    def step():  # the candidate's call: its persistent launches move the counters
        counters[0] += added[0]
        counters[1] += added[1]

    point = Point("lstm", "bf16", 10, 16, 64, 64, layers, bi, mode)
    got = probe.rnnfuse_path(step, point, torch.device("cuda"), launches=lambda d: tuple(counters),
                             sync=lambda d: None)
    assert got == want
    assert probe.rnnfuse_path(step, point, torch.device("cpu")) == "cpu"


# ---- report, plots, schema -------------------------------------------------------

# Odd length, paired with its reverse: the paired ratios' median is the exact ratio.
JITTER = (1.0, 1.02, 0.99, 1.01, 0.98, 1.03, 0.97)


def _fake_point(cell, dtype, mode, B, H, status="OK", ratio=1.5):
    """A point as run_point leaves it; status "NOISY" gets a load burst on one side."""
    p = Point(cell, dtype, grid.CELL_CALLS if cell in grid.CELL_KINDS else 128, B, H, H, 1,
              False, mode)
    r = measure.empty_result(p)
    r.update(cudnn_algo=None if p.is_cell else {"forward": "STANDARD", "backward": None},
             rnnfuse_path="per-step" if p.is_cell or B < 64 else "persistent-cluster 1/1",
             gate={"ok": status != "WRONG", "errors": {}, "tolerance": {}, "reason": ""})
    if status == "WRONG":
        r.update(status=status, error="worst output: error 0.5 > tolerance 0.05")
        return r
    cand = [2.0 * j for j in JITTER]
    base = [2.0 * ratio * j for j in JITTER[::-1]]
    if status == "NOISY":
        base = [b * (40 if k % 3 == 0 else 1) for k, b in enumerate(base)]
    extras = {side: {"peak_mem_bytes": 1 << 20, "input_copies": 1}
              for side in ("baseline", "candidate")}
    measure.fill_timings(r, p, base, cand, 2, {"gemm_tflops": {"bf16": 800.0}}, extras)
    assert r["status"] == status, r["error"]
    return r


def _fake_results():
    pts = [_fake_point(c, d, m, b, h, ratio=0.5 + b / 64)
           for c in ("lstm", "gru") for d in ("fp32", "bf16") for m in grid.MODES
           for b in (1, 16, 64) for h in (256, 512)]
    pts += [_fake_point(c, "fp32", m, b, h, ratio=1.1)
            for c in grid.CELL_KINDS for m in grid.MODES for b in (1, 64) for h in (128, 512)]
    pts.append(_fake_point("lstm", "bf16", "training", 8, 768, status="WRONG"))
    pts.append(_fake_point("lstm", "bf16", "training", 32, 512, status="NOISY", ratio=4.4))
    pts.append(_fake_point("lstmcell", "bf16", "inference", 64, 512, status="NOISY"))
    env = {"date": "2026-01-01T00:00:00", "device": {"type": "cuda", "name": "Fake GPU",
           "sm_count": 132, "compute_capability": [9, 0]}, "driver": "1.0", "python": "3.12",
           "torch": "2.x", "cuda": "13.0", "cudnn": 90000, "candidate": "rnnfuse",
           "tf32_defaults": {}, "git": {"commit": "abc", "dirty": False}, "loadavg": [0.1, 0.2, 0.3]}
    return report.build(pts, env, {"gemm_tflops": {"bf16": 800.0}, "gemm_n": 8192, "copy_gbps": 3000.0},
                        {"argv": []}, "quick")


def test_report_markdown_and_geomean(tmp_path):
    res = _fake_results()
    report.write_markdown(res, tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    assert "Fake GPU" in md and "Geometric-mean ratio" in md and "WRONG" in md
    # The path column sits beside the cuDNN algorithm's.
    assert "| cuDNN algo | rnnfuse path |" in md and "| STD | persistent-cluster 1/1 |" in md
    gm = {(g["cell"], g["dtype"], g["mode"]): g for g in res["summary"]["geomean"]}
    assert len(gm) == 8 + 4 + 1  # layers; cells fp32; the all-NOISY lstmcell bf16 group
    expected = math.exp(sum(math.log(0.5 + b / 64) for b in (1, 16, 64)) / 3)
    lbt = gm[("lstm", "bf16", "training")]
    assert lbt["geomean_ratio"] == pytest.approx(expected)
    assert lbt["n"] == 6 and lbt["noisy"] == 1  # neither the WRONG nor the NOISY point is averaged
    assert gm[("lstmcell", "bf16", "inference")] | {"n": 0, "noisy": 1, "geomean_ratio": None} == \
        gm[("lstmcell", "bf16", "inference")]
    assert res["summary"]["counts"] == {"OK": 64, "WRONG": 1, "NOISY": 2}
    assert "2 of 66 timed points NOISY" in md and noise.CRITERION in md
    # The table shows each point's spread; the NOISY point is flagged in it.
    assert "| lstm | bf16 | training | 128 | 32 | 512 | 512 | 1 | uni | STD |" in md
    noisy_row = next(ln for ln in md.splitlines() if "| 32 | 512 | 512 |" in ln and ln.startswith("| lstm"))
    assert "| NOISY |" in noisy_row and "faster" not in noisy_row
    assert "## Spread" in md and "lstm-bf16-T128-B32-I512-H512-L1-uni-training" in md
    assert "0.10, 0.20, 0.30" in md  # the load average at start
    con = report.console(res)
    assert "WRONG" in con and "NOISY lstm-bf16-T128-B32" in con and "2 of 66 timed" in con


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    paths = plots.write(_fake_results(), tmp_path)
    assert {p.name for p in paths} == {"speedup_lstm.png", "speedup_gru.png",
                                       "speedup_lstmcell.png", "speedup_grucell.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_error_bars_span_p10_to_p90():
    pts = [_fake_point("gru", "fp32", "inference", 1, 256, ratio=1.5)]
    lo, hi = plots._yerr(pts)
    r = pts[0]["ratio_spread"]
    assert lo == [pytest.approx(r["median"] - r["p10"])] and hi == [pytest.approx(r["p90"] - r["median"])]
    assert lo[0] > 0 and hi[0] > 0
    # A NOISY point's wild bar does not set the panel's scale; its marker is still inside.
    noisy = _fake_point("gru", "fp32", "inference", 16, 256, status="NOISY", ratio=1.2)
    assert noisy["ratio_spread"]["p90"] > 10
    lo, hi = plots._ylim(pts + [noisy])
    assert hi < 3 and lo <= r["p10"] and hi >= max(r["p90"], noisy["ratio"])


def test_plots_skip_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "_matplotlib", lambda: None)
    assert plots.write(_fake_results(), tmp_path) == []


def _check_schema(results):
    assert set(report.REQUIRED_TOP) <= results.keys()
    assert results["schema_version"] == report.SCHEMA_VERSION
    for key in ("date", "device", "driver", "torch", "cuda", "cudnn", "tf32_defaults", "git",
                "candidate"):
        assert key in results["environment"]
    for key in ("counts", "timed", "noisy", "noise_criterion", "verdicts", "geomean"):
        assert key in results["summary"]
    assert results["points"]
    for p in results["points"]:
        assert set(report.REQUIRED_POINT) <= p.keys(), p.keys()
        assert p["status"] in report.STATUSES
        assert set(p["tf32_flags"]) == {"cudnn_allow_tf32", "matmul_allow_tf32"}
        if p["status"] in measure.TIMED:
            for side in ("baseline", "candidate"):
                t = p[side]
                assert set(report.REQUIRED_TIMING) <= t.keys()
                assert t["min_ms"] <= t["p10_ms"] <= t["median_ms"] <= t["p90_ms"] <= t["max_ms"]
            r = p["ratio_spread"]
            assert set(report.REQUIRED_SPREAD) <= r.keys() and r["n"] == p["baseline"]["repeats"]
            assert r["min"] <= r["p10"] <= r["median"] <= r["p90"] <= r["max"]
            assert p["ratio"] == r["median"]
            assert p["ratio_of_medians"] == pytest.approx(p["baseline"]["median_ms"] / p["candidate"]["median_ms"])
            assert p["noise"]["noisy"] == (p["status"] == "NOISY") == bool(p["noise"]["reasons"])
            assert (p["verdict"] in ("faster", "on par", "slower")) == (p["status"] == "OK")
        else:
            assert p["ratio"] is None and p["ratio_spread"] is None and p["verdict"] is None


def _strict_load(path):
    def reject(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(Path(path).read_text(), parse_constant=reject)


def test_json_schema_of_written_file(tmp_path):
    report.write_json(_fake_results(), tmp_path / "results.json")
    _check_schema(_strict_load(tmp_path / "results.json"))


# ---- end to end ----------------------------------------------------------------------

TINY_ARGS = ["--device", "cpu", "--cell", "lstm,gru", "--T", "4", "--B", "2", "--H", "8",
             "--I", "5", "--ceilings", "small", "--budget", "0.01"]
TINY_CELL_ARGS = ["--device", "cpu", "--cell", "lstmcell,grucell", "--T", "3", "--B", "2",
                  "--H", "8", "--I", "5", "--ceilings", "off", "--budget", "0.01", "--no-plots"]


def test_end_to_end_cpu_tiny(tmp_path, capsys):
    out = tmp_path / "res"
    rc = run.main(TINY_ARGS + ["--out", str(out)], candidates=TORCH_NN)
    assert rc == 0
    assert {"results.json", "report.md"} <= {p.name for p in out.iterdir()}
    res = _strict_load(out / "results.json")
    _check_schema(res)
    # Real timings on a shared machine: OK or NOISY, never anything else.
    assert len(res["points"]) == 4 and all(p["status"] in measure.TIMED for p in res["points"])
    assert res["ceilings"]["gemm_tflops"]["fp32"] > 0
    assert "timed points NOISY" in capsys.readouterr().out


def test_end_to_end_wrong_candidate_fails_run(tmp_path):
    out = tmp_path / "res"
    rc = run.main(TINY_ARGS + ["--out", str(out), "--no-plots", "--ceilings", "off"],
                  candidates={"lstm": WrongGradLSTM, "gru": nn.GRU})
    assert rc == 1
    res = _strict_load(out / "results.json")
    status = {p["id"]: p["status"] for p in res["points"]}
    assert status["lstm-fp32-T4-B2-I5-H8-L1-uni-training"] == "WRONG"
    assert status["lstm-fp32-T4-B2-I5-H8-L1-uni-inference"] in measure.TIMED
    assert "WRONG" in (out / "report.md").read_text()


def test_end_to_end_rnnfuse_tiny(tmp_path):
    """The real candidate on one tiny point per cell: gated, probed, timed."""
    rnnfuse = pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    del rnnfuse
    out = tmp_path / "res"
    rc = run.main(TINY_ARGS + ["--out", str(out), "--no-plots", "--ceilings", "off"])
    res = _strict_load(out / "results.json")
    assert rc == 0, [(p["id"], p["error"]) for p in res["points"] if p["status"] != "OK"]
    assert all("rnnfuse" in p.get("candidate_namespaces", []) for p in res["points"])


def test_end_to_end_cells(tmp_path):
    """Cell points through the CLI, against torch.nn, and (if built) rnnfuse's cells."""
    out = tmp_path / "torch"
    assert run.main(TINY_CELL_ARGS + ["--out", str(out)], candidates=TORCH_NN) == 0
    res = _strict_load(out / "results.json")
    _check_schema(res)
    assert {p["cell"] for p in res["points"]} == {"lstmcell", "grucell"}
    assert all(p["candidate"]["calls_per_repeat"] == 3 for p in res["points"])
    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    out = tmp_path / "rnnfuse"
    rc = run.main(TINY_CELL_ARGS + ["--out", str(out)])
    res = _strict_load(out / "results.json")
    assert rc == 0, [(p["id"], p["error"]) for p in res["points"] if p["status"] not in measure.TIMED]
    assert all("rnnfuse" in p["candidate_namespaces"] for p in res["points"])


def test_cli_list_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--preset", "standard",
                        "--device", "cpu", "--list"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "lstm-fp32-T100-B64-I512-H512-L1-uni-inference" in r.stdout.split()
    assert "lstmcell-fp32-T10-B64-I512-H512-L1-uni-training" in r.stdout.split()
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--preset", "quick", "--list"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"{len(grid.cpu_quick())} points" in r.stderr, r.stderr


# ---- the GPU check's pieces that run without a GPU -------------------------------------

def test_gpu_check_script_syntax():
    r = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_gpu_standard_script_syntax_and_usage():
    script = str(REPO / "benchmarks" / "gpu_standard.sh")
    r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["bash", script, "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    # The shards it names are the ones --shard selects from the GPU standard preset.
    shards = [run.shard(grid.gpu_standard(), k, 4) for k in (1, 2, 3, 4)]
    assert sorted(p.id for s in shards for p in s) == sorted(p.id for p in grid.gpu_standard())
    assert max(len(s) for s in shards) - min(len(s) for s in shards) <= 1


def test_sanitizer_cases_list():
    from benchmarks import sanitizer_cases
    names = [c.name for c in sanitizer_cases.all_cases()]
    assert len(names) == len(set(names))
    for want in ("LSTM-fp32-H40-padded", "GRU-bf16-H64-packed", "LSTM-bf16-H40-packed-proj24",
                 "GRUCell-bf16-H40"):
        assert want in names
    assert {c.name for c in sanitizer_cases.race_cases()} <= set(names)


def test_sanitizer_cases_run_on_cpu(capsys):
    """The sanitizer workload itself (same checks, CPU kernels): it must pass
    on a correct rnnfuse, or the GPU check's sanitizer stage means nothing."""
    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    from benchmarks import sanitizer_cases
    assert sanitizer_cases.main(["--device", "cpu", "-k", "H40-padded"]) == 0
    out = capsys.readouterr().out
    assert "0 failed, 0 skipped" in out and "LSTM-bf16-H40-padded-proj24" in out


def test_sanitizer_persistent_cases_run_on_cpu(capsys):
    """The persistent-tier sanitizer cases are well-formed and pass on the CPU
    kernels (on a GPU they also require a persistent launch per direction)."""
    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    from benchmarks import sanitizer_cases
    assert sanitizer_cases.main(["--device", "cpu", "--subset", "persistent"]) == 0
    out = capsys.readouterr().out
    assert "31 passed, 0 failed" in out and "LSTM-bf16-H40-packed-L2-bi-persistent-grid" in out
    # the grid forward's LL exchange: packed both ways, two layers, one launch
    # for both directions, CTAs of 16 units, exact fp32
    for name in ("LSTM-bf16-H40-packed-L2-bi-persistent-grid-ll",
                 "GRU-bf16-H40-packed-bi-1op-persistent-grid-ll",
                 "LSTM-bf16-H64-packed-persistent-grid-J16-R1-ll",
                 "GRU-fp32-H64-padded-bi-1op-persistent-grid-ll",
                 "LSTM-bf16-H64-packed-persistent-grid-bwd-J64-ksplit4-ll"):
        assert name in out, name
    # the grid forward pinned to CTAs of 4 (MMA and FMA) and 3 m-tiles
    assert "LSTM-bf16-H64-packed-persistent-grid-J16-R1" in out
    assert "LSTM-fp32-H64-packed-persistent-grid-J16-R1" in out
    assert "GRU-bf16-H40-padded-persistent-grid-J16" in out
    # the grid backward pinned to CTAs of 4 m-tiles (K split 4 ways), MMA and FMA
    assert "LSTM-bf16-H64-packed-persistent-grid-bwd-J64-ksplit4" in out
    assert "GRU-fp32-H200-padded-persistent-grid-J16-bwd-J64-ksplit4" in out
    # the cluster backward through the driver: per direction, and the bidirectional op's (one launch)
    assert "LSTM-bf16-H64-packed-L2-bi-persistent-grid-bwd-cluster" in out
    assert "GRU-bf16-H40-packed-bi-1op-persistent-grid-bwd-cluster" in out
    # the cluster backward kernel, launched directly (its emulator on the CPU)
    assert "LSTM-bf16-H40-packed-persistent-cluster-bwd-J8-R2" in out
    assert "GRU-bf16-H200-padded-persistent-cluster-bwd-J24-R1" in out
    assert "LSTM-bf16-H300-padded-persistent-cluster-bwd-J48-R1-B37" in out  # 7 item slots
    # several slices per CTA, one and two per bracket; groups of 4 with a short last one
    assert "LSTM-bf16-H200-packed-persistent-cluster-P7-group1" in out
    assert "LSTM-bf16-H200-packed-persistent-cluster-P7-group2" in out
    assert "GRU-bf16-H400-packed-persistent-cluster-P8-group4" in out
    assert "GRU-bf16-H40-packed-bi-1op-persistent-cluster" in out  # both directions, one launch
    assert "LSTM-fp32-H520-packed-persistent-grid" in out  # the backward's K split
    assert "LSTM-bf16-H40-packed-bi-1op-persistent-grid" in out  # both directions, one launch
    assert "GRU-bf16-H40-packed-L2-persistent-cluster" in out
    assert "LSTM-fp32-H40-packed-bi-persistent-grid" in out  # the exact-FMA kernels
    names = [c.name for c in sanitizer_cases.race_cases() + sanitizer_cases.persistent_cases()]
    assert len(names) == len(set(names))


def test_sanitizer_pins_name_partitions_the_planner_makes():
    """A pinned persistent case runs the pinned partition only if the planner
    has it among its candidates (on the GPU the case asserts its plan's
    fields; a pin nothing matches plans per step). On an H100/H200's
    properties, at the cases' B and T with TF32 off (as the sanitizer runs):
    every pin of a planner-driven case gives a persistent plan with its
    values."""
    import json

    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    from benchmarks import sanitizer_cases as sc
    from test_persistent_plan import H100_CLUSTERS

    pinned = 0
    for case in sc.persistent_cases():
        if case.tier == "cluster-bwd":  # launched directly with its J and R
            continue
        for pin, backward, tier in ((case.pin, False, case.tier), (case.bwd_pin, True, case.bwd_tier)):
            if not pin:
                continue
            plan = json.loads(torch.ops.rnnfuse.persistent_plan(
                case.kind, sc.DTYPE[case.dtype], case.H, sc.B, sc.T, case.proj, 1, False,
                H100_CLUSTERS, tier == "grid", tier == "cluster", backward, 1, True, pin))
            print(case.name, "backward" if backward else "forward", pin, plan)
            assert plan["tier"] == tier, (case.name, plan)
            for kv in pin.split(","):
                k, v = kv.split("=")
                assert plan.get(k) == int(v), (case.name, k, plan)
            pinned += 1
    assert pinned >= 7


def test_sanitizer_cases_stop_at_a_broken_context_and_resume(monkeypatch, capsys, tmp_path):
    """A case after which the (fake) CUDA context is broken fails, the script
    stops with exit 3 and says where to resume; --start resumes there; the
    GPU check's report adds the processes' summaries."""
    from benchmarks import gpu_check_report, sanitizer_cases
    ran = []
    monkeypatch.setattr(sanitizer_cases, "run_case", lambda case, device: ran.append(case.name) or 0.0)
    monkeypatch.setattr(sanitizer_cases, "cuda_context_error",
                        lambda: "fake sticky error" if len(ran) == 2 else None)
    names = [c.name for c in sanitizer_cases.race_cases()]
    assert sanitizer_cases.main(["--device", "cpu", "--subset", "race"]) == 3
    first = capsys.readouterr().out
    assert ran == names[:2]
    assert f"BROKEN {names[1]}: the CUDA context is broken (fake sticky error); resume with --start 2" in first
    assert f"sanitizer_cases: 1 passed, 1 failed, 0 skipped (deadline or no cluster kernels); " \
           f"{len(names) - 2} left for a fresh process" in first
    ran.clear()
    monkeypatch.setattr(sanitizer_cases, "cuda_context_error", lambda: None)  # a fresh process
    assert sanitizer_cases.main(["--device", "cpu", "--subset", "race", "--start", "2"]) == 0
    second = capsys.readouterr().out
    assert ran == names[2:]
    log = tmp_path / "memcheck.log"
    log.write_text(first + "========= ERROR SUMMARY: 2 errors\n" + second
                   + "========= ERROR SUMMARY: 0 errors\n")
    summary = gpu_check_report.sanitizer_summary(log)
    assert (summary["errors"], summary["cases_passed"], summary["cases_failed"],
            summary["cases_skipped"], summary["restarts"]) == (2, len(names) - 1, 1, 0, 1)


def test_step_check_runs_on_cpu(tmp_path, capsys):
    """The steps stage's script, same code at tiny sizes on the CPU: every
    variant checked against its baseline, then timed; the JSON the report reads."""
    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    from benchmarks import step_check
    out = tmp_path / "steps.json"
    assert step_check.main(["--json", str(out), "--device", "cpu", "--tiny", "--reps", "2"]) == 0
    result = json.loads(out.read_text())
    assert len(result["tiles"]) == 3 * 2 * 2 and len(result["bidir"]) == 2 * 1 * 2
    assert not result["errors"]
    for row in result["tiles"]:
        assert row["status"] == "OK" and all(row[f"{r}_ms"] > 0 for r in step_check.RULES)
    for row in result["bidir"]:
        assert row["status"] == "OK" and row["one_op_ms"] > 0 and row["per_direction_ms"] > 0
    assert "step_check: 16 of 16 rows OK, 0 errors" in capsys.readouterr().out


def test_step_check_reports_a_disagreeing_variant(tmp_path, monkeypatch):
    pytest.importorskip("rnnfuse", reason="rnnfuse does not import (extension not built)")
    from benchmarks import step_check
    real = step_check.disagreement
    monkeypatch.setattr(step_check, "disagreement", lambda got, base: real(got, base) + 1.0)
    out = tmp_path / "steps.json"
    assert step_check.main(["--json", str(out), "--device", "cpu", "--tiny", "--reps", "1"]) == 1
    result = json.loads(out.read_text())
    assert all(r["status"].startswith("WRONG") for r in result["tiles"] + result["bidir"])
    assert all("auto_ms" not in r for r in result["tiles"])
    assert all("one_op_ms" not in r for r in result["bidir"])


def test_memory_check_peak_and_blocks_live_at_it():
    from benchmarks import memory_check
    frames_ours = [{"filename": "/x/torch/autograd/graph.py", "line": 1, "name": "f"},
                   {"filename": "/x/rnnfuse/ops.py", "line": 42, "name": "forward"},
                   {"filename": "<unknown>", "line": 0, "name": "at::empty"}]
    trace = [
        {"action": "alloc", "addr": 1, "size": 100, "frames": []},        # before `since`
        {"action": "alloc", "addr": 2, "size": 10, "frames": frames_ours},
        {"action": "alloc", "addr": 3, "size": 50, "frames": []},
        {"action": "free_requested", "addr": 3, "size": 50},             # not yet free
        {"action": "alloc", "addr": 4, "size": 5, "frames": []},          # peak: 10 + 50 + 5
        {"action": "free_completed", "addr": 3, "size": 50},
        {"action": "free_completed", "addr": 1, "size": 100},             # baseline block
        {"action": "alloc", "addr": 5, "size": 40, "frames": []},          # 10 + 5 + 40 = 55
    ]
    peak, blocks = memory_check.peak_live_blocks(trace, since=1)
    assert peak == 65
    assert [b["size"] for b in blocks] == [50, 10, 5]
    assert memory_check.call_site(blocks[1]["frames"]) == "ops.py:42 forward"
    assert memory_check.call_site([]) == "-"


JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="5" failures="1"
errors="0" skipped="1"><testcase classname="tests.test_cuda_lstm" name="test_a"/>
<testcase classname="tests.test_cuda_lstm" name="test_b"><failure message="x"/></testcase>
</testsuite></testsuites>"""


def test_gpu_check_report_from_stage_records(tmp_path):
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    out.mkdir()
    stages = ["env\tpass\t2\tGPU visible", "build\tpass\t95\t_C.so", "tests\tfail\t40\t1 failed",
              "ptests\tpass\t20\t", "memcheck\tpass\t60\t", "racecheck\tfail\t30\t",
              "synccheck\tpass\t20\t", "persist\tpass\t40\t", "steps\tpass\t30\t",
              "bench\tpass\t50\tall points OK"]
    (work / "stages.tsv").write_text("\n".join(stages) + "\n")
    (work / "tests_cuda.xml").write_text(JUNIT)
    (work / "memcheck.log").write_text("ok x\nsanitizer_cases: 26 passed, 0 failed, 2 skipped (deadline)\n"
                                       "========= ERROR SUMMARY: 0 errors\n")
    (work / "racecheck.log").write_text(
        "========= Error: Race reported between Write access at foo\n"
        "sanitizer_cases: 5 passed, 0 failed\n"
        "========= RACECHECK SUMMARY: 2 hazards displayed (2 errors, 0 warnings)\n")
    (work / "env.json").write_text(json.dumps(_fake_results()["environment"]))
    report.write_json(_fake_results(), out / "bench.json")
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 1
    md = (out / "gpu_check_report.md").read_text()
    assert md.startswith("# rnnfuse GPU check: FAIL")
    assert "Fake GPU" in md and "build time: 95 s" in md and "abc" in md
    assert "3 passed, 1 failed, 1 skipped" in md and "tests.test_cuda_lstm::test_b" in md
    assert "| memcheck | 0 | 26 | 0 | 2 |" in md and "| racecheck | 2 | 5 | 0 | 0 |" in md
    assert "Speed vs cuDNN" in md and "| lstm | bf16 | training |" in md
    assert "ratio (p10-p90)" in md and "2 of 66 timed points NOISY" in md
    assert "| lstmcell | fp32 | training | 10 | 64 | 512 | - |" in md
    assert "No persistent-tier results" in md
    (work / "persist.json").write_text(json.dumps({
        "exchange": [{"H": 768, "B": 16, "P": 96, "ns_per_step": 812.0,
                      "spread_ns_per_step": 640.0, "ok": True}],
        "points": [{"cell": "LSTM", "dtype": "float16", "mode": "inference", "T": 1024, "B": 16,
                    "H": 768, "cudnn_ms": 2.07, "perstep_ms": 20.1, "persistent_ms": 1.5,
                    "speedup_vs_cudnn": 1.38, "us_per_step": 1.46, "path": "persistent-grid",
                    "status": "OK"}], "errors": []}))
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 1
    md = (out / "gpu_check_report.md").read_text()
    assert "| 768 | 16 | 96 | 812 | 640 | - | - | ok |" in md
    assert "| LSTM | float16 | inference | 1024 | 16 | 768 | 2.070 | 20.100 | 1.500 | 1.38 |" in md
    assert "No per-step results" in md
    (work / "steps.json").write_text(json.dumps({
        "tiles": [{"cell": "LSTM", "dtype": "bfloat16", "mode": "training", "T": 100, "B": 64,
                   "H": 512, "threshold_ms": 9.0, "auto_ms": 4.5, "small_ms": 4.5,
                   "large_ms": 9.0, "auto-deep_ms": 3.0, "speedup_vs_threshold": 2.0,
                   "status": "OK"}],
        "bidir": [{"cell": "GRU", "dtype": "bfloat16", "mode": "inference", "T": 100, "B": 16,
                   "H": 512, "per_direction_ms": 4.0, "one_op_ms": 2.5, "speedup": 1.6,
                   "status": "OK"}], "errors": ["bidir: boom"]}))
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 1
    md = (out / "gpu_check_report.md").read_text()
    assert ("| LSTM | bfloat16 | training | 100 | 64 | 512 | 9.000 | 4.500 | 4.500 | 9.000 | "
            "3.000 | 2.00 | OK |") in md
    assert "| GRU | bfloat16 | inference | 100 | 16 | 512 | 4.000 | 2.500 | 1.60 | OK |" in md
    assert "- error: bidir: boom" in md
    assert "No memory results" in md
    point = {"cell": "LSTM", "dtype": "bfloat16", "T": 100, "B": 256, "H": 512}
    (work / "memory.json").write_text(json.dumps({"points": [
        dict(point, impl="torch.nn", peak_bytes=100, peak_h_bytes_per_row=28.0, blocks=[]),
        dict(point, impl="rnnfuse", peak_bytes=215, peak_h_bytes_per_row=60.2,
             blocks=[{"bytes": 80, "h_bytes_per_row": 20.0, "site": "ops.py:42 forward"}])],
        "errors": []}))
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 1
    md = (out / "gpu_check_report.md").read_text()
    assert "| LSTM | bfloat16 | 100 | 256 | 512 | 28.0 | 60.2 | 2.15 | 20.00H ops.py:42 forward |" in md
    memory = json.loads((work / "memory.json").read_text())
    memory["workspace_probe"] = dict(point, impl="rnnfuse", peak_bytes=150,
                                     peak_h_bytes_per_row=22.1, env={"CUBLASLT_WORKSPACE_SIZE": "1024"},
                                     blocks=[{"bytes": 60, "h_bytes_per_row": 8.0, "site": "ops.py:7 f"}])
    (work / "memory.json").write_text(json.dumps(memory))
    gpu_check_report.main(["report", "--work", str(work), "--out", str(out)])
    md = (out / "gpu_check_report.md").read_text()
    assert ("- probe, GRU bf16 rnnfuse with the GEMM workspaces limited (CUBLASLT_WORKSPACE_SIZE=1024): "
            "22.1 H bytes/row; largest live 8.00H ops.py:7 f") in md
    # All stages passing flips the verdict.
    (work / "stages.tsv").write_text("\n".join(s.replace("fail", "pass") for s in stages) + "\n")
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 0
    assert (out / "gpu_check_report.md").read_text().startswith("# rnnfuse GPU check: PASS")


def test_persist_check_counts_the_launches_each_path_plans():
    """persist_check's launch expectations (one direction: forward on its
    tier, the backward where planned; a bidirectional layer as one op: the
    launches its plan makes per pass), its one-op switch, and the report's
    row for a bidirectional point."""
    from benchmarks import gpu_check_report, persist_check
    from rnnfuse import _driver
    single = {"path": "persistent-cluster", "backward_path": "persistent-grid"}
    assert persist_check.planned_launches(single, "inference") == (1, 1)
    assert persist_check.planned_launches(single, "training") == (2, 1)
    assert persist_check.planned_launches({"path": "per-step", "backward_path": "per-step"},
                                          "training") == (0, 0)
    # The backward on the cluster tier counts as a cluster launch too.
    both = {"path": "persistent-cluster", "backward_path": "persistent-cluster"}
    assert persist_check.planned_launches(both, "inference") == (1, 1)
    assert persist_check.planned_launches(both, "training") == (2, 2)
    grid_fwd = {"path": "persistent-grid", "backward_path": "persistent-cluster"}
    assert persist_check.planned_launches(grid_fwd, "training") == (2, 1)
    bidir = {"directions": 2, "path": "persistent-grid-per-direction", "launches_per_call": 2,
             "backward_path": "persistent-cluster-per-direction", "backward_launches": 2}
    assert persist_check.planned_launches(bidir, "training") == (4, 2)
    bidir = {"directions": 2, "path": "persistent-grid-per-direction", "launches_per_call": 2,
             "backward_path": "persistent-grid", "backward_launches": 1}
    assert persist_check.planned_launches(bidir, "inference") == (2, 0)
    assert persist_check.planned_launches(bidir, "training") == (3, 0)
    bidir["path"] = "persistent-cluster-per-direction"
    assert persist_check.planned_launches(bidir, "training") == (3, 2)
    # Both directions' clusters in one launch.
    one_cluster = {**bidir, "path": "persistent-cluster", "launches_per_call": 1}
    assert persist_check.planned_launches(one_cluster, "training") == (2, 1)
    before = _driver.BIDIR_ONE_OP_DEVICES
    with persist_check.bidir_one_op(True):
        assert "cuda" in _driver.BIDIR_ONE_OP_DEVICES
    with persist_check.bidir_one_op(False):
        assert _driver.BIDIR_ONE_OP_DEVICES == before
    assert _driver.BIDIR_ONE_OP_DEVICES == before
    row = {"cell": "LSTM", "dtype": "bfloat16", "mode": "training", "T": 128, "B": 64, "H": 512,
           "bidirectional": True, "cudnn_ms": 9.0, "perstep_ms": 20.0, "persistent_ms": 6.0,
           "speedup_vs_cudnn": 1.5, "us_per_step": 46.9, "path": "persistent-grid", "status": "OK"}
    lines = gpu_check_report.persist_section({"points": [row]})
    assert any(line.startswith("| LSTM bidir | bfloat16 | training | 128 | 64 | 512 |")
               for line in lines), lines
    # An inference step over the exchange floor measured at its partition.
    point = {"cell": "LSTM", "dtype": "float16", "mode": "inference", "T": 1024, "B": 16,
             "H": 768, "persistent_ms": 1.536, "us_per_step": 1.5, "path": "persistent-cluster",
             "plan": {"tier": "cluster", "P": 16, "R": 2, "us_per_step": 1.325}, "status": "OK"}
    persist = {"points": [point, {**point, "mode": "training", "us_per_step": 4.0}],
               "cluster_exchange": [{"H": 768, "B": 16, "S": 16, "R": 1, "ns_per_step": 900.0, "ok": True},
                                    {"H": 768, "B": 16, "S": 16, "R": 2, "ns_per_step": 600.0, "ok": True}],
               "exchange": [{"H": 768, "B": 16, "P": 16, "ns_per_step": 2000.0, "ok": True}]}
    assert gpu_check_report.exchange_floor_ns(persist, point) == 600.0
    assert gpu_check_report.exchange_floor_ns(persist, {**point, "plan": {"tier": "grid", "P": 16}}) == 2000.0
    assert gpu_check_report.exchange_floor_ns(persist, {**point, "B": 64}) is None
    rows = [ln for ln in gpu_check_report.persist_section(persist) if ln.startswith("| LSTM |")]
    # The model's step beside the measured one, in inference only.
    assert "| 1.50 | 1.32 | 2.50 | persistent-cluster |" in rows[0], rows
    assert "| 4.00 | - | - |" in rows[1], rows
    # Training: the backward's path after the forward's, and the grid
    # tier's times (both passes; the backward alone).
    train = {**point, "mode": "training", "us_per_step": 4.0, "backward_path": "persistent-cluster",
             "grid_status": "OK", "grid_ms": 6.5, "grid_bwd_status": "OK", "grid_bwd_ms": 5.25}
    rows = [ln for ln in gpu_check_report.persist_section({"points": [train]})
            if ln.startswith("| LSTM |")]
    assert "| persistent-cluster / persistent-cluster | grid 6.500 | grid 5.250 | - | - | - | OK |" in rows[0], rows
    # Both passes on the grid tier: the cluster tier's times in the same columns.
    on_grid = {**train, "path": "persistent-grid", "backward_path": "persistent-grid",
               "cluster_status": "OK", "cluster_ms": 9.5, "cluster_bwd_status": "OK",
               "cluster_bwd_ms": 7.25}
    for key in ("grid_status", "grid_ms", "grid_bwd_status", "grid_bwd_ms"):
        on_grid.pop(key)
    rows = [ln for ln in gpu_check_report.persist_section({"points": [on_grid]})
            if ln.startswith("| LSTM |")]
    assert "| persistent-grid / persistent-grid | cluster 9.500 | cluster 7.250 | - | - | - | OK |" in rows[0], rows
    # A wrong grid-tier comparison fails the check, either of the two, and
    # the report shows why in its column.
    result = {"errors": [], "exchange": [], "cluster_exchange": [], "points": [train]}
    assert persist_check.passed(result)
    for row, key in ((train, "grid_status"), (train, "grid_bwd_status"),
                     (on_grid, "cluster_status"), (on_grid, "cluster_bwd_status")):
        wrong = {**row, key: "WRONG: persistent vs per-step 0.5 > 0.03"}
        assert not persist_check.passed({**result, "points": [wrong]})
        rows = [ln for ln in gpu_check_report.persist_section({"points": [wrong]})
                if ln.startswith("| LSTM |")]
        assert f"| {key.split('_')[0]} WRONG: persistent vs per-step 0.5 > 0.03 |" in rows[0], rows
    # The step phases of a traced point, per exchange; one that could not be
    # traced says why.
    traced = {**on_grid, "mode": "inference", "phases": {
        "flags": {"wait": 1210.4, "gather": 480.0, "mma": 300.2, "epilogue": 900.0,
                  "publish": 250.0, "step": 4090.0},
        "ll": "error: RuntimeError: rnnfuse: no traced persistent forward"}}
    lines = gpu_check_report.persist_section({"points": [traced]})
    assert ("| LSTM float16 H=768 B=16 T=1024 | flags | 1210 | 480 | 300 | 900 | 250 | 4090 |"
            in lines), lines
    assert any(ln.startswith("| LSTM float16 H=768 B=16 T=1024 | ll | error: RuntimeError")
               for ln in lines), lines
    assert gpu_check_report.phases_section([on_grid]) == []
    # The grid backward's phases, in their own table (the K split's parts
    # among them); the forward's table is not there without forward phases.
    trained = {**on_grid, "mode": "training", "bwd_phases": {"flags": {
        "wait": 2210.0, "gather": 900.4, "mma": 350.0, "parts": 4100.0, "epilogue": 1500.0,
        "publish": 260.0, "step": 20350.0}, "ll": "error: RuntimeError: x"}}
    lines = gpu_check_report.persist_section({"points": [trained]})
    head = lines.index("| point | exchange | wait | gather | mma | parts | epilogue | publish | step |")
    assert lines[head - 2].startswith("Step phases of the grid backward"), lines
    assert ("| LSTM float16 H=768 B=16 T=1024 | flags | 2210 | 900 | 350 | 4100 | 1500 | 260 | "
            "20350 |") in lines, lines
    assert any(ln.startswith("| LSTM float16 H=768 B=16 T=1024 | ll | error: RuntimeError: x")
               for ln in lines), lines
    assert not any(ln.startswith("Step phases of the grid forward") for ln in lines)
    failed = {**trained, "bwd_phases": {
        "flags": "error: RuntimeError: no traced persistent backward"}}
    lines = gpu_check_report.phases_section([failed])
    assert lines[-1].startswith("| LSTM float16 H=768 B=16 T=1024 | flags | error: Runtime"), lines
    assert lines[-1].count("|") == 10, lines  # the table's 9 columns
    # The grid forward's LL exchange: its time in its column; different bits
    # from the flag exchange fail the check and show there.
    ll = {**on_grid, "ll_status": "OK", "ll_ms": 4.125}
    rows = [ln for ln in gpu_check_report.persist_section({"points": [ll]})
            if ln.startswith("| LSTM |")]
    assert "| cluster 9.500 | cluster 7.250 | - | 4.125 | - | OK |" in rows[0], rows
    assert persist_check.passed({**result, "points": [ll]})
    trained_ll = {**ll, "mode": "training", "ll_backward": "flags"}
    rows = [ln for ln in gpu_check_report.persist_section({"points": [trained_ll]})
            if ln.startswith("| LSTM |")]
    assert "| 4.125 (bwd flags) |" in rows[0], rows
    wrong = {**ll, "ll_status": "WRONG: outputs differ from the flag exchange's (max 0.5)",
             "ll_ms": None}
    assert not persist_check.passed({**result, "points": [wrong]})
    rows = [ln for ln in gpu_check_report.persist_section({"points": [wrong]})
            if ln.startswith("| LSTM |")]
    assert "| - | WRONG: outputs differ from the flag exchange's (max 0.5) | - | OK |" in rows[0], rows
    # The flags a line apart: the same, in their own column.
    spread = {**on_grid, "spread_status": "OK", "spread_ms": 3.875}
    rows = [ln for ln in gpu_check_report.persist_section({"points": [spread]})
            if ln.startswith("| LSTM |")]
    assert "| - | - | 3.875 | OK |" in rows[0], rows
    assert persist_check.passed({**result, "points": [spread]})
    assert not persist_check.passed({**result, "points": [{**spread, "spread_status": "WRONG: x"}]})


def _persist_check_on_cpu(monkeypatch, check):
    """persist_check on the CPU: torch.nn and the modules on the CPU kernels,
    the real planner on a fake H100 for the plans, `check` for
    check_persistent, fakes for the launch counters and the CUDA timing."""
    from benchmarks import persist_check
    from test_persistent_plan import H100_CLUSTERS
    monkeypatch.setattr(persist_check, "DEV", "cpu")
    monkeypatch.setattr(persist_check, "path_info", _planner_path_info(H100_CLUSTERS))
    monkeypatch.setattr(persist_check, "check_persistent", check)
    monkeypatch.setattr(persist_check, "launch_counts", lambda *shape: (0, 0))
    monkeypatch.setattr(persist_check, "planned_launches", lambda info, mode: (0, 0))
    monkeypatch.setattr(persist_check, "time_ms", lambda fn, reps: (fn(), 1.0)[1])
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)


def test_persist_check_point_runs_end_to_end_on_cpu_fakes(monkeypatch):
    """persist_check.point's own code on the CPU: torch.nn and the modules on
    the CPU kernels, the real planner on a fake H100 (both passes on the
    grid tier at LSTM bf16 H=64 B=8; on the cluster tier where the variables
    ask for it), fakes for the launch counters and the CUDA timing. A row
    carries the other tier's comparisons (both passes; in training the
    backward alone), each checked as the point is, and on the cluster tier
    the push at the step's end; the environment is left as it was."""
    from benchmarks import persist_check
    tiers = []
    check = persist_check.check_persistent

    def check_and_note(run, ours, base, info, mode, shape):
        tiers.append((mode, os.environ.get("RNNFUSE_PERSISTENT_TIER"),
                      os.environ.get("RNNFUSE_PERSISTENT_BWD_TIER"), info["path"],
                      info["backward_path"]))
        return check(run, ours, base, info, mode, shape)

    _persist_check_on_cpu(monkeypatch, check_and_note)
    pushes = []
    monkeypatch.setattr(persist_check, "step_push",
                        lambda *a: pushes.append(os.environ.get("RNNFUSE_PERSISTENT_TIER"))
                        or (True, 1.0))
    both = ("RNNFUSE_PERSISTENT_TIER", "RNNFUSE_PERSISTENT_BWD_TIER")
    for var in both:
        monkeypatch.delenv(var, raising=False)
    rows = persist_check.point("LSTM", torch.bfloat16, 64, 8, 4, False, reps=1)
    inference, training = rows
    assert inference["path"] == "persistent-grid" and "cluster_bwd_ms" not in inference
    assert training["backward_path"] == "persistent-grid", training
    assert "grid_ms" not in training and "grid_bwd_ms" not in training
    for key in ("status", "cluster_status", "cluster_bwd_status"):
        assert training[key] == "OK", (key, training)
    assert training["cluster_ms"] == training["cluster_bwd_ms"] == inference["cluster_ms"] == 1.0
    assert ("training", "cluster", "cluster", "persistent-cluster", "persistent-cluster") in tiers
    assert ("training", None, "cluster", "persistent-grid", "persistent-cluster") in tiers
    assert pushes == ["cluster"] and inference["step_push_bitwise"] is True
    # The grid forward again with the LL exchange: the same bits (the CPU
    # kernels here), timed.
    assert inference["ll_status"] == training["ll_status"] == "OK"
    # The training row says how the LL run's backward exchanged.
    assert training["ll_backward"] == "ll" and "ll_backward" not in inference
    assert inference["ll_ms"] == training["ll_ms"] == 1.0
    assert inference["spread_status"] == training["spread_status"] == "OK"
    # The step phases were asked for with both exchanges; the CPU kernels
    # trace nothing, and the row says so.
    assert set(inference["phases"]) == {"flags", "ll"} and "phases" not in training
    assert all(v.startswith("error: RuntimeError") for v in inference["phases"].values()), \
        inference["phases"]
    # The grid backward's phases were asked for at the training point, with
    # both exchanges.
    assert "bwd_phases" not in inference and set(training["bwd_phases"]) == {"flags", "ll"}
    for got in training["bwd_phases"].values():
        assert got.startswith("error: RuntimeError") and "no traced persistent backward" in got
    assert "RNNFUSE_PERSISTENT_TRACE_CTA" not in os.environ
    assert persist_check.passed({"errors": [], "exchange": [], "cluster_exchange": [],
                                 "points": rows})
    assert set(both).isdisjoint(os.environ)
    assert "RNNFUSE_PERSISTENT_EXCHANGE" not in os.environ
    assert "RNNFUSE_PERSISTENT_FLAG_STRIDE" not in os.environ
    # The planner sent to the cluster tier: the grid tier is the comparison.
    tiers.clear()
    for var in both:
        monkeypatch.setenv(var, "cluster")
    inference, training = persist_check.point("LSTM", torch.bfloat16, 64, 8, 4, False, reps=1)
    assert inference["path"] == "persistent-cluster" and "grid_bwd_ms" not in inference
    assert training["backward_path"] == "persistent-cluster", training
    for key in ("status", "grid_status", "grid_bwd_status"):
        assert training[key] == "OK", (key, training)
    assert training["grid_ms"] == training["grid_bwd_ms"] == 1.0
    assert "ll_status" not in inference and "ll_status" not in training
    assert ("training", "grid", "grid", "persistent-grid", "persistent-grid") in tiers
    assert ("training", "cluster", "grid", "persistent-cluster", "persistent-grid") in tiers
    assert [os.environ.get(v) for v in both] == ["cluster", "cluster"]


def test_persist_check_grid_comparison_only_where_the_grid_tier_runs(monkeypatch):
    """on_grid compares nothing (None) where, with the grid tier asked for,
    the passes it restricts are not on the grid tier or none is persistent
    (the backward alone: in inference there is nothing to compare);
    otherwise it checks and times the point, a bidirectional one as one op
    as the point itself runs."""
    from benchmarks import persist_check
    seen = []

    def fake_path_info(cell, dtype, H, B, T, bidir=False):
        seen.append((bidir, os.environ.get("RNNFUSE_PERSISTENT_TIER"),
                     os.environ.get("RNNFUSE_PERSISTENT_BWD_TIER")))
        return {"path": "per-step" if H > 1000 else "persistent-grid",
                "backward_path": "persistent-grid"}

    monkeypatch.setattr(persist_check, "path_info", fake_path_info)
    monkeypatch.setattr(persist_check, "check_persistent", lambda *a: ("OK", 0.0))
    monkeypatch.setattr(persist_check, "time_ms", lambda fn, reps: 2.5)
    monkeypatch.delenv("RNNFUSE_PERSISTENT_TIER", raising=False)
    monkeypatch.delenv("RNNFUSE_PERSISTENT_BWD_TIER", raising=False)
    both = ("RNNFUSE_PERSISTENT_TIER", "RNNFUSE_PERSISTENT_BWD_TIER")
    shape = ("LSTM", torch.bfloat16, 512, 64, 128)
    assert persist_check.on_grid(None, None, None, "training", shape, True, 1, both) == ("OK", 2.5)
    assert seen[-1] == (True, "grid", "grid")
    assert persist_check.on_grid(None, None, None, "training", shape, False, 1,
                                 both[1:]) == ("OK", 2.5)
    assert seen[-1] == (False, None, "grid")
    assert persist_check.on_grid(None, None, None, "inference", shape, False, 1, both[1:]) is None
    big = ("LSTM", torch.bfloat16, 2048, 64, 128)
    assert persist_check.on_grid(None, None, None, "inference", big, False, 1, both) is None
    assert persist_check.on_grid(None, None, None, "training", big, False, 1, both) == ("OK", 2.5)
    assert "RNNFUSE_PERSISTENT_TIER" not in os.environ
    assert "RNNFUSE_PERSISTENT_BWD_TIER" not in os.environ


def test_persist_check_step_push_comparison_in_report_and_verdict():
    """A cluster point's comparison with RNNFUSE_CLUSTER_PUSH=step: its time
    and bitwise agreement in the report; outputs that differ fail the check
    (the push mode must not change a bit), a mode not planned does not."""
    from benchmarks import gpu_check_report, persist_check
    point = {"cell": "LSTM", "dtype": "float16", "mode": "inference", "T": 1024, "B": 16,
             "H": 768, "persistent_ms": 1.36, "us_per_step": 1.33, "path": "persistent-cluster",
             "plan": {"tier": "cluster", "P": 16, "R": 2}, "status": "OK",
             "step_push_bitwise": True, "step_push_ms": 1.53}
    result = {"errors": [], "exchange": [], "cluster_exchange": [], "points": [point]}
    rows = [ln for ln in gpu_check_report.persist_section(result) if ln.startswith("| LSTM |")]
    assert "| 1.530 (bitwise equal) | - | - | OK |" in rows[0], rows
    assert persist_check.passed(result)
    differs = {**point, "step_push_bitwise": False}
    assert not persist_check.passed({**result, "points": [differs]})
    rows = [ln for ln in gpu_check_report.persist_section({"points": [differs]})
            if ln.startswith("| LSTM |")]
    assert "DIFFERS" in rows[0], rows
    unplanned = {**point, "step_push_bitwise": "not planned: persistent-grid", "step_push_ms": None}
    assert persist_check.passed({**result, "points": [unplanned]})
    failed = {**point, "step_push_bitwise": "error: RuntimeError: launch failed"}
    assert not persist_check.passed({**result, "points": [failed]})
    grid = {k: v for k, v in point.items() if not k.startswith("step_push")}
    rows = [ln for ln in gpu_check_report.persist_section({"points": [grid]})
            if ln.startswith("| LSTM |")]
    assert "| - | - | - | OK |" in rows[0], rows


def test_persist_check_step_push_runs_both_modes_and_restores_the_environment(monkeypatch):
    """step_push on fakes of the GPU calls: it compares the outputs under
    RNNFUSE_CLUSTER_PUSH=step with the pipelined push's, says when the mode
    was not planned, turns an exception into an error string (the point's
    own rows survive it), and leaves the variable unset."""
    from benchmarks import persist_check
    monkeypatch.delenv("RNNFUSE_CLUSTER_PUSH", raising=False)
    monkeypatch.setattr(persist_check, "time_ms", lambda fn, reps: (fn(), 2.5)[1])
    plans = {"slice": "slice", "step": "step"}
    monkeypatch.setattr(persist_check, "path_info", lambda *shape: {
        "path": "persistent-cluster",
        "plan": {"push": plans[os.environ.get("RNNFUSE_CLUSTER_PUSH", "slice")]}})
    shape = ("LSTM", torch.float16, 768, 16, 1024, False)

    def run_same(m):
        return torch.ones(3), None

    def run_mode(m):  # a kernel whose push mode changed the numbers
        return torch.full((3,), 2.0 if os.environ.get("RNNFUSE_CLUSTER_PUSH") else 1.0), None

    assert persist_check.step_push(run_same, None, 3, shape) == (True, 2.5)
    assert persist_check.step_push(run_mode, None, 3, shape) == (False, 2.5)
    assert "RNNFUSE_CLUSTER_PUSH" not in os.environ
    plans["step"] = "slice"  # the planner ignored the variable
    outcome, ms = persist_check.step_push(run_same, None, 3, shape)
    assert outcome.startswith("not planned") and ms is None

    def run_fails(m):
        if os.environ.get("RNNFUSE_CLUSTER_PUSH"):
            raise RuntimeError("cluster launch failed")
        return torch.ones(3), None

    plans["step"] = "step"
    outcome, ms = persist_check.step_push(run_fails, None, 3, shape)
    assert outcome == "error: RuntimeError: cluster launch failed" and ms is None
    assert not persist_check.step_push_ok(outcome)
    assert "RNNFUSE_CLUSTER_PUSH" not in os.environ


def test_exchange_benches_carry_the_models_step():
    """Each exchange bench's plan carries the latency model's step for it
    (plan.cpp's constants, [I]; written out here): grid, a flag handoff of
    two L2 round trips plus 0.1 us, one round trip to gather all rows and
    their bytes at 5.5 TB/s aggregate or one SM's 64 B/clk at 1.75 GHz;
    cluster, a 0.25 us handoff, 0.05 us of the step's own barriers and CTA
    0's words of every row to each peer at 32 B/clk of 1.755 GHz. The GPU
    check's report sets them beside the measured ns, which calibrates them."""
    from benchmarks import gpu_check_report, persist_check
    for H, B, P in persist_check.EXCHANGE:
        plan = persist_check.bench_plan(H, B, P, 1, cluster=False)
        nbytes = B * H * 2
        gather = 0.25 + max(nbytes * plan["grid"] / 5.5e12, nbytes / (64 * 1.75e9)) * 1e6
        assert plan["model_us"] == pytest.approx(0.6 + gather, abs=2e-6), (H, B, P, plan)
    for H, B, S, R in persist_check.CLUSTER_EXCHANGE:
        plan = persist_check.bench_plan(H, B, S, R, cluster=True)
        rows = math.ceil(B / R)
        words = (min(plan["slices"] * 8, H) * 2 + 3) // 4
        push = rows * words * 4 * (plan["ctas"] - 1) / (32 * 1.755e9) * 1e6
        assert plan["model_us"] == pytest.approx(0.3 + push, abs=2e-6), (H, B, S, R, plan)
    row = {"H": 768, "B": 16, "S": 16, "R": 2, "ns_per_step": 600.0, "ok": True,
           "plan": persist_check.bench_plan(768, 16, 16, 2, cluster=True)}
    lines = gpu_check_report.persist_section({"cluster_exchange": [row], "exchange": []})
    assert "| 768 | 16 | 16 | 6 | 2 | 600 | 505 | ok |" in lines, lines


def test_persist_check_exchange_configurations_are_ones_the_benches_run():
    """Every exchange the GPU check measures has a partition its bench
    accepts, with the CTAs the report names (a cluster of S CTAs each running
    the forward kernel's 8-unit slices in runs; before this check the cluster
    bench refused every configuration above H = 128)."""
    from benchmarks import persist_check
    for H, B, P in persist_check.EXCHANGE:
        plan = persist_check.bench_plan(H, B, P, 1, cluster=False)
        assert plan["error"] is None and plan["ctas"] == P and plan["units"] * P >= H, (H, P, plan)
    for H, B, S, R in persist_check.CLUSTER_EXCHANGE:
        plan = persist_check.bench_plan(H, B, S, R, cluster=True)
        assert plan["error"] is None and plan["ctas"] == S and plan["replicas"] == R, (H, S, plan)
        assert plan["units"] == 8 and plan["slices"] == math.ceil(math.ceil(H / 8) / S)
        assert plan["grid"] == S * R
    # The LL exchange bench accepts every grid configuration too (2 * CTAs divide H).
    for H, B, P in persist_check.EXCHANGE:
        ll = json.loads(torch.ops.rnnfuse.persistent_ll_exchange_plan(H, B, P))
        assert ll["error"] is None and ll["units"] * P == H and ll["units"] % 2 == 0, (H, P, ll)
        assert ll["pairs"] * 4 == B * H and ll["words"] == B * H and ll["smem_bytes"] == 2 * B * H
    ll = lambda H, B, P: json.loads(torch.ops.rnnfuse.persistent_ll_exchange_plan(H, B, P))  # noqa: E731
    assert "multiple of 4" in ll(770, 16, 5)["error"]
    assert "even number of units" in ll(768, 16, 512)["error"]
    assert "even number of units" in ll(768, 16, 7)["error"]
    assert "shared memory" in ll(1024, 128, 8)["error"]
    plan = persist_check.bench_plan
    assert "2 <= ctas <= 16" in plan(768, 16, 17, 1, cluster=True)["error"]
    assert "model_us" not in plan(768, 16, 17, 1, cluster=True)
    assert "replicas <= batch" in plan(768, 4, 8, 5, cluster=True)["error"]
    assert "min(hidden, 256)" in plan(768, 16, 257, 1, cluster=False)["error"]
    assert "min(hidden, 256)" in plan(8, 16, 9, 1, cluster=False)["error"]


def _fake_items(monkeypatch, persist_check, broken_after, raises=()):
    """Three cheap items; the ones in broken_after leave the (fake) CUDA
    context broken in their process, those in raises raise."""
    monkeypatch.setattr(persist_check, "ITEMS", [("exchange", (1,)), ("exchange", (2,)),
                                                 ("points", (3,))])
    state = {"broken": None}

    def run_item(kind, spec, args):
        if spec[0] in broken_after:
            state["broken"] = f"fake sticky error after {spec[0]}"
        if spec[0] in raises:
            raise RuntimeError(f"item {spec[0]} failed")
        if kind == "points":
            return [{"status": "OK", "n": spec[0]}]
        return [{"ok": True, "n": spec[0]}]

    monkeypatch.setattr(persist_check, "run_item", run_item)
    monkeypatch.setattr(persist_check, "print_plans", lambda: None)
    monkeypatch.setattr(persist_check, "cuda_context_error", lambda: state["broken"])
    monkeypatch.setattr(persist_check, "new_result", lambda: {
        "device": "fake", "exchange": [], "cluster_exchange": [], "points": [], "errors": [],
        "next": 0, "restarts": 0})
    return state


def test_persist_check_goes_on_in_a_fresh_process_after_a_broken_context(tmp_path, monkeypatch):
    """persist_check.supervise with in-process "processes": item 1 breaks the
    context (its process stops: exit 3), the next process starts at item 2;
    a process that dies inside an item blames that item and goes on after it."""
    from benchmarks import persist_check
    state = _fake_items(monkeypatch, persist_check, broken_after={1})
    out = tmp_path / "persist.json"
    args = persist_check.argparse.Namespace(json=str(out), deadline_s=60.0, start=None)
    starts = []

    def spawn(argv, start, timeout):
        starts.append(start)
        state["broken"] = None  # a fresh process
        return persist_check.measure(persist_check.argparse.Namespace(json=str(out), start=start))

    assert persist_check.supervise(args, [], spawn=spawn) == 1
    result = persist_check.json.loads(out.read_text())
    assert starts == [0, 1] and result["restarts"] == 1 and result["next"] == 3
    assert [r["n"] for r in result["exchange"]] == [1, 2] and result["points"][0]["n"] == 3
    assert result["errors"] == ["exchange 1 broke the CUDA context: fake sticky error after 1"]

    # A process that dies in item 2 (exit -6 after writing item 1's row).
    state = _fake_items(monkeypatch, persist_check, broken_after=set())
    starts.clear()

    def dying_spawn(argv, start, timeout):
        starts.append(start)
        if start == 0:
            persist_check.measure(persist_check.argparse.Namespace(json=str(out), start=0))
            result = persist_check.json.loads(out.read_text())
            result["exchange"], result["points"], result["next"] = result["exchange"][:1], [], 1
            out.write_text(persist_check.json.dumps(result))
            return -6
        return persist_check.measure(persist_check.argparse.Namespace(json=str(out), start=start))

    assert persist_check.supervise(args, [], spawn=dying_spawn) == 1
    result = persist_check.json.loads(out.read_text())
    assert starts == [0, 2] and result["next"] == 3
    assert [r["n"] for r in result["exchange"]] == [1] and result["points"][0]["n"] == 3
    assert result["errors"] == ["exchange 2: the measuring process died (exit -6)"]

    # No trouble: one process, exit 0; an item that raises is an error and the rest run.
    _fake_items(monkeypatch, persist_check, broken_after=set())
    assert persist_check.supervise(args, [], spawn=spawn) == 0
    _fake_items(monkeypatch, persist_check, broken_after=set(), raises={2})
    assert persist_check.supervise(args, [], spawn=spawn) == 1
    result = persist_check.json.loads(out.read_text())
    assert result["errors"] == ["exchange 2: RuntimeError: item 2 failed"] and result["next"] == 3


def test_persist_check_lists_what_the_deadline_left(tmp_path, monkeypatch):
    from benchmarks import persist_check
    _fake_items(monkeypatch, persist_check, broken_after={1})
    out = tmp_path / "persist.json"
    args = persist_check.argparse.Namespace(json=str(out), deadline_s=0.0, start=None)

    def spawn(argv, start, timeout):
        return persist_check.measure(persist_check.argparse.Namespace(json=str(out), start=start))

    assert persist_check.supervise(args, [], spawn=spawn) == 1
    result = persist_check.json.loads(out.read_text())
    assert result["errors"][-1] == "not run (deadline): exchange 2, points 3"


def test_persist_check_deadline_that_cuts_only_the_sweep_fails_nothing(tmp_path, monkeypatch):
    """The sweep comes last and only ranks partitions: left out by the
    deadline it is listed (JSON "not_run", the report), not an error; a
    sweep item that ran and failed still fails the check."""
    from benchmarks import gpu_check_report, persist_check
    _fake_items(monkeypatch, persist_check, broken_after=set())
    items = persist_check.ITEMS + [("sweep", (4,)), ("sweep", (5,))]
    out = tmp_path / "persist.json"
    args = persist_check.argparse.Namespace(json=str(out), deadline_s=0.0, start=None)

    def spawn(argv, start, timeout):  # the deadline stops it after the points
        persist_check.measure(persist_check.argparse.Namespace(json=str(out), start=start))
        monkeypatch.setattr(persist_check, "ITEMS", items)
        return "deadline"

    assert persist_check.supervise(args, [], spawn=spawn) == 0
    result = persist_check.json.loads(out.read_text())
    assert result["errors"] == [] and result["not_run"] == ["sweep 4", "sweep 5"]
    lines = gpu_check_report.persist_section({"not_run": result["not_run"]})
    assert "- not run (deadline; the sweep fails nothing): sweep 4, sweep 5" in lines
    failed = {**result, "sweep": [{"pass": "forward", "status": "WRONG", "bitwise": True}]}
    assert not persist_check.passed(failed)


# ---- shards, deadline, merge -------------------------------------------------------------

def _tiny_run(out, *extra, candidates=TORCH_NN):
    return run.main(["--device", "cpu", "--cell", "lstm,gru", "--dtype", "fp32", "--T", "3",
                     "--B", "2", "--H", "4", "--ceilings", "off", "--no-plots", "--budget", "0",
                     "--out", str(out), *extra], candidates=candidates)


def test_a_point_that_breaks_the_cuda_context_stops_the_run_and_resume_finishes_it(
        tmp_path, monkeypatch):
    """The second point "breaks the CUDA context" (a fake health check): it is
    an ERROR, the rest SKIPPED, exit 3; --resume-from measures the SKIPPED
    ones and writes the union in place; the ERROR stays (exit 1)."""
    calls = []

    def fake_health():
        calls.append(1)
        return "fake sticky error" if len(calls) == 2 else None

    monkeypatch.setattr(run, "cuda_context_error", fake_health)
    out = tmp_path / "r"
    assert _tiny_run(out) == 3
    first = json.loads((out / "results.json").read_text())
    statuses = [p["status"] for p in first["points"]]
    assert statuses[0] in ("OK", "NOISY") and statuses[1] == "ERROR", statuses
    assert "broke the CUDA context: fake sticky error" in first["points"][1]["error"]
    assert statuses[2:] == ["SKIPPED", "SKIPPED"]
    assert all(p["error"] == run.BROKEN + first["points"][1]["id"] for p in first["points"][2:])

    monkeypatch.setattr(run, "cuda_context_error", lambda: None)
    rc = run.main(["--device", "cpu", "--resume-from", str(out / "results.json"), "--out", str(out),
                   "--no-plots", "--budget", "0"], candidates=TORCH_NN)
    assert rc == 1  # the point that broke the context stays an ERROR
    merged = json.loads((out / "results.json").read_text())
    by_id = {p["id"]: p for p in merged["points"]}
    assert sorted(by_id) == sorted(p["id"] for p in first["points"])
    assert by_id[first["points"][1]["id"]]["status"] == "ERROR"
    assert all(by_id[p["id"]]["status"] in ("OK", "NOISY") for p in first["points"][2:])
    assert merged["ceilings"] == first["ceilings"] and merged["config"]["merged_from"] == 2
    # Nothing left to resume: a usage error.
    assert run.main(["--device", "cpu", "--resume-from", str(out / "results.json"), "--out",
                     str(tmp_path / "again"), "--no-plots"], candidates=TORCH_NN) == 2


def test_shards_partition_the_points_and_merge_into_one_report(tmp_path):
    """--shard K/N keeps points K, K+N, ...; the shards' union, merged, is the
    whole selection once, with the shards' runs recorded in config."""
    from benchmarks import merge
    assert _tiny_run(tmp_path / "all") == 0
    every = [p["id"] for p in _strict_load(tmp_path / "all" / "results.json")["points"]]
    assert len(every) == 4
    for k in (1, 2):
        assert _tiny_run(tmp_path / f"s{k}", "--shard", f"{k}/2") == 0
    shards = [_strict_load(tmp_path / f"s{k}" / "results.json") for k in (1, 2)]
    assert [p["id"] for p in shards[0]["points"]] == every[0::2]
    assert [p["id"] for p in shards[1]["points"]] == every[1::2]
    assert shards[0]["config"]["shard"] == "1/2"
    out = tmp_path / "merged"
    assert merge.main([str(out), str(tmp_path / "s1" / "results.json"),
                       str(tmp_path / "s2" / "results.json"), "--no-plots"]) == 0
    merged = _strict_load(out / "results.json")
    assert sorted(p["id"] for p in merged["points"]) == sorted(every)
    assert merged["summary"]["total"] == 4 and merged["summary"]["timed"] == 4
    assert [s["shard"] for s in merged["config"]["shards"]] == ["1/2", "2/2"]
    assert "preset custom" in (out / "report.md").read_text()


def test_deadline_skips_the_rest_and_a_measured_shard_replaces_them(tmp_path):
    from benchmarks import merge
    assert _tiny_run(tmp_path / "late", "--deadline-s", "0") == 0  # SKIPPED is not a failure
    late = _strict_load(tmp_path / "late" / "results.json")
    assert late["summary"]["counts"] == {"SKIPPED": 4} and late["summary"]["timed"] == 0
    assert all("--deadline-s 0" in p["error"] for p in late["points"])
    assert "**SKIPPED**" in (tmp_path / "late" / "report.md").read_text()
    assert _tiny_run(tmp_path / "s2", "--shard", "2/2") == 0
    out = tmp_path / "merged"
    assert merge.main([str(out), str(tmp_path / "late" / "results.json"),
                       str(tmp_path / "s2" / "results.json"), "--no-plots"]) == 0
    summary = _strict_load(out / "results.json")["summary"]
    assert summary["counts"]["SKIPPED"] == 2 and summary["timed"] == 2  # OK or NOISY


def test_merge_refuses_a_point_measured_twice_and_mismatched_runs(tmp_path, capsys):
    from benchmarks import merge
    assert _tiny_run(tmp_path / "a", "--shard", "1/2") == 0
    shard = str(tmp_path / "a" / "results.json")
    assert merge.main([str(tmp_path / "m"), shard, shard, "--no-plots"]) == 2
    assert "measured by two shards" in capsys.readouterr().err
    other = _strict_load(tmp_path / "a" / "results.json")
    other["environment"]["torch"] = "0.0"
    (tmp_path / "b.json").write_text(json.dumps(other))
    assert merge.main([str(tmp_path / "m"), shard, str(tmp_path / "b.json"), "--no-plots"]) == 2
    assert "'torch' differs" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b"])
def test_shard_flag_is_checked(tmp_path, text, capsys):
    assert _tiny_run(tmp_path / "x", "--shard", text) == 2
    assert "--shard" in capsys.readouterr().err


def _planner_path_info(device):
    """persist_check.path_info on the CPU: the real planner (torch.ops.rnnfuse
    .persistent_plan) on a fake device, reading the pins, the tier and the
    exchange from the environment as the CUDA op does."""
    import json as _json

    import rnnfuse.ops  # noqa: F401

    def path_info(cell, dtype, H, B, T, bidir=False):
        tier = os.environ.get("RNNFUSE_PERSISTENT_TIER", "auto")
        bwd_tier = os.environ.get("RNNFUSE_PERSISTENT_BWD_TIER", "auto")
        args = (cell, dtype, H, B, T, 0, 1, True, device)
        fwd = _json.loads(torch.ops.rnnfuse.persistent_plan(
            *args, tier != "cluster", tier != "grid", False, 1, True,
            os.environ.get("RNNFUSE_PERSISTENT_PIN", ""),
            os.environ.get("RNNFUSE_PERSISTENT_EXCHANGE") == "ll"))
        bwd = _json.loads(torch.ops.rnnfuse.persistent_plan(
            *args, bwd_tier != "cluster", bwd_tier != "grid", True, 1, True,
            os.environ.get("RNNFUSE_PERSISTENT_BWD_PIN", ""),
            os.environ.get("RNNFUSE_PERSISTENT_EXCHANGE") == "ll"))
        name = {"grid": "persistent-grid", "cluster": "persistent-cluster"}
        return {"path": name.get(fwd["tier"], "per-step"), "plan": fwd,
                "backward_path": name.get(bwd["tier"], "per-step"), "backward_plan": bwd,
                "cluster_kernels": bool(device[9]) and (device[10] > 0 or device[11] > 0)}
    return path_info


@pytest.mark.parametrize("backward", [False, True])
@pytest.mark.parametrize("shape", [("LSTM", torch.float16, 768, 16, 1024),
                                   ("LSTM", torch.bfloat16, 512, 64, 100),
                                   ("GRU", torch.bfloat16, 512, 64, 100)])
def test_persist_check_sweep_finds_every_distinct_partition(monkeypatch, shape, backward):
    """The sweep's candidates, from the real planner on an H100 as the host
    reports it: distinct persistent partitions, each with the fields its pin
    names, the planner's own choice among them, and the environment as it
    was after each pin (a pin set before the sweep is restored)."""
    from benchmarks import persist_check
    from test_persistent_plan import H100_CLUSTERS
    monkeypatch.setattr(persist_check, "path_info", _planner_path_info(H100_CLUSTERS))
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "auto")
    monkeypatch.delenv("RNNFUSE_PERSISTENT_PIN", raising=False)
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_PIN", "")
    found = persist_check.sweep_candidates(shape, backward)
    assert os.environ["RNNFUSE_PERSISTENT_TIER"] == "auto"
    assert "RNNFUSE_PERSISTENT_PIN" not in os.environ
    assert os.environ["RNNFUSE_PERSISTENT_BWD_PIN"] == ""
    keys = [persist_check.plan_key(p) for _, _, p in found]
    assert len(set(keys)) == len(keys) >= 2, keys
    for tier, pin, p in found:
        assert p["tier"] == tier, (tier, pin, p)
        for kv in pin.split(","):
            k, v = kv.split("=")
            assert p[k] == int(v), (pin, p)
    chosen = persist_check.path_info(*shape)["backward_plan" if backward else "plan"]
    assert persist_check.plan_key(chosen) in keys
    print(f"{len(found)} partitions:", [pin for _, pin, _ in found])
    if not backward and shape[2] == 768:  # the headline: both tiers, both cluster sizes
        assert {p["tier"] for _, _, p in found} == {"cluster", "grid"}
    if backward:  # both tiers; the grid tier's K splits
        assert {p["tier"] for _, _, p in found} == {"cluster", "grid"}
        assert {p.get("ksplit") for _, _, p in found} >= {1, 2}


def test_persist_check_sweep_verdict_and_report():
    """A sweep row passes when correct and bitwise equal to the other
    partitions of its pass (backward: of its K split); the report lists every row with its model and
    measured step, marks the planner's choice and says whether it was the
    fastest measured."""
    from benchmarks import gpu_check_report, persist_check
    base = {"cell": "LSTM", "dtype": "float16", "H": 768, "B": 16, "T": 1024, "status": "OK",
            "agree_max_abs": 1e-3}
    rows = [
        {**base, "pass": "forward", "pin": "R=2,J=8,P=16", "chosen": True, "bitwise": True,
         "plan": {"tier": "cluster", "P": 16, "J": 8, "R": 2, "hbuf_rows": 16, "group": 1,
                  "red_pad": 8, "us_per_step": 1.325},
         "ms": 1.8, "us_per_step": 1.758},
        {**base, "pass": "forward", "pin": "R=1,J=8", "chosen": False, "bitwise": True,
         "plan": {"tier": "grid", "P": 96, "J": 8, "R": 1, "hbuf_rows": 32, "us_per_step": 2.1},
         "ms": 1.5, "us_per_step": 1.465},
        {**base, "pass": "backward", "pin": "R=2,J=16,ksplit=1", "chosen": True, "bitwise": True,
         "plan": {"tier": "grid", "P": 48, "J": 16, "R": 2, "hbuf_rows": 32, "ksplit": 1,
                  "us_per_step": 2.133}, "ms": 5.0, "us_per_step": 4.883},
        {**base, "pass": "backward", "pin": "R=2,J=16,ksplit=2", "chosen": False, "bitwise": True,
         "plan": {"tier": "grid", "P": 96, "J": 16, "R": 2, "hbuf_rows": 32, "ksplit": 2,
                  "us_per_step": 2.9}, "ms": 5.5, "us_per_step": 5.371},
    ]
    result = {"errors": [], "exchange": [], "cluster_exchange": [],
              "points": [{"status": "OK"}], "sweep": rows}
    assert persist_check.passed(result)
    # Which partitions must agree to the bit: every forward; the grid
    # backward's per K split; the cluster backward's per cluster size.
    group = persist_check.bits_group
    assert group(rows[0]["plan"]) is None is group(rows[1]["plan"])
    grid1, grid2 = ({"pass": "backward", "tier": "grid", "ksplit": s} for s in (1, 2))
    assert group(grid1) != group(grid2) and group(grid1) is not None
    c16 = {"pass": "backward", "tier": "cluster", "P": 16, "R": 2}
    assert group(c16) == group({**c16, "R": 1}) != group({**c16, "P": 8}) != group(grid1)
    for k in (1, 3):  # a forward or a backward partition whose bits differ
        differs = rows[:k] + [{**rows[k], "bitwise": False}] + rows[k + 1:]
        assert not persist_check.passed({**result, "sweep": differs})
    assert "OK (bits differ)" in "".join(gpu_check_report.sweep_section(differs))
    wrong = [{**rows[3], "status": "WRONG: persistent vs per-step 0.5 > 0.03"}]
    assert not persist_check.passed({**result, "sweep": wrong})
    assert not persist_check.passed({**result, "sweep": [{**rows[0], "status": "error: x"}]})
    lines = gpu_check_report.sweep_section(rows)
    table = [ln for ln in lines if ln.startswith("| LSTM float16")]
    assert len(table) == 4
    assert ("| forward * | cluster | 16 | 8 | 2 | 16 | - | 1/8 | 1.325 | - | 1.758 | - | R=2,J=8,P=16 "
            "| OK |") in table[0], table
    assert ("| backward | grid | 96 | 16 | 2 | 32 | 2 | - | 2.900 | - | 5.371 | - | R=2,J=16,ksplit=2 "
            "| OK |") in table[3], table
    # A grid forward's LL exchange: its step beside the flags'; different
    # bits fail the check.
    with_ll = rows[:1] + [{**rows[1], "ll_bitwise": True, "ll_us_per_step": 1.25}] + rows[2:]
    assert persist_check.passed({**result, "sweep": with_ll})
    assert "| 2.100 | - | 1.465 | 1.250 | R=1,J=8 | OK |" in "".join(
        gpu_check_report.sweep_section(with_ll))
    ll_differs = rows[:1] + [{**rows[1], "ll_bitwise": False, "ll_us_per_step": 1.25}] + rows[2:]
    assert not persist_check.passed({**result, "sweep": ll_differs})
    assert "OK (LL bits differ)" in "".join(gpu_check_report.sweep_section(ll_differs))
    # With the plan's bracket terms: the in-order reading, and the fastest per group.
    terms = {"brackets": 7, "bracket_us": {"mma": 0.087, "chain": 0.109, "w_smem": 0.122,
                                           "epilogue": 0.08, "barrier": 0.02}}
    grouped = [{**rows[0], "plan": {**rows[0]["plan"], **terms}},
               {**rows[0], "chosen": False, "pin": "R=2,J=8,group=2", "us_per_step": 1.5,
                "plan": {**rows[0]["plan"], "group": 2, "red_pad": 0, "us_per_step": 1.421}}]
    lines = gpu_check_report.sweep_section(grouped)
    # 1.325 + 7 x ((0.122 + 0.08 + 0.02) - (0.122 + 0.02)) = 1.885
    assert "| 1/8 | 1.325 | 1.885 | 1.758 |" in "".join(lines), lines
    assert any(ln.endswith("by slice group: group 1 1.758 us/step, group 2 1.500 us/step")
               for ln in lines), lines
    lines = gpu_check_report.sweep_section(rows)
    assert ("- LSTM float16 H=768 B=16 T=1024 forward: the planner's choice 1.758 us/step; "
            "fastest measured 1.465 (R=1,J=8, 1.20x faster); 2 of 2 partitions timed") in lines
    assert ("- LSTM float16 H=768 B=16 T=1024 backward: the planner's choice 4.883 us/step; "
            "the fastest measured; 2 of 2 partitions timed") in lines
    section = gpu_check_report.persist_section({**result, "points": []})
    assert any(ln.startswith("Partition sweep") for ln in section)
    assert gpu_check_report.sweep_section([]) == []


def test_persist_check_sweep_pins_cover_both_tiers_and_restore_the_environment(monkeypatch):
    from benchmarks import persist_check
    fwd = persist_check.sweep_pins("LSTM", False)
    assert ("cluster", "R=2,J=8,P=16") in fwd and ("grid", "R=1,J=4") in fwd
    assert {("cluster", f"R=2,J=8,group={g}") for g in (1, 2, 4)} <= set(fwd)
    assert ("grid", "R=1,J=5") in persist_check.sweep_pins("GRU", False)
    # the forward's CTAs of 16 units (3 or 4 m-tiles), beside a slice's 8 or 10
    assert {("grid", f"R={r},J=16") for r in (1, 2, 4, 8)} <= set(fwd)
    assert ("grid", "R=2,J=16") in persist_check.sweep_pins("GRU", False)
    bwd = persist_check.sweep_pins("GRU", True)
    assert ("grid", "R=8,J=8,ksplit=4") in bwd and ("cluster", "R=2") in bwd
    assert ("cluster", "R=1,P=8") in bwd and {t for t, _ in bwd} == {"grid", "cluster"}
    monkeypatch.delenv("RNNFUSE_PERSISTENT_BWD_TIER", raising=False)
    with persist_check.pinned("cluster", "R=2", True):
        assert os.environ["RNNFUSE_PERSISTENT_BWD_TIER"] == "cluster"
        assert os.environ["RNNFUSE_PERSISTENT_BWD_PIN"] == "R=2"
    assert "RNNFUSE_PERSISTENT_BWD_TIER" not in os.environ
    monkeypatch.setenv("RNNFUSE_PERSISTENT_PIN", "R=1")
    monkeypatch.delenv("RNNFUSE_PERSISTENT_TIER", raising=False)
    with persist_check.pinned("grid", "R=4", False):
        assert os.environ["RNNFUSE_PERSISTENT_PIN"] == "R=4"
        assert os.environ["RNNFUSE_PERSISTENT_TIER"] == "grid"
    assert os.environ["RNNFUSE_PERSISTENT_PIN"] == "R=1"
    assert "RNNFUSE_PERSISTENT_TIER" not in os.environ
    with pytest.raises(ValueError):
        with persist_check.pinned(None, "ksplit=2", True):
            assert os.environ["RNNFUSE_PERSISTENT_BWD_PIN"] == "ksplit=2"
            raise ValueError
    assert "RNNFUSE_PERSISTENT_BWD_PIN" not in os.environ


def test_persist_check_sweep_runs_end_to_end_on_cpu_fakes(monkeypatch):
    """persist_check.sweep's own code on the CPU: the modules on the CPU
    kernels, the real planner on a fake H100 for the plans, fakes for the
    launch counters and the CUDA timing. Every candidate gets a row with its
    plan, status, bitwise flag and time; exactly one per pass is the
    planner's choice; a candidate that raises gets an error row and the
    others still run; the environment is left as it was."""
    from benchmarks import persist_check
    broken = {"pin": None}
    check = persist_check.check_persistent

    def check_or_fail(*args):  # the launch of one pinned partition fails
        if broken["pin"] and os.environ.get("RNNFUSE_PERSISTENT_PIN") == broken["pin"]:
            raise RuntimeError("cluster launch failed")
        return check(*args)

    _persist_check_on_cpu(monkeypatch, check_or_fail)
    variables = ("RNNFUSE_PERSISTENT_PIN", "RNNFUSE_PERSISTENT_BWD_PIN", "RNNFUSE_PERSISTENT_TIER",
                 "RNNFUSE_PERSISTENT_BWD_TIER")
    for var in variables:
        monkeypatch.delenv(var, raising=False)
    rows = persist_check.sweep("GRU", torch.bfloat16, 512, 64, 4, reps=1)
    for p in ("forward", "backward"):
        mine = [r for r in rows if r["pass"] == p]
        assert len(mine) >= 2 and sum(r["chosen"] for r in mine) == 1, mine
    assert all(persist_check.sweep_row_ok(r) for r in rows), rows
    assert all(r["us_per_step"] == pytest.approx(250.0) for r in rows)
    # Every grid forward partition also with the LL exchange, and every grid
    # backward one with K split (its partial sums as LL words): the same bits.
    grid_ll = [r for r in rows if r["plan"]["tier"] == "grid"
               and (r["pass"] == "forward" or r["plan"]["ksplit"] > 1)]
    assert {r["pass"] for r in grid_ll} == {"forward", "backward"}, grid_ll
    assert all(r["ll_bitwise"] is True and r["ll_us_per_step"] == pytest.approx(250.0)
               for r in grid_ll), grid_ll
    assert not any("ll_bitwise" in r for r in rows if r not in grid_ll)
    assert set(variables + ("RNNFUSE_PERSISTENT_EXCHANGE",)).isdisjoint(os.environ)
    assert os.environ["RNNFUSE_PERSISTENT"] == "0"
    broken["pin"] = "R=4,J=10"
    rows = persist_check.sweep("GRU", torch.bfloat16, 512, 64, 4, reps=1)
    bad = [r for r in rows if r["pin"] == "R=4,J=10"]
    assert bad and bad[0]["status"] == "error: RuntimeError: cluster launch failed", bad
    assert not persist_check.sweep_row_ok(bad[0])
    assert sum(persist_check.sweep_row_ok(r) for r in rows) == len(rows) - 1


def test_racecheck_hazards_inside_library_kernels_are_listed_not_counted():
    """The H200 check of 2026-11-30: racecheck's two hazards were inside
    cuBLAS's nvjet GEMMs, every case passed. Those are excused (and named);
    a hazard in one of rnnfuse's kernels, a failed case or a crash is not."""
    from benchmarks import gpu_check_report as rep
    log = (REPO / "benchmarks/results/nvidia-h200_2026-11-30_gpu-check/sanitizer.log").read_text()
    race = log.split("################ racecheck ################")[1].split("################")[0]
    ok, why = rep.race_verdict(race)
    print(why)
    assert ok and "nvjet_sm90_tst_64x8_64x16_4x1_v_bz_NNT" in why
    assert rep.race_hazards(race)["ours"] == []
    ours = race.replace("nvjet_sm90_tst_64x8_64x16_1x2_h_bz_NNT",
                        "void persist_cluster_kernel<__nv_bfloat16, 1>(PersistClusterLaunch)")
    ok, why = rep.race_verdict(ours)
    assert not ok and "persist_cluster_kernel" in why
    assert rep.race_hazards(ours)["ours"] == [
        "void persist_cluster_kernel<__nv_bfloat16, 1>(PersistClusterLaunch)"]
    failed = race.replace("34 passed, 0 failed", "33 passed, 1 failed")
    assert not rep.race_verdict(failed)[0]
    crashed = race + "========= Target application returned an error\n"
    assert not rep.race_verdict(crashed)[0]
    assert not rep.race_verdict("sanitizer_cases: 3 passed, 0 failed\n")[0]  # no hazard named


def test_ncu_summary_reads_the_h200_profile(capsys):
    """benchmarks/ncu_summary.py on the H200 run's own ncu source page: the
    cluster forward's 5060 instructions per warp per step, 31% of its HMMA
    predicated on, stall_wait first; the grid forward's HMMA all on."""
    from benchmarks import ncu_summary
    src = REPO / "benchmarks/results/nvidia-h200_2026-11-30_gpu-check/ncu_sass.csv.gz"
    assert ncu_summary.main([str(src), "--kernel", "persist_cluster_kernel", "--warps", "256",
                             "--steps", "64"]) == 0
    out = capsys.readouterr().out
    assert "(5060.3 per warp per step)" in out and "HMMA predicated on: 31.0%" in out
    assert out.split("stall reasons (share of all samples):\n")[1].startswith("  stall_wait")
    assert "x6 " in out  # the per-group code, 6 groups a step
    assert ncu_summary.main([str(src), "--kernel", "persist_fwd_kernel"]) == 0
    assert "HMMA predicated on: 100.0%" in capsys.readouterr().out
    assert ncu_summary.main([str(src), "--kernel", "no_such_kernel"]) == 1


def test_gpu_profile_patterns_name_the_kernels_it_launches():
    """Each profile mode's ncu pattern matches exactly the kernels it launches
    (as many as its launch count), among the extension's __global__ names: a
    renamed kernel would leave ncu profiling nothing."""
    import re

    from benchmarks import gpu_profile
    names = set()
    for path in (REPO / "csrc" / "cuda").rglob("*.cu*"):
        text = path.read_text()
        names |= set(re.findall(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?(\w+)", text))
    assert {"persist_fwd_kernel", "persist_cluster_kernel", "persist_bwd_kernel"} <= names, names
    want = {"fwd": {"persist_cluster_kernel", "persist_fwd_kernel", "persist_fwd_ll_kernel"},
            "bwd": {"persist_bwd_kernel", "persist_bwd_ll_kernel"},
            "xch": {"persist_exchange_kernel", "persist_ll_exchange_kernel",
                    "persist_cluster_exchange_kernel"},
            "wide": {"persist_fwd_kernel", "persist_bwd_kernel"}}
    for mode, pattern in gpu_profile.KERNELS.items():
        hit = {n for n in names if re.search(pattern, n)}  # ncu's regex: a search
        assert hit == want[mode] and len(hit) == gpu_profile.LAUNCHES[mode], (mode, hit)


def test_memory_check_probe_runs_in_its_own_process_with_the_workspaces_limited(tmp_path):
    """The probe's plumbing on the CPU: a fresh memory_check process with
    --only and the limited workspaces in its environment; here it finds no
    CUDA device and the probe says so (exit 2), failing nothing."""
    from benchmarks import memory_check
    probe = memory_check.workspace_probe(tmp_path / "probe.json")
    assert probe["error"].startswith("exit 2:") and "no CUDA device" in probe["error"], probe
    assert memory_check.PROBE_ENV["CUBLASLT_WORKSPACE_SIZE"] == "1024"
