"""Run one point: gate, then time both implementations in alternation and
measure their memory.

Statuses:
  "OK"          gated, timed, and the spread is narrow enough to trust the ratio;
  "NOISY"       gated and timed, but the spread is too wide (benchmarks/noise.py):
                numbers kept, ratio not counted as a result;
  "WRONG"       the candidate failed the gate; never timed, so never reported as fast;
  "UNSUPPORTED" torch.nn itself raised on this point (e.g. a dtype it does not
                run on this device): nothing to compare against, not our error;
  "ERROR"       an exception of ours (an unsupported configuration, out of
                memory, ...); the message is recorded.
"""
from __future__ import annotations

import gc
import traceback

import torch

from . import cudnn_algo, gate, hostload, noise, physics, probe, timing, workload

TIMED = ("OK", "NOISY")  # statuses that carry times and a ratio


def empty_result(point) -> dict:
    return {"id": point.id, **point.as_dict(), "status": None, "error": None, "gate": None,
            "tf32_flags": workload.tf32_flags(point.dtype), "cudnn_algo": None,
            "rnnfuse_path": None,
            "baseline_backend": None, "baseline": None, "candidate": None, "ratio": None,
            "ratio_spread": None, "ratio_of_medians": None, "verdict": None, "noise": None}


def _side(module, point, device, l2_bytes) -> tuple[timing.Side, int]:
    copies = workload.rotation_copies(point, device, l2_bytes)
    inputs = workload.make_inputs(point, device, seed=7, copies=copies)
    fn = workload.step_fn(module, inputs, point)
    before = (lambda: workload.clear_grads(module, inputs)) if point.mode == "training" else None
    return timing.Side(fn, before), copies


def time_pair(baseline, candidate, point, device, budget, l2_bytes=None,
              clock=None) -> tuple[list[float], list[float], dict]:
    """Per-repeat times (ms per timed unit: a sequence, or one cell call) of
    baseline and candidate, measured in alternation; and extras: per side,
    and "other_cpu" (hostload.other_share while timing; None on a GPU)."""
    sides, extras = [], []
    for module in (baseline, candidate):
        side, copies = _side(module, point, device, l2_bytes)
        sides.append(side)
        extras.append({"input_copies": copies})
    kw = {} if clock is None else {"clock": clock}
    load0 = hostload.snapshot() if device.type == "cpu" else None
    times = timing.time_sides(sides, device, budget, **kw)
    other_cpu = hostload.other_share(load0, hostload.snapshot()) if load0 else None
    per = point.T if point.is_cell else 1  # a cell repeat is T chained calls
    times = [[t / per for t in ts] for ts in times]
    for side, extra in zip(sides, extras):
        extra["peak_mem_bytes"] = timing.peak_memory(lambda: side.fn(0), device, before=side.before)
    return times[0], times[1], {"baseline": extras[0], "candidate": extras[1],
                                "other_cpu": other_cpu}


def fill_timings(res: dict, point, base_ms: list[float], cand_ms: list[float],
                 itemsize: int, ceilings: dict, extras: dict | None = None) -> dict:
    """Summaries, paired ratios, noise judgement and status from the raw times."""
    extras = extras or {}
    tb, tc = timing.summarize(base_ms), timing.summarize(cand_ms)
    ratios = timing.spread(timing.paired_ratios(base_ms, cand_ms))
    for key, t in (("baseline", tb), ("candidate", tc)):
        res[key] = {**t.as_dict(), **extras.get(key, {}),
                    "calls_per_repeat": point.T if point.is_cell else 1,
                    **physics.derived(point, t.median_ms, itemsize, ceilings)}
    res["ratio"] = ratios.median
    res["ratio_spread"] = ratios.as_dict()
    res["ratio_of_medians"] = tb.median_ms / tc.median_ms
    reasons = noise.judge(tb, tc, ratios, extras.get("other_cpu"))
    res["noise"] = {"noisy": bool(reasons), "reasons": reasons,
                    "other_cpu_share": extras.get("other_cpu"),
                    "ratio_width": noise.ratio_width(ratios),
                    "baseline_p90_p10": noise.impl_spread(tb),
                    "candidate_p90_p10": noise.impl_spread(tc)}
    if reasons:
        res["status"], res["error"] = "NOISY", "; ".join(reasons)
    else:
        res["status"], res["verdict"] = "OK", noise.verdict(ratios)
    return res


def run_point(point, device: torch.device, candidates: dict, budget: timing.Budget,
              ceilings: dict, device_info: dict, require_namespace: str | None = None,
              clock=None) -> dict:
    """Measure one point. ``require_namespace`` (e.g. "rnnfuse"): the candidate's
    forward must dispatch an operator of that namespace, else the point is an
    ERROR (it fell back to torch.nn and its time would not be rnnfuse's).
    ``clock``: seconds, for tests (default time.perf_counter)."""
    res = empty_result(point)
    if device.type == "cuda" and not point.is_cell:
        cc = tuple(device_info["compute_capability"])
        res["cudnn_algo"] = cudnn_algo.algos_for_point(point, cc, device_info["sm_count"])
    itemsize = workload.TORCH_DTYPE[point.dtype].itemsize
    l2 = device_info.get("l2_bytes")
    stage = "build"
    baseline = candidate = None
    try:
        with workload.math_mode(point.dtype):
            # Read back, not assumed: what PyTorch reports is what ran.
            res["tf32_flags"] = {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
            baseline, candidate = workload.build_pair(point, device, candidates)
            stage = "gate"
            try:
                g = gate.check(point, baseline, candidate, device)
            except gate.BaselineUnsupported as e:
                res["status"], res["error"] = "UNSUPPORTED", f"torch.nn unsupported: {e}"
                return res
            res["gate"] = g.as_dict()
            if not g.ok:
                res["status"], res["error"] = "WRONG", g.reason
                return res
            probe_in = workload.make_inputs(point, device, seed=3)
            if device.type == "cuda" and not point.is_cell:
                # The algorithm column means something only if torch.nn ran cuDNN.
                stage = "probe"
                res["baseline_backend"] = probe.torch_nn_backend(
                    workload.step_fn(baseline, probe_in, point))
            if require_namespace:
                stage = "probe"
                step, seen = workload.step_fn(candidate, probe_in, point), set()
                watched = lambda: seen.update(probe.namespaces(step))  # noqa: E731
                if require_namespace == "rnnfuse":  # the same call, its path read around it
                    res["rnnfuse_path"] = probe.rnnfuse_path(watched, point, device)
                else:
                    watched()
                res["candidate_namespaces"] = sorted(seen)
                if require_namespace not in seen:
                    res["status"] = "ERROR"
                    res["error"] = (f"probe: the candidate ran no {require_namespace}:: operator "
                                    f"(fell back to torch.nn?); saw {sorted(seen)}")
                    return res
            stage = "timing"
            base_ms, cand_ms, extras = time_pair(baseline, candidate, point, device, budget, l2,
                                                 clock)
        fill_timings(res, point, base_ms, cand_ms, itemsize, ceilings, extras)
    except Exception as e:  # noqa: BLE001 - one bad point must not stop the grid
        res["status"] = "ERROR"
        res["error"] = f"{stage}: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"
        res["traceback"] = traceback.format_exc(limit=6)
    finally:
        # Free this point's modules and buffers before the next one is measured.
        baseline = candidate = None  # noqa: F841
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return res
