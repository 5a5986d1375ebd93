"""Write results.json and report.md, and format the console table.

Ratio convention: baseline time / candidate time, i.e. torch.nn (cuDNN on a
GPU) over rnnfuse: above 1 means rnnfuse is faster. A point's ratio is the
median of its paired ratios (one per repeat, both implementations timed back
to back; benchmarks/timing.py); "ratio_of_medians" is kept beside it. Only
"OK" points enter the geometric means; NOISY points keep their numbers but
are counted apart (benchmarks/noise.py says when a point is NOISY).

Standard library only (gpu_check_report.py uses it where torch may be broken).
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

from . import noise

SCHEMA_VERSION = 2  # 2: alternated timing, spreads, NOISY / UNSUPPORTED, cell points
# Keys every results.json has; tests/test_benchmarks.py checks them.
REQUIRED_TOP = ("schema_version", "preset", "environment", "ceilings", "config", "points", "summary")
REQUIRED_POINT = ("id", "cell", "dtype", "T", "B", "I", "H", "layers", "bidirectional", "mode",
                  "status", "error", "gate", "tf32_flags", "cudnn_algo", "baseline_backend",
                  "baseline", "candidate", "ratio", "ratio_spread", "ratio_of_medians",
                  "verdict", "noise")
REQUIRED_TIMING = ("median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "repeats",
                   "calls_per_repeat", "peak_mem_bytes", "recurrent_flops", "tflops",
                   "us_per_step", "frac_gemm_peak")
REQUIRED_SPREAD = ("median", "p10", "p90", "min", "max", "n")
# SKIPPED: not started before the run's --deadline-s (listed, not counted).
STATUSES = ("OK", "NOISY", "WRONG", "UNSUPPORTED", "ERROR", "SKIPPED")
FAILED = ("WRONG", "ERROR")  # what makes a run exit 1
ORDER = {"lstm": 0, "gru": 1, "lstmcell": 2, "grucell": 3, "fp32": 0, "tf32": 1, "fp16": 2,
         "bf16": 3, "inference": 0, "training": 1}


def geomean(xs) -> float | None:
    xs = [x for x in xs if x and x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def summarize(points: list[dict]) -> dict:
    """Status counts and geometric-mean ratios per (cell, dtype, mode), OK points only."""
    counts = defaultdict(int)
    groups = defaultdict(list)
    noisy = defaultdict(int)
    for p in points:
        counts[p["status"]] += 1
        key = (p["cell"], p["dtype"], p["mode"])
        if p["status"] == "OK":
            groups[key].append(p["ratio"])
        elif p["status"] == "NOISY":
            noisy[key] += 1
    keys = sorted(set(groups) | set(noisy), key=lambda k: tuple(ORDER.get(x, 9) for x in k))
    gm = []
    for c, d, m in keys:
        rs = groups.get((c, d, m), [])
        gm.append({"cell": c, "dtype": d, "mode": m, "n": len(rs), "noisy": noisy.get((c, d, m), 0),
                   "geomean_ratio": geomean(rs), "min_ratio": min(rs) if rs else None,
                   "max_ratio": max(rs) if rs else None})
    timed = counts.get("OK", 0) + counts.get("NOISY", 0)
    return {"counts": dict(counts), "total": len(points), "timed": timed,
            "noisy": counts.get("NOISY", 0), "noise_criterion": noise.CRITERION,
            "verdicts": {v: sum(1 for p in points if p.get("verdict") == v)
                         for v in ("faster", "on par", "slower")},
            "geomean": gm,
            "overall_geomean_ratio": geomean(r for k in keys for r in groups.get(k, []))}


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
    return none if not isinstance(x, (int, float)) else fmt.format(x)


def _ms(x):
    """Times span 10 us (a GPU cell call) to seconds: 4 significant digits."""
    return _f(x, "{:.4g}")


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


def time_cell(t: dict | None) -> str:
    """'median (p10-p90)' of one implementation's times."""
    if not t:
        return "-"
    return f"{_ms(t.get('median_ms'))} ({_ms(t.get('p10_ms'))}-{_ms(t.get('p90_ms'))})"


def ratio_cell(p: dict) -> str:
    """'median (p10-p90)' of the paired ratios."""
    r = p.get("ratio_spread")
    if not r:
        return _f(p.get("ratio"), "{:.2f}")
    return f"{_f(r['median'], '{:.2f}')} ({_f(r['p10'], '{:.2f}')}-{_f(r['p90'], '{:.2f}')})"


def verdict_cell(p: dict) -> str:
    if p["status"] == "NOISY":
        return "NOISY"
    return p.get("verdict") or "-"


COLUMNS = ("cell", "dtype", "mode", "T", "B", "I", "H", "L", "dir", "cuDNN algo",
           "rnnfuse path", "torch ms (p10-p90)", "rnnfuse ms (p10-p90)", "ratio (p10-p90)", "verdict",
           "torch MiB", "rnnfuse MiB", "rnnfuse TFLOP/s", "% GEMM peak", "rnnfuse us/step",
           "status")


def row(p: dict) -> list[str]:
    b, c = p.get("baseline") or {}, p.get("candidate") or {}
    frac = c.get("frac_gemm_peak")
    return [p["cell"], p["dtype"], p["mode"], str(p["T"]), str(p["B"]), str(p["I"]), str(p["H"]),
            str(p["layers"]), "bi" if p["bidirectional"] else "uni", _algo(p),
            p.get("rnnfuse_path") or "-", time_cell(b), time_cell(c), ratio_cell(p), verdict_cell(p),
            _mb(b.get("peak_mem_bytes")), _mb(c.get("peak_mem_bytes")),
            _f(c.get("tflops"), "{:.2f}"), _f(None if frac is None else 100 * frac, "{:.1f}"),
            _f(c.get("us_per_step"), "{:.1f}"), p["status"]]


SPREAD_COLUMNS = ("point", "repeats", "torch min / p10 / median / p90 / max ms",
                  "rnnfuse min / p10 / median / p90 / max ms",
                  "paired ratio min / p10 / median / p90 / max", "other CPU %", "status")


def _five(t: dict, suffix: str = "_ms", fmt=_ms) -> str:
    return " / ".join(fmt(t.get(k + suffix)) for k in ("min", "p10", "median", "p90", "max"))


def spread_row(p: dict) -> list[str]:
    b, c, r = p.get("baseline") or {}, p.get("candidate") or {}, p.get("ratio_spread") or {}
    other = (p.get("noise") or {}).get("other_cpu_share")
    return [p["id"], str(b.get("repeats", "-")), _five(b), _five(c),
            _five(r, "", lambda x: _f(x, "{:.2f}")),
            _f(None if other is None else 100 * other, "{:.0f}"), p["status"]]


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
    return [[g["cell"], g["dtype"], g["mode"], str(g["n"]), str(g.get("noisy", 0)),
             _f(g["geomean_ratio"], "{:.2f}"), _f(g["min_ratio"], "{:.2f}"),
             _f(g["max_ratio"], "{:.2f}")]
            for g in summary["geomean"]]


GEOMEAN_HEADER = ("cell", "dtype", "mode", "OK points", "NOISY (excluded)", "geomean ratio",
                  "min", "max")


def noise_line(s: dict) -> str:
    """How many timed points were too noisy to count, and the rule."""
    n, timed = s.get("noisy", 0), s.get("timed", 0)
    return (f"{n} of {timed} timed points NOISY, not counted in the geometric means "
            f"({s.get('noise_criterion', noise.CRITERION)})")


def verdict_line(s: dict) -> str:
    v = s.get("verdicts") or {}
    return (f"OK points: rnnfuse faster at {v.get('faster', 0)}, on par at {v.get('on par', 0)}, "
            f"slower at {v.get('slower', 0)} (faster: paired-ratio p10 > 1; slower: p90 < 1)")


def console(results: dict) -> str:
    pts = results["points"]
    s = results["summary"]
    parts = [text_table(COLUMNS, [row(p) for p in pts]), ""]
    if s["geomean"]:
        parts += ["ratio = torch.nn time / rnnfuse time (above 1: rnnfuse faster), median of "
                  "the paired per-repeat ratios",
                  text_table(GEOMEAN_HEADER, geomean_rows(s)), ""]
    parts.append("status: " + ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())))
    parts.append(noise_line(s))
    parts.append(verdict_line(s))
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
             f"- date: {env['date']}"]
    if env.get("loadavg"):
        lines.append("- load average at start (1, 5, 15 min): "
                     + ", ".join(f"{x:.2f}" for x in env["loadavg"]))
    lines.append("- TF32: `fp32` points run with torch.backends.cudnn.allow_tf32 = "
                 "torch.backends.cuda.matmul.allow_tf32 = False, `tf32` points with both True "
                 f"(start-up defaults: {env['tf32_defaults']})")
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
    out += ["ratio = torch.nn time / rnnfuse time: above 1 means rnnfuse is faster. The two "
            "implementations are timed alternately, repeat by repeat; the ratio is the median of "
            "the per-repeat (paired) ratios, shown with their p10-p90, and times are medians "
            "with their p10-p90. verdict: faster when the paired-ratio p10 > 1, slower when its "
            "p90 < 1, on par otherwise. " + noise.CRITERION + " (benchmarks/noise.py): its numbers "
            "stay in the tables, its ratio is not counted. Cell points (lstmcell, grucell): "
            "times per call, T = chained calls per repeat. TFLOP/s counts the recurrent products "
            "only (2*B*H*G*H per step, layer and direction; cells also the input product; "
            "training 3x); us/step = time / (T * layers), per call for cells. Memory: peak "
            "allocated during one call beyond what was live before it.", ""]
    out += [noise_line(s) + ".", "", verdict_line(s) + ".", ""]
    if s["geomean"]:
        out += ["## Geometric-mean ratio", "", markdown_table(GEOMEAN_HEADER, geomean_rows(s)), ""]
        if s.get("overall_geomean_ratio"):
            out += [f"Overall geometric mean (OK points): {s['overall_geomean_ratio']:.2f}", ""]
    out += ["## Points", "", markdown_table(COLUMNS, [row(p) for p in results["points"]]), ""]
    timed = [p for p in results["points"] if p.get("ratio_spread")]
    if timed:
        out += ["## Spread", "", markdown_table(SPREAD_COLUMNS, [spread_row(p) for p in timed]), ""]
    bad = [p for p in results["points"] if p["status"] != "OK"]
    if bad:
        out += ["## Not OK", ""] + [f"- **{p['status']}** `{p['id']}`: {p['error']}" for p in bad] + [""]
    out.append("status counts: " + ", ".join(f"{k} {v}" for k, v in sorted(s["counts"].items())))
    return "\n".join(out) + "\n"


def write_markdown(results: dict, path: Path):
    path.write_text(markdown(results))
