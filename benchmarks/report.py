"""Write results.json and report.md, and format the console table.

Ratio convention: baseline time / candidate time, i.e. cuDNN (torch.nn) over
rnnfuse: above 1 means rnnfuse is faster. Only "OK" points have a ratio and
enter the geometric means.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

SCHEMA_VERSION = 1
# Keys every results.json has; tests/test_benchmarks.py checks them.
REQUIRED_TOP = ("schema_version", "preset", "environment", "ceilings", "config", "points", "summary")
REQUIRED_POINT = ("id", "cell", "dtype", "T", "B", "I", "H", "layers", "bidirectional", "mode",
                  "status", "error", "gate", "tf32_flags", "cudnn_algo", "baseline_backend",
                  "baseline", "candidate", "ratio")
REQUIRED_TIMING = ("median_ms", "p10_ms", "p90_ms", "repeats", "peak_mem_bytes",
                   "recurrent_flops", "tflops", "us_per_step", "frac_gemm_peak")


def geomean(xs) -> float | None:
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(points: list[dict]) -> dict:
    """Status counts and geometric-mean ratios per (cell, dtype, mode)."""
    counts = defaultdict(int)
    groups = defaultdict(list)
    for p in points:
        counts[p["status"]] += 1
        if p["status"] == "OK":
            groups[(p["cell"], p["dtype"], p["mode"])].append(p["ratio"])
    order = {"lstm": 0, "gru": 1, "fp32": 0, "tf32": 1, "fp16": 2, "bf16": 3,
             "inference": 0, "training": 1}
    keys = sorted(groups, key=lambda k: tuple(order.get(x, 9) for x in k))
    gm = [{"cell": c, "dtype": d, "mode": m, "n": len(groups[(c, d, m)]),
           "geomean_ratio": geomean(groups[(c, d, m)]),
           "min_ratio": min(groups[(c, d, m)]), "max_ratio": max(groups[(c, d, m)])}
          for c, d, m in keys]
    return {"counts": dict(counts), "total": len(points), "geomean": gm,
            "overall_geomean_ratio": geomean(r for k in keys for r in groups[k])}


def build(points, environment, ceilings, config, preset) -> dict:
    return {"schema_version": SCHEMA_VERSION, "preset": preset, "environment": environment,
            "ceilings": ceilings, "config": config, "points": points,
            "summary": summarize(points)}


def _finite(obj):
    """Strict JSON has no NaN/inf: write them as strings rather than invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(results: dict, path: Path):
    path.write_text(json.dumps(_finite(results), indent=1, default=str, allow_nan=False) + "\n")


# ---- formatting -----------------------------------------------------------

def _f(x, fmt="{:.3f}", none="-"):
    return none if x is None else fmt.format(x)


def _mb(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def _algo(p):
    a = p.get("cudnn_algo")
    if not a:
        return "-"
    backend = p.get("baseline_backend")
    if backend and backend != "cudnn":
        return f"({backend}, no cuDNN)"
    short = {"STANDARD": "STD", "PERSIST_STATIC": "PERSIST", "PERSIST_STATIC_SMALL_H": "SMALL_H"}
    fwd = short.get(a["forward"], a["forward"])
    bwd = a.get("backward")
    return fwd if not bwd or bwd == a["forward"] else f"{fwd}/{short.get(bwd, bwd)}"


COLUMNS = ("cell", "dtype", "mode", "T", "B", "I", "H", "L", "dir", "cuDNN algo",
           "torch ms", "rnnfuse ms", "ratio", "torch MiB", "rnnfuse MiB",
           "rnnfuse TFLOP/s", "% GEMM peak", "rnnfuse us/step", "status")


def row(p: dict) -> list[str]:
    b, c = p.get("baseline") or {}, p.get("candidate") or {}
    frac = c.get("frac_gemm_peak")
    return [p["cell"], p["dtype"], p["mode"], str(p["T"]), str(p["B"]), str(p["I"]), str(p["H"]),
            str(p["layers"]), "bi" if p["bidirectional"] else "uni", _algo(p),
            _f(b.get("median_ms")), _f(c.get("median_ms")), _f(p.get("ratio"), "{:.2f}"),
            _mb(b.get("peak_mem_bytes")), _mb(c.get("peak_mem_bytes")),
            _f(c.get("tflops"), "{:.2f}"), _f(None if frac is None else 100 * frac, "{:.1f}"),
            _f(c.get("us_per_step"), "{:.1f}"), p["status"]]


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def text_table(header, rows) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*header)] + [fmt.format(*r) for r in rows])


def geomean_rows(summary) -> list[list[str]]:
    return [[g["cell"], g["dtype"], g["mode"], str(g["n"]), _f(g["geomean_ratio"], "{:.2f}"),
             _f(g["min_ratio"], "{:.2f}"), _f(g["max_ratio"], "{:.2f}")]
            for g in summary["geomean"]]


GEOMEAN_HEADER = ("cell", "dtype", "mode", "points", "geomean ratio", "min", "max")


def console(results: dict) -> str:
    pts = results["points"]
    s = results["summary"]
    parts = [text_table(COLUMNS, [row(p) for p in pts]), ""]
    if s["geomean"]:
        parts += ["ratio = torch.nn time / rnnfuse time (above 1: rnnfuse faster)",
                  text_table(GEOMEAN_HEADER, geomean_rows(s)), ""]
    parts.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())))
    for p in pts:
        if p["status"] != "OK":
            parts.append(f"  {p['status']} {p['id']}: {p['error']}")
    return "\n".join(parts)


def _env_lines(env: dict, ceilings: dict) -> list[str]:
    dev = env["device"]
    git = env.get("git") or {}
    commit = git.get("commit") or "unknown"
    if git.get("dirty"):
        commit += " (uncommitted changes)"
    lines = [f"- device: {dev['name']}"
             + (f" ({dev['sm_count']} SMs, sm_{dev['compute_capability'][0]}{dev['compute_capability'][1]})"
                if dev["type"] == "cuda" else f" ({dev.get('threads')} threads)"),
             f"- driver: {env.get('driver') or '-'}",
             f"- torch {env['torch']}, CUDA {env.get('cuda') or '-'}, cuDNN {env.get('cudnn') or '-'},"
             f" Python {env['python']}",
             f"- rnnfuse commit: {commit}; candidate: {env['candidate']}",
             f"- date: {env['date']}",
             "- TF32: `fp32` points run with torch.backends.cudnn.allow_tf32 = "
             "torch.backends.cuda.matmul.allow_tf32 = False, `tf32` points with both True "
             f"(start-up defaults: {env['tf32_defaults']})"]
    g = ceilings.get("gemm_tflops") or {}
    if g:
        lines.append(f"- measured ceilings: GEMM {ceilings.get('gemm_n')}^3 "
                     + ", ".join(f"{d} {_f(v, '{:.3g}')} TFLOP/s" for d, v in g.items())
                     + f"; device copy {_f(ceilings.get('copy_gbps'), '{:.0f}')} GB/s (read+write)")
    return lines


def markdown(results: dict) -> str:
    env, s = results["environment"], results["summary"]
    out = [f"# rnnfuse vs torch.nn ({'cuDNN' if env['device']['type'] == 'cuda' else 'CPU'})"
           f" - preset {results['preset'] or 'custom'}", ""]
    out += _env_lines(env, results["ceilings"]) + [""]
    out += ["ratio = torch.nn median time / rnnfuse median time: above 1 means rnnfuse is faster. "
            "TFLOP/s counts the recurrent products only (2*B*H*G*H per step, layer and direction; "
            "training 3x); us/step = time / (T * layers). Memory: peak allocated during one call "
            "beyond what was live before it.", ""]
    if s["geomean"]:
        out += ["## Geometric-mean ratio", "", markdown_table(GEOMEAN_HEADER, geomean_rows(s)), ""]
        if s.get("overall_geomean_ratio"):
            out += [f"Overall geometric mean: {s['overall_geomean_ratio']:.2f}", ""]
    out += ["## Points", "", markdown_table(COLUMNS, [row(p) for p in results["points"]]), ""]
    bad = [p for p in results["points"] if p["status"] != "OK"]
    if bad:
        out += ["## Not OK", ""] + [f"- **{p['status']}** `{p['id']}`: {p['error']}" for p in bad] + [""]
    out.append("status counts: " + ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())))
    return "\n".join(out) + "\n"


def write_markdown(results: dict, path: Path):
    path.write_text(markdown(results))
