"""Run one point: gate, then time and measure memory of both implementations.

Statuses: "OK" (gated and timed), "WRONG" (the candidate failed the gate;
never timed, so never reported as fast), "ERROR" (an exception, e.g. an
unsupported configuration or out of memory; the message is recorded).
"""
from __future__ import annotations

import gc
import traceback

import torch

from . import cudnn_algo, gate, physics, probe, timing, workload


def _empty_result(point) -> dict:
    return {"id": point.id, **point.as_dict(), "status": None, "error": None, "gate": None,
            "tf32_flags": workload.tf32_flags(point.dtype), "cudnn_algo": None,
            "baseline_backend": None, "baseline": None, "candidate": None, "ratio": None}


def _measure_impl(module, point, device, budget, l2_bytes, itemsize, ceilings) -> dict:
    copies = workload.rotation_copies(point, device, l2_bytes)
    inputs = workload.make_inputs(point, device, seed=7, copies=copies)
    fn = workload.step_fn(module, inputs, point.mode)
    before = (lambda: workload.clear_grads(module, inputs)) if point.mode == "training" else None
    t = timing.time_fn(fn, device, budget, before=before)
    peak = timing.peak_memory(fn, device, before=before)
    return {**t.as_dict(), "input_copies": copies, "peak_mem_bytes": peak,
            **physics.derived(point, t.median_ms, itemsize, ceilings)}


def run_point(point, device: torch.device, candidates: dict, budget: timing.Budget,
              ceilings: dict, device_info: dict, require_namespace: str | None = None) -> dict:
    """Measure one point. ``require_namespace`` (e.g. "rnnfuse"): the candidate's
    forward must dispatch an operator of that namespace, else the point is an
    ERROR (it fell back to torch.nn and its time would not be rnnfuse's)."""
    res = _empty_result(point)
    if device.type == "cuda":
        cc = tuple(device_info["compute_capability"])
        res["cudnn_algo"] = cudnn_algo.algos_for_point(point, cc, device_info["sm_count"])
    itemsize = workload.TORCH_DTYPE[point.dtype].itemsize
    l2 = device_info.get("l2_bytes")
    stage = "build"
    try:
        with workload.math_mode(point.dtype):
            # Read back, not assumed: what PyTorch reports is what ran.
            res["tf32_flags"] = {"cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                                 "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}
            baseline, candidate = workload.build_pair(point, device, candidates)
            stage = "gate"
            g = gate.check(point, baseline, candidate, device)
            res["gate"] = g.as_dict()
            if not g.ok:
                res["status"], res["error"] = "WRONG", g.reason
                return res
            probe_in = workload.make_inputs(point, device, seed=3)
            if device.type == "cuda":
                # The algorithm column means something only if torch.nn ran cuDNN.
                stage = "probe"
                res["baseline_backend"] = probe.torch_nn_backend(
                    workload.step_fn(baseline, probe_in, point.mode))
            if require_namespace:
                stage = "probe"
                seen = probe.namespaces(workload.step_fn(candidate, probe_in, point.mode))
                res["candidate_namespaces"] = sorted(seen)
                if require_namespace not in seen:
                    res["status"] = "ERROR"
                    res["error"] = (f"probe: the candidate ran no {require_namespace}:: operator "
                                    f"(fell back to torch.nn?); saw {sorted(seen)}")
                    return res
            stage = "baseline"
            res["baseline"] = _measure_impl(baseline, point, device, budget, l2, itemsize, ceilings)
            stage = "candidate"
            res["candidate"] = _measure_impl(candidate, point, device, budget, l2, itemsize, ceilings)
        res["ratio"] = res["baseline"]["median_ms"] / res["candidate"]["median_ms"]
        res["status"] = "OK"
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
