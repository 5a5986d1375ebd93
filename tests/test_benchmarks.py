"""Tests of the benchmark suite (benchmarks/), on the CPU.

What a benchmark run must get right before anyone trusts a ratio: the grids
hold the points the issue lists; the correctness gate rejects a wrong
implementation instead of timing it; the cuDNN algorithm heuristic matches
PyTorch's; the files and their schema are written; and a tiny end-to-end run
works. Stand-in implementations are torch.nn modules with a defect injected.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from benchmarks import (cudnn_algo, gate, gpu_check_report, grid, measure, physics, plots,
                        probe, report, run, timing, workload)
from benchmarks.grid import Point

REPO = Path(__file__).resolve().parent.parent
TORCH_NN = {"lstm": nn.LSTM, "gru": nn.GRU}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny shapes gain nothing from intra-op threads, and on a loaded 2-core
    runner thread contention made single calls 100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- grids -------------------------------------------------------------------

def _values(points, field):
    return {getattr(p, field) for p in points}


def test_gpu_standard_covers_every_listed_value():
    pts = grid.gpu_standard()
    assert len(pts) == len(set(pts)), "duplicate points"
    assert _values(pts, "cell") == {"lstm", "gru"}
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


def test_gpu_quick():
    pts = grid.gpu_quick()
    assert _values(pts, "cell") == {"lstm", "gru"}
    assert _values(pts, "dtype") == {"fp32", "bf16"}
    assert _values(pts, "mode") == {"inference", "training"}
    assert _values(pts, "H") == {512} and min(_values(pts, "T")) >= 100
    assert len(_values(pts, "B")) >= 3
    assert len(pts) <= 32, "quick must stay quick"


def test_cpu_presets():
    std, quick = grid.cpu_standard(), grid.cpu_quick()
    for pts in (std, quick):
        assert _values(pts, "dtype") == {"fp32"} and _values(pts, "T") == {100}
        assert 1 in _values(pts, "B")
    assert Point("lstm", "fp32", 100, 64, 512, 512, 1, False, "inference") in std
    assert Point("gru", "fp32", 100, 64, 512, 512, 1, False, "training") in std
    assert len(quick) < len(std)


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


def test_timing_summary_and_repeat_bounds():
    t = timing.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (t.median_ms, t.p10_ms, t.p90_ms, t.repeats) == (3.0, 1.0, 5.0, 5)
    calls = []
    budget = timing.Budget(seconds=0.0, warmup=2, min_repeats=4, max_repeats=6)
    t = timing.time_fn(lambda i: calls.append(i), torch.device("cpu"), budget)
    assert t.repeats == 4 and len(calls) == 2 + 4
    assert timing.peak_memory(lambda: None, torch.device("cpu")) is None


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
    assert res["status"] == "OK", res["error"]
    res = measure.run_point(p, cpu, {"lstm": nn.LSTM}, budget, {}, {"type": "cpu"}, "benchprobe")
    assert res["status"] == "ERROR" and "fell back" in res["error"]
    assert probe.namespaces(lambda: torch.ones(2) + 1) == {"aten"}


def test_torch_nn_backend_probe(capfd):
    m, x = nn.GRU(3, 4), torch.randn(2, 1, 3)
    assert probe.torch_nn_backend(lambda: m(x)) in ("native", "mkldnn")  # no cuDNN on the CPU
    assert "aten::gru" in probe.profiled_op_names(lambda: m(x))
    print("stderr restored", file=sys.stderr)
    assert "stderr restored" in capfd.readouterr().err


# ---- report, plots, schema -------------------------------------------------------

def _fake_point(cell, dtype, mode, B, H, status="OK", ratio=1.5):
    p = Point(cell, dtype, 128, B, H, H, 1, False, mode)
    timed = {"median_ms": 2.0, "p10_ms": 1.9, "p90_ms": 2.1, "repeats": 10,
             "peak_mem_bytes": 1 << 20, "input_copies": 1, "recurrent_flops": 1e9,
             "tflops": 0.5, "us_per_step": 15.6, "frac_gemm_peak": 0.001, "whh_from_memory_us": 0.1}
    r = measure._empty_result(p)
    r.update(status=status, cudnn_algo={"forward": "STANDARD", "backward": None},
             gate={"ok": status == "OK", "errors": {}, "tolerance": {}, "reason": ""})
    if status == "OK":
        r.update(baseline=dict(timed, median_ms=2.0 * ratio), candidate=timed, ratio=ratio)
    else:
        r["error"] = "worst output: error 0.5 > tolerance 0.05"
    return r


def _fake_results():
    pts = [_fake_point(c, d, m, b, h, ratio=0.5 + b / 64)
           for c in ("lstm", "gru") for d in ("fp32", "bf16") for m in grid.MODES
           for b in (1, 16, 64) for h in (256, 512)]
    pts.append(_fake_point("lstm", "bf16", "training", 8, 768, status="WRONG"))
    env = {"date": "2026-01-01T00:00:00", "device": {"type": "cuda", "name": "Fake GPU",
           "sm_count": 132, "compute_capability": [9, 0]}, "driver": "1.0", "python": "3.12",
           "torch": "2.x", "cuda": "13.0", "cudnn": 90000, "candidate": "rnnfuse",
           "tf32_defaults": {}, "git": {"commit": "abc", "dirty": False}}
    return report.build(pts, env, {"gemm_tflops": {"bf16": 800.0}, "gemm_n": 8192, "copy_gbps": 3000.0},
                        {"argv": []}, "quick")


def test_report_markdown_and_geomean(tmp_path):
    res = _fake_results()
    report.write_markdown(res, tmp_path / "report.md")
    md = (tmp_path / "report.md").read_text()
    assert "Fake GPU" in md and "Geometric-mean ratio" in md and "WRONG" in md
    gm = {(g["cell"], g["dtype"], g["mode"]): g for g in res["summary"]["geomean"]}
    assert len(gm) == 8
    expected = math.exp(sum(math.log(0.5 + b / 64) for b in (1, 16, 64)) / 3)
    assert gm[("lstm", "bf16", "training")]["geomean_ratio"] == pytest.approx(expected)
    assert gm[("lstm", "bf16", "training")]["n"] == 6  # the WRONG point is not averaged
    assert res["summary"]["counts"] == {"OK": 48, "WRONG": 1}
    assert "WRONG" in report.console(res)


def test_plots_written(tmp_path):
    pytest.importorskip("matplotlib")
    paths = plots.write(_fake_results(), tmp_path)
    assert {p.name for p in paths} == {"speedup_lstm.png", "speedup_gru.png"}
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_skip_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr(plots, "_matplotlib", lambda: None)
    assert plots.write(_fake_results(), tmp_path) == []


def _check_schema(results):
    assert set(report.REQUIRED_TOP) <= results.keys()
    for key in ("date", "device", "driver", "torch", "cuda", "cudnn", "tf32_defaults", "git",
                "candidate"):
        assert key in results["environment"]
    assert results["points"]
    for p in results["points"]:
        assert set(report.REQUIRED_POINT) <= p.keys(), p.keys()
        assert p["status"] in ("OK", "WRONG", "ERROR")
        assert set(p["tf32_flags"]) == {"cudnn_allow_tf32", "matmul_allow_tf32"}
        if p["status"] == "OK":
            for side in ("baseline", "candidate"):
                assert set(report.REQUIRED_TIMING) <= p[side].keys()
            assert p["ratio"] == pytest.approx(p["baseline"]["median_ms"] / p["candidate"]["median_ms"])
        else:
            assert p["ratio"] is None


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


def test_end_to_end_cpu_tiny(tmp_path, capsys):
    out = tmp_path / "res"
    rc = run.main(TINY_ARGS + ["--out", str(out)], candidates=TORCH_NN)
    assert rc == 0
    assert {"results.json", "report.md"} <= {p.name for p in out.iterdir()}
    res = _strict_load(out / "results.json")
    _check_schema(res)
    assert len(res["points"]) == 4 and all(p["status"] == "OK" for p in res["points"])
    assert res["ceilings"]["gemm_tflops"]["fp32"] > 0
    assert "geomean ratio" in capsys.readouterr().out


def test_end_to_end_wrong_candidate_fails_run(tmp_path):
    out = tmp_path / "res"
    rc = run.main(TINY_ARGS + ["--out", str(out), "--no-plots", "--ceilings", "off"],
                  candidates={"lstm": WrongGradLSTM, "gru": nn.GRU})
    assert rc == 1
    res = _strict_load(out / "results.json")
    status = {p["id"]: p["status"] for p in res["points"]}
    assert status["lstm-fp32-T4-B2-I5-H8-L1-uni-training"] == "WRONG"
    assert status["lstm-fp32-T4-B2-I5-H8-L1-uni-inference"] == "OK"
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


def test_cli_list_runs_as_module():
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--preset", "standard",
                        "--device", "cpu", "--list"], cwd=REPO, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "lstm-fp32-T100-B64-I512-H512-L1-uni-inference" in r.stdout.split()


# ---- the GPU check's pieces that run without a GPU -------------------------------------

def test_gpu_check_script_syntax():
    r = subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


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
    assert "4 passed, 0 failed" in out and "LSTM-bf16-H40-packed-L2-bi-persistent" in out
    names = [c.name for c in sanitizer_cases.race_cases() + sanitizer_cases.persistent_cases()]
    assert len(names) == len(set(names))


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
              "synccheck\tpass\t20\t", "persist\tpass\t40\t", "bench\tpass\t50\tall points OK"]
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
    assert "No persistent-tier results" in md
    (work / "persist.json").write_text(json.dumps({
        "exchange": [{"H": 768, "B": 16, "P": 96, "ns_per_step": 812.0, "ok": True}],
        "points": [{"cell": "LSTM", "dtype": "float16", "mode": "inference", "T": 1024, "B": 16,
                    "H": 768, "cudnn_ms": 2.07, "perstep_ms": 20.1, "persistent_ms": 1.5,
                    "speedup_vs_cudnn": 1.38, "us_per_step": 1.46, "path": "persistent-grid",
                    "status": "OK"}], "errors": []}))
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 1
    md = (out / "gpu_check_report.md").read_text()
    assert "| 768 | 16 | 96 | 812 | ok |" in md
    assert "| LSTM | float16 | inference | 1024 | 16 | 768 | 2.070 | 20.100 | 1.500 | 1.38 |" in md
    # All stages passing flips the verdict.
    (work / "stages.tsv").write_text("\n".join(s.replace("fail", "pass") for s in stages) + "\n")
    assert gpu_check_report.main(["report", "--work", str(work), "--out", str(out)]) == 0
    assert (out / "gpu_check_report.md").read_text().startswith("# rnnfuse GPU check: PASS")
