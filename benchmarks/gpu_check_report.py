"""The two Python steps of benchmarks/gpu_check.sh.

  python3 benchmarks/gpu_check_report.py env --json WORK/env.json
      print the environment (torch, CUDA, cuDNN, device) and save it as JSON.
  python3 benchmarks/gpu_check_report.py report --work WORK --out OUT
      read what the stages left (WORK/stages.tsv, junit XML, sanitizer logs,
      OUT/bench.json) and write OUT/gpu_check_report.md. Exit 0 only if every
      stage passed.

Kept apart from the shell script because parsing junit XML and sanitizer
summaries is easier to get right, and to test (tests/test_benchmarks.py),
in Python. Only the standard library is needed for ``report``, so the
report is written even when torch is broken.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# Run as a script, Python puts benchmarks/ first on sys.path, where our
# env.py, grid.py, timing.py... could shadow other top-level modules: put the
# repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

STAGES = ("env", "build", "tests", "ptests", "memcheck", "racecheck", "synccheck", "persist",
          "steps", "bench")
SANITIZERS = ("memcheck", "racecheck", "synccheck")


# ---- env -------------------------------------------------------------------

def cmd_env(args) -> int:
    import torch

    from benchmarks import env
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # No rnnfuse import here: this runs before the build.
    info = env.collect(device, "none")
    info["cuda_available"] = torch.cuda.is_available()
    Path(args.json).write_text(json.dumps(info, indent=1, default=str) + "\n")
    for key in ("torch", "cuda", "cudnn", "python", "driver"):
        print(f"{key}: {info.get(key)}")
    print(f"device: {info['device']}")
    print(f"git: {info['git']}")
    if not torch.cuda.is_available():
        print("torch sees no CUDA device", file=sys.stderr)
        return 1
    return 0


# ---- parsing ---------------------------------------------------------------

def read_stages(path: Path) -> dict:
    """stages.tsv rows 'name<TAB>status<TAB>seconds<TAB>note' -> {name: {...}}."""
    out = {}
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 3:
                out[parts[0]] = {"status": parts[1], "seconds": float(parts[2] or 0),
                                 "note": parts[3] if len(parts) > 3 else ""}
    return out


def junit_summary(paths) -> dict | None:
    """Counts and failing tests (name - message) over pytest junit XML files; None if none exist."""
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed_names": []}
    found = False
    for path in paths:
        path = Path(path)
        if not path.exists() or path.stat().st_size == 0:
            continue
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError:
            continue
        found = True
        suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
        for s in suites:
            for k in ("tests", "failures", "errors", "skipped"):
                total[k] += int(s.get(k, 0))
            for case in s.iter("testcase"):
                bad = case.find("failure")
                bad = case.find("error") if bad is None else bad
                if bad is not None:
                    # The first line of pytest's message (for a crash: the native frames):
                    # the report is read where tests.log may not have come back.
                    why = (bad.get("message") or "").strip().splitlines()
                    why = f" - {why[0][:300]}" if why else ""
                    total["failed_names"].append(f"{case.get('classname')}::{case.get('name')}{why}")
    if not found:
        return None
    total["passed"] = total["tests"] - total["failures"] - total["errors"] - total["skipped"]
    return total


_ERR_SUMMARY = re.compile(r"ERROR SUMMARY:\s*(\d+)\s+error")
_RACE_SUMMARY = re.compile(r"RACECHECK SUMMARY:\s*(\d+)\s+hazards? displayed\s*\((\d+)\s+errors?,\s*(\d+)\s+warnings?\)")
_CASES = re.compile(r"sanitizer_cases:\s*(\d+)\s+passed,\s*(\d+)\s+failed(?:,\s*(\d+)\s+skipped)?")


# rnnfuse's own kernels, as compute-sanitizer names them (plain or demangled
# with templates): the per-step kernels and the persistent tier's.
OUR_KERNEL = re.compile(r"\b(persist_\w*kernel|(lstm|gru)_(fwd|bwd)_step_kernel)\b")
_RACE_AT = re.compile(r"access at (.+?)\+0x[0-9a-fA-F]+")


def race_hazards(text: str) -> dict:
    """The kernels racecheck reported hazards in: {"ours": [...], "theirs": [...]}
    (theirs: a library's, e.g. cuBLAS's nvjet GEMMs)."""
    names = set()
    for line in text.splitlines():
        if "Race reported between" in line or (line.startswith("=========") and "access at" in line):
            names.update(m.strip() for m in _RACE_AT.findall(line))
    ours = sorted(n for n in names if OUR_KERNEL.search(n))
    return {"ours": ours, "theirs": sorted(names - set(ours))}


def race_verdict(text: str) -> tuple[bool, str]:
    """Whether a racecheck run that exited with errors found them only inside
    library kernels, with every case run and passed. racecheck checks shared
    memory within one kernel: a hazard inside a library's kernel is in its own
    shared memory, which nothing rnnfuse passes can touch, so it is listed,
    not counted. Anything else (a hazard in one of ours, a failed case, a
    crash, a sanitizer error) is not excused."""
    h = race_hazards(text)
    cases = _CASES.findall(text)
    failed = sum(int(x[1]) for x in cases)
    bad = ("Target application returned an error", "Internal Sanitizer Error", "BROKEN",
           "resume with --start")
    if h["ours"]:
        return False, "hazards in rnnfuse's kernels: " + ", ".join(h["ours"])[:300]
    if not h["theirs"]:
        return False, "no hazard named a kernel: the exit status is not racecheck's"
    if not cases or failed or any(b in text for b in bad):
        return False, "a case failed, broke its process or did not run"
    return True, ("hazards only inside library kernels, not rnnfuse's (listed, not counted): "
                  + ", ".join(h["theirs"])[:300])


def sanitizer_summary(log: Path) -> dict:
    """Errors compute-sanitizer reported and the cases' own verdict, from one log."""
    if not log.exists():
        return {"ran": False}
    text = log.read_text(errors="replace")
    out = {"ran": True, "errors": None, "hazard_warnings": None, "cases_passed": None,
           "cases_failed": None, "cases_skipped": None}
    # One summary per sanitizer process: after a case that broke the CUDA
    # context a fresh process runs the rest, so the log may hold several.
    m = _ERR_SUMMARY.findall(text)
    if m:
        out["errors"] = sum(int(x) for x in m)
    r = _RACE_SUMMARY.findall(text)
    if r:
        out["errors"] = max(out["errors"] or 0, sum(int(x[1]) for x in r))
        out["hazard_warnings"] = sum(int(x[2]) for x in r)
    c = _CASES.findall(text)
    if c:
        out["cases_passed"] = sum(int(x[0]) for x in c)
        out["cases_failed"] = sum(int(x[1]) for x in c)
        out["cases_skipped"] = sum(int(x[2] or 0) for x in c)
    out["restarts"] = text.count("resume with --start")
    first = [ln.strip() for ln in text.splitlines()
             if ln.startswith("========= ") and ("Invalid" in ln or "hazard" in ln.lower()
                                                  or "Error" in ln)]
    out["first_errors"] = first[:3]
    out["race_kernels"] = race_hazards(text)
    return out


# ---- report ----------------------------------------------------------------

def _fmt(x, spec=".3f"):
    return "-" if x is None else format(x, spec)


def _stage_line(name, stages):
    s = stages.get(name)
    if s is None:
        return f"| {name} | not run | - | |"
    return f"| {name} | {s['status']} | {s['seconds']:.0f} | {s['note']} |"


def speed_section(bench: dict | None) -> list[str]:
    if not bench:
        return ["No benchmark results (see bench stage)."]
    from benchmarks import report as bench_report  # standard library only
    lines = []
    s = bench.get("summary") or {}
    if s.get("geomean"):
        lines += ["Geometric-mean ratio cuDNN time / rnnfuse time (above 1: rnnfuse faster):", "",
                  bench_report.markdown_table(bench_report.GEOMEAN_HEADER,
                                              bench_report.geomean_rows(s)), ""]
    header = ("cell", "dtype", "mode", "T", "B", "H", "cuDNN algo", "rnnfuse path",
              "torch ms (p10-p90)",
              "rnnfuse ms (p10-p90)", "ratio (p10-p90)", "verdict", "rnnfuse TFLOP/s", "us/step",
              "status")
    rows = []
    for p in bench.get("points", []):
        b, c = p.get("baseline") or {}, p.get("candidate") or {}
        rows.append([p["cell"], p["dtype"], p["mode"], str(p["T"]), str(p["B"]), str(p["H"]),
                     bench_report._algo(p), p.get("rnnfuse_path") or "-",
                     bench_report.time_cell(b), bench_report.time_cell(c),
                     bench_report.ratio_cell(p), bench_report.verdict_cell(p),
                     _fmt(c.get("tflops"), ".2f"), _fmt(c.get("us_per_step"), ".1f"), p["status"]])
    lines.append(bench_report.markdown_table(header, rows))
    if "noisy" in s:  # results of schema 1 have no spread
        lines += ["", bench_report.noise_line(s) + "."]
    bad = [p for p in bench.get("points", []) if p["status"] != "OK"]
    lines += [""] + [f"- {p['status']} `{p['id']}`: {p.get('error')}" for p in bad[:10]]
    return lines


def exchange_floor_ns(persist: dict, row: dict) -> float | None:
    """ns per step of the exchange alone at a point's partition (its tier,
    H, B, CTAs and, on the cluster tier, replicas), where persist_check
    measured that one; else None."""
    plan = row.get("plan") or {}
    if plan.get("tier") == "cluster":
        rows = [e for e in persist.get("cluster_exchange", [])
                if (e["H"], e["B"], e["S"], e["R"]) == (row["H"], row["B"], plan.get("P"), plan.get("R"))]
    elif plan.get("tier") == "grid":
        rows = [e for e in persist.get("exchange", [])
                if (e["H"], e["B"], e["P"]) == (row["H"], row["B"], plan.get("P"))]
    else:
        return None
    ns = [e["ns_per_step"] for e in rows if e.get("ok") and e.get("ns_per_step")]
    return ns[0] if ns else None


def persist_section(persist: dict | None) -> list[str]:
    """The exchange floor and the issue's points (benchmarks/persist_check.py)."""
    if not persist:
        return ["No persistent-tier results (see the persist stage)."]
    lines = ["Exchange alone (flags + h gather through L2, no math), grid tier, bf16; model: "
             "the planner's latency model of the same exchange (its handoff, gather and push "
             "terms are what these rows measure); LL: the same exchange with the flag in the "
             "data (one 64-bit store per word of 2 bf16 + step tag, no fence, no flag), and "
             "whether its step chain held; a line apart: the flags 128 bytes apart "
             "(RNNFUSE_PERSISTENT_FLAG_STRIDE=32) instead of 32 to a line:", "",
             "| H | B | CTAs | ns/step | a line apart | model ns | LL ns/step | data |",
             "|---|---|---|---|---|---|---|---|"]
    for r in persist.get("exchange", []):
        data = "ok" if r.get("ok") else r.get("error") or (
            "LL: " + str(r.get("ll_error", "WRONG")) if r.get("ll_ok") is False else "WRONG")
        lines.append(f"| {r['H']} | {r['B']} | {r['P']} | {_fmt(r.get('ns_per_step'), '.0f')} | "
                     f"{_fmt(r.get('spread_ns_per_step'), '.0f')} | "
                     f"{_model_ns(r)} | {_fmt(r.get('ll_ns_per_step'), '.0f')} | {data} |")
    cluster = persist.get("cluster_exchange", [])
    if cluster:
        lines += ["", "Exchange alone, cluster tier (mbarrier wait + st.async to every peer, "
                  "no math), bf16:", "", "| H | B | CTAs per cluster | slices per CTA | replicas | "
                  "ns/step | model ns | data |", "|---|---|---|---|---|---|---|---|"]
        for r in cluster:
            lines.append(f"| {r['H']} | {r['B']} | {r['S']} | {(r.get('plan') or {}).get('slices', '-')} "
                         f"| {r['R']} | "
                         f"{_fmt(r.get('ns_per_step'), '.0f')} | {_model_ns(r)} | "
                         f"{'ok' if r.get('ok') else r.get('error', 'WRONG')} |")
    lines += ["", "Points (T x B x H, input size H), ms; speed-up = cuDNN / persistent; model: "
              "the planner's modelled us per step of the persistent forward (inference rows; "
              "to be compared with us/step, which also carries the input projection); x floor: "
              "an inference step over the exchange alone at the same partition (the issue: "
              "within 2x at B <= 16, H <= 1024); path: the forward's, and in training the "
              "backward's after '/'; other tier: the other persistent tier's time (both passes "
              "on it): the grid tier's where the planner picked the cluster tier for a pass, "
              "else the cluster tier's where this GPU has its kernels; other bwd: training "
              "with the backward alone on that tier (the forward as planned); step push: the "
              "cluster tier with every push at "
              "the step's end (RNNFUSE_CLUSTER_PUSH=step) instead of slice by slice, and "
              "whether its outputs equal the pipelined push's to the bit; LL: the grid "
              "forward with h exchanged through LL words (RNNFUSE_PERSISTENT_EXCHANGE=ll; "
              "in training also a grid backward's K-split partial sums as LL words); "
              "line apart: the grid kernels' flags 128 bytes apart "
              "(RNNFUSE_PERSISTENT_FLAG_STRIDE=32); both must give the flag exchange's bits:", "",
              "| cell | dtype | mode | T | B | H | cuDNN | per-step | persistent | speed-up | "
              "us/step | model | x floor | path | other tier | other bwd | step push | LL | "
              "line apart | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in persist.get("points", []):
        cell = r["cell"] + (" bidir" if r.get("bidirectional") else "")
        floor = exchange_floor_ns(persist, r)
        over = (r["us_per_step"] * 1e3 / floor if floor and r.get("us_per_step")
                and r["mode"] == "inference" else None)
        # The planner's modelled forward step beside the measured one
        # (inference only: a training step adds the backward and GEMMs).
        model = ((r.get("plan") or {}).get("us_per_step")
                 if r["mode"] == "inference" and str(r.get("path", "")).startswith("persistent")
                 else None)
        lines.append(f"| {cell} | {r['dtype']} | {r['mode']} | {r['T']} | {r['B']} | {r['H']} | "
                     f"{_fmt(r.get('cudnn_ms'))} | {_fmt(r.get('perstep_ms'))} | "
                     f"{_fmt(r.get('persistent_ms'))} | {_fmt(r.get('speedup_vs_cudnn'), '.2f')} | "
                     f"{_fmt(r.get('us_per_step'), '.2f')} | {_fmt(model, '.2f')} | "
                     f"{_fmt(over, '.2f')} | "
                     f"{_paths(r)} | {_other(r, '')} | {_other(r, '_bwd')} | "
                     f"{_step_push(r)} | {_compared(r, 'll') if 'll_status' in r else '-'} | "
                     f"{_compared(r, 'spread') if 'spread_status' in r else '-'} | "
                     f"{r['status']} |")
    lines += phases_section(persist.get("points", []))
    lines += sweep_section(persist.get("sweep", []))
    if persist.get("not_run"):
        lines.append("- not run (deadline; the sweep fails nothing): " + ", ".join(persist["not_run"]))
    lines += [f"- error: {e[:200]}" for e in persist.get("errors", [])]
    return lines


def phases_section(points: list[dict]) -> list[str]:
    """Where a grid step's time goes: CTA 0's trace (persist_check.step_phases)
    of the forward at each inference point, with the flags and with LL words,
    and of the backward at each training point whose backward took the grid
    tier."""
    lines = []
    fwd = [(r, exchange, ph) for r in points for exchange, ph in (r.get("phases") or {}).items()]
    if fwd:
        lines += ["", "Step phases of the grid forward (CTA 0's clock64 trace, median ns per "
                  "step over the middle half of the steps; wait: operand loads and the flags' "
                  "wait; gather: h into shared memory, LL words polled here; mma: the first "
                  "chunk's sums; epilogue: to the last chunk stored; publish: the flag's "
                  "release):", ""]
        lines += _phases_table(fwd, ("wait", "gather", "mma", "epilogue", "publish", "step"))
    bwd = [(r, exchange, ph) for r in points
           for exchange, ph in (r.get("bwd_phases") or {}).items()]
    if bwd:
        lines += ["", "Step phases of the grid backward (the same trace; wait: operand loads "
                  "and the flags' wait, LL: no wait; gather: the gate gradients into shared "
                  "memory, LL words polled here; parts: the K split's partial sums published "
                  "and the other parts' waited for (LL: this part's words stored), 0 without "
                  "a split; epilogue: the other parts' sums loaded (LL: polled), the "
                  "derivatives, to the last chunk stored):", ""]
        lines += _phases_table(bwd, ("wait", "gather", "mma", "parts", "epilogue", "publish",
                                     "step"))
    return lines


def _phases_table(rows: list[tuple[dict, str, dict | str]], spans: tuple[str, ...]) -> list[str]:
    lines = ["| point | exchange | " + " | ".join(spans) + " |",
             "|---|---|" + "---|" * len(spans)]
    for r, exchange, ph in rows:
        point = f"{r['cell']} {r['dtype']} H={r['H']} B={r['B']} T={r['T']}"
        if isinstance(ph, dict):
            lines.append(f"| {point} | {exchange} | "
                         + " | ".join(_fmt(ph.get(k), '.0f') for k in spans) + " |")
        else:
            lines.append(f"| {point} | {exchange} | {str(ph)[:100]} |" + " |" * (len(spans) - 1))
    return lines


def in_order_us(plan: dict) -> float | None:
    """A cluster plan's modelled step with each bracket read in issue order
    (the slowest of MMAs, chain and W stream, then the epilogue, then the
    barrier) instead of the planner's overlap (the slowest of all four, then
    the barrier), from the plan's own bracket terms; None for other plans.
    benchmarks/results/cluster-epilogue-order_2026-11-29/ says why both."""
    t = plan.get("bracket_us")
    if not t or "brackets" not in plan or plan.get("us_per_step") is None:
        return None
    overlap = max(t["mma"], t["chain"], t["w_smem"], t["epilogue"]) + t["barrier"]
    in_order = max(t["mma"], t["chain"], t["w_smem"]) + t["epilogue"] + t["barrier"]
    return plan["us_per_step"] + plan["brackets"] * (in_order - overlap)


def sweep_section(rows: list[dict]) -> list[str]:
    """The partition sweep (persist_check.SWEEPS): each pinned partition's
    modelled and measured us per step, and per point and pass whether the
    planner's choice was the fastest measured."""
    if not rows:
        return []
    lines = ["", "Partition sweep: every partition the planner can make at these points, "
             "pinned in turn (forward: inference; backward: training with the forward as "
             "planned); model: the planner's us per step of the pinned pass; measured: the "
             "call's time / T (it also carries the GEMMs and, in training, the forward); "
             "each must give the same bits as the others of its pass (backward: of its "
             "K split); group: the cluster tier's slices per bracket / tile padding; in-order: "
             "the model with each cluster bracket read in issue order; LL: a grid forward "
             "with the LL exchange, or a grid backward with K split with its partial sums "
             "as LL words (its forward with LL too; the same bits required); *: the "
             "planner's "
             "choice:", "",
             "| point | pass | tier | P | J | R | hb | ksplit | group | model us/step "
             "| in-order us/step | measured us/step | LL us/step | pin | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        p = r.get("plan") or {}
        point = f"{r['cell']} {r['dtype']} H={r['H']} B={r['B']} T={r['T']}"
        groups.setdefault((point, r["pass"]), []).append(r)
        status = (r["status"] + ("" if r.get("bitwise", True) else " (bits differ)")
                  + ("" if r.get("ll_bitwise", True) else " (LL bits differ)"))
        lines.append(f"| {point} | {r['pass']}{' *' if r.get('chosen') else ''} | "
                     f"{p.get('tier', '-')} | {p.get('P', '-')} | {p.get('J', '-')} | "
                     f"{p.get('R', '-')} | {p.get('hbuf_rows', '-')} | {p.get('ksplit', '-')} | "
                     + (f"{p['group']}/{p['red_pad']}" if "group" in p else "-") + " | "
                     f"{_fmt(p.get('us_per_step'), '.3f')} | {_fmt(in_order_us(p), '.3f')} | "
                     f"{_fmt(r.get('us_per_step'), '.3f')} | {_fmt(r.get('ll_us_per_step'), '.3f')} | "
                     f"{r.get('pin', '-')} | {status[:80]} |")
    lines.append("")
    for (point, pass_), group in groups.items():
        timed = [r for r in group if r.get("us_per_step")]
        chosen = [r for r in timed if r.get("chosen")]
        if not timed or not chosen:
            lines.append(f"- {point} {pass_}: the planner's choice was not timed")
            continue
        fastest = min(timed, key=lambda r: r["us_per_step"])
        c = chosen[0]
        lines.append(f"- {point} {pass_}: the planner's choice {c['us_per_step']:.3f} us/step; "
                     + ("the fastest measured" if fastest is c else
                        f"fastest measured {fastest['us_per_step']:.3f} ({fastest['pin']}, "
                        f"{c['us_per_step'] / fastest['us_per_step']:.2f}x faster)")
                     + f"; {len(timed)} of {len(group)} partitions timed")
        by_group: dict[int, float] = {}
        for r in timed:
            g = (r.get("plan") or {}).get("group")
            if g is not None:
                by_group[g] = min(by_group.get(g, r["us_per_step"]), r["us_per_step"])
        if len(by_group) > 1:
            lines.append(f"  - {point} {pass_}: the fastest cluster partition by slice group: "
                         + ", ".join(f"group {g} {us:.3f} us/step"
                                     for g, us in sorted(by_group.items())))
    return lines


def _model_ns(row: dict) -> str:
    """An exchange row's modelled ns per step (its bench plan's model_us)."""
    us = (row.get("plan") or {}).get("model_us")
    return _fmt(us * 1e3 if us else None, ".0f")


def _compared(row: dict, name: str) -> str:
    """A comparison run's ms, or its status where that is not OK (it fails
    the check: the reason must show)."""
    status = row.get(f"{name}_status")
    if status not in (None, "OK"):
        return str(status)[:80]
    if name == "ll" and "ll_backward" in row:  # training: how its backward exchanged
        return f"{_fmt(row.get('ll_ms'))} (bwd {row['ll_backward']})"
    return _fmt(row.get(f"{name}_ms"))


def _other(row: dict, suffix: str) -> str:
    """The other tier's comparison (grid or cluster, whichever ran), named."""
    for tier in ("grid", "cluster"):
        if f"{tier}{suffix}_status" in row:
            return f"{tier} {_compared(row, tier + suffix)}"
    return "-"


def _paths(row: dict) -> str:
    """The forward's path, and in training the backward's after '/'."""
    path = row.get("path", "-")
    if row.get("mode") == "training" and row.get("backward_path"):
        path += " / " + row["backward_path"]
    return path


def _step_push(row: dict) -> str:
    """The step-push comparison of a persist_check point: its time and
    whether it was bitwise equal ("-" where it did not run)."""
    if "step_push_bitwise" not in row:
        return "-"
    same = row["step_push_bitwise"]
    if same is True:
        return f"{_fmt(row.get('step_push_ms'))} (bitwise equal)"
    if same is False:
        return f"{_fmt(row.get('step_push_ms'))} DIFFERS"
    return str(same)[:60]


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text()) if path.exists() else None
    except json.JSONDecodeError:
        return None


def steps_section(steps: dict | None) -> list[str]:
    """The per-step path's tile rules and bidirectional launch (benchmarks/step_check.py)."""
    if not steps:
        return ["No per-step results (see the steps stage)."]
    rules = ("threshold", "auto", "small", "large", "auto-deep")
    lines = ["Tile rules, ms per call (auto: the planner, the default; threshold: the rule "
             "before it; auto-deep: the planner over the tensor-core tiles with twice the "
             "k-chunk, RNNFUSE_STEP_CHUNK=deep); speed-up = threshold / auto:", "",
             "| cell | dtype | mode | T | B | H | " + " | ".join(rules) + " | speed-up | status |",
             "|---|---|---|---|---|---|" + "---|" * len(rules) + "---|---|"]
    for r in steps.get("tiles", []):
        lines.append(f"| {r['cell']} | {r['dtype']} | {r['mode']} | {r['T']} | {r['B']} | "
                     f"{r['H']} | " + " | ".join(_fmt(r.get(f"{x}_ms")) for x in rules)
                     + f" | {_fmt(r.get('speedup_vs_threshold'), '.2f')} | {r['status']} |")
    lines += ["", "Bidirectional layer, ms per call: one op (one launch per step for both "
              "directions) vs one op per direction; speed-up = per direction / one op:", "",
              "| cell | dtype | mode | T | B | H | per direction | one op | speed-up | status |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in steps.get("bidir", []):
        lines.append(f"| {r['cell']} | {r['dtype']} | {r['mode']} | {r['T']} | {r['B']} | "
                     f"{r['H']} | {_fmt(r.get('per_direction_ms'))} | {_fmt(r.get('one_op_ms'))} | "
                     f"{_fmt(r.get('speedup'), '.2f')} | {r['status']} |")
    lines += [f"- error: {e[:200]}" for e in steps.get("errors", [])]
    return lines


def memory_section(memory: dict | None) -> list[str]:
    """A training step's peak and what is live at it (benchmarks/memory_check.py)."""
    if not memory:
        return ["No memory results (see the steps stage)."]
    lines = ["Peak of one training step beyond what was live before it, in H bytes per row "
             "(T*B rows); the largest blocks live at rnnfuse's peak, with their call sites:", "",
             "| cell | dtype | T | B | H | torch.nn | rnnfuse | ratio | largest live at rnnfuse's peak |",
             "|---|---|---|---|---|---|---|---|---|"]
    by_key = {}
    for r in memory.get("points", []):
        by_key.setdefault((r["cell"], r["dtype"], r["T"], r["B"], r["H"]), {})[r["impl"]] = r
    for (cell, dtype, T, B, H), sides in by_key.items():
        nn, ours = sides.get("torch.nn"), sides.get("rnnfuse")
        ratio = (ours["peak_bytes"] / nn["peak_bytes"]
                 if nn and ours and nn["peak_bytes"] else None)
        blocks = "; ".join(f"{b['h_bytes_per_row']:.2f}H {b['site']}"
                           for b in (ours or {}).get("blocks", [])[:4])
        lines.append(f"| {cell} | {dtype} | {T} | {B} | {H} | "
                     f"{_fmt(nn and nn['peak_h_bytes_per_row'], '.1f')} | "
                     f"{_fmt(ours and ours['peak_h_bytes_per_row'], '.1f')} | "
                     f"{_fmt(ratio, '.2f')} | {blocks or '-'} |")
    probe = memory.get("workspace_probe")
    if probe:
        env = " ".join(f"{k}={v}" for k, v in (probe.get("env") or {}).items())
        lines.append("- probe, GRU bf16 rnnfuse with the GEMM workspaces limited ("
                     + (env or "-") + "): " + (
                         probe["error"][:200] if "error" in probe else
                         f"{probe['peak_h_bytes_per_row']:.1f} H bytes/row; largest live "
                         + "; ".join(f"{b['h_bytes_per_row']:.2f}H {b['site']}"
                                     for b in probe.get("blocks", [])[:4])))
    lines += [f"- error: {e[:200]}" for e in memory.get("errors", [])]
    return lines


def build_report(work: Path, out: Path, total_s: float | None = None) -> tuple[str, bool]:
    stages = read_stages(work / "stages.tsv")
    env = {}
    if (work / "env.json").exists():
        try:
            env = json.loads((work / "env.json").read_text())
        except json.JSONDecodeError:
            pass
    bench = None
    if (out / "bench.json").exists():
        try:
            bench = json.loads((out / "bench.json").read_text())
        except json.JSONDecodeError:
            pass
    tests = junit_summary([work / "tests_cuda.xml", work / "tests_k.xml", work / "tests_persist.xml"])
    san = {tool: sanitizer_summary(work / f"{tool}.log") for tool in SANITIZERS}
    persist = None
    if (work / "persist.json").exists():
        try:
            persist = json.loads((work / "persist.json").read_text())
        except json.JSONDecodeError:
            pass

    steps = _read_json(work / "steps.json")
    memory = _read_json(work / "memory.json")

    all_pass = all(stages.get(n, {}).get("status") == "pass" for n in STAGES)
    dev = env.get("device") or {}
    git = env.get("git") or {}
    lines = [f"# rnnfuse GPU check: {'PASS' if all_pass else 'FAIL'}", "",
             f"- card: {dev.get('name', 'unknown')}"
             + (f" ({dev.get('sm_count')} SMs, cc {'.'.join(map(str, dev.get('compute_capability', [])))})"
                if dev.get("type") == "cuda" else ""),
             f"- driver: {env.get('driver') or 'unknown'}",
             f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda', '?')}, cuDNN {env.get('cudnn', '?')},"
             f" Python {env.get('python', '?')}",
             f"- date: {env.get('date', 'unknown')}",
             f"- git commit: {git.get('commit') or 'unknown'}"
             + (" (uncommitted changes)" if git.get("dirty") else ""),
             f"- build time: {_fmt(stages.get('build', {}).get('seconds'), '.0f')} s"
             f" ({stages.get('build', {}).get('status', 'not run')})",
             ""]

    lines += ["## Stages", "", "| stage | status | wall s | note |", "|---|---|---|---|"]
    lines += [_stage_line(n, stages) for n in STAGES]
    if total_s is not None:
        lines.append(f"| total | | {total_s:.0f} | |")
    lines.append("")

    lines += ["## CUDA tests", ""]
    if tests is None:
        lines.append("No test results (no junit XML was written).")
    else:
        lines.append(f"{tests['passed']} passed, {tests['failures'] + tests['errors']} failed, "
                     f"{tests['skipped']} skipped (of {tests['tests']})")
        lines += [f"- FAILED {n}" for n in tests["failed_names"][:20]]
    lines.append("")

    lines += ["## Sanitizer", "",
              "| tool | sanitizer errors | cases passed | cases failed | not run (deadline, no clusters) "
              "| fresh processes after a broken context |",
              "|---|---|---|---|---|---|"]
    for tool, s in san.items():
        if not s["ran"]:
            lines.append(f"| {tool} | not run | - | - | - | - |")
            continue
        lines.append(f"| {tool} | {_fmt(s['errors'], 'd')} | {_fmt(s['cases_passed'], 'd')} | "
                     f"{_fmt(s['cases_failed'], 'd')} | {_fmt(s['cases_skipped'], 'd')} | "
                     f"{s.get('restarts', 0)} |")
    for tool, s in san.items():
        for e in s.get("first_errors") or []:
            lines.append(f"- {tool}: `{e[:200]}`")
        race = s.get("race_kernels") or {}
        if race.get("theirs"):
            lines.append(f"- {tool}: hazards inside library kernels (their own shared memory; "
                         f"not counted against rnnfuse): {', '.join(race['theirs'])[:300]}")
        if race.get("ours"):
            lines.append(f"- {tool}: hazards inside rnnfuse's kernels: {', '.join(race['ours'])[:300]}")
    lines.append("")

    lines += ["## Persistent tier (RNNFUSE_PERSISTENT=1)", ""] + persist_section(persist) + [""]
    lines += ["## Per-step path", ""] + steps_section(steps) + [""]
    lines += ["## Training memory", ""] + memory_section(memory) + [""]
    lines += ["## Speed vs cuDNN (quick preset, RNNFUSE_PERSISTENT=1)", "",
              "The persistent tier where the planner takes it (the \"rnnfuse path\" column of "
              "bench.md says which path each point took); the per-step kernels elsewhere.", ""]
    lines += speed_section(bench) + [""]
    return "\n".join(lines) + "\n", all_pass


def cmd_report(args) -> int:
    work, out = Path(args.work), Path(args.out)
    text, ok = build_report(work, out, args.total_s)
    (out / "gpu_check_report.md").write_text(text)
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env")
    e.add_argument("--json", required=True)
    v = sub.add_parser("race-verdict", help="exit 0 if a failed racecheck log's hazards are "
                       "all inside library kernels and every case passed")
    v.add_argument("log")
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--total-s", type=float, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "race-verdict":
        ok, why = race_verdict(Path(args.log).read_text(errors="replace"))
        print(why)
        return 0 if ok else 1
    return cmd_env(args) if args.cmd == "env" else cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
