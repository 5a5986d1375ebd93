"""Where a kernel's warps spend their time, from ncu's per-instruction source
page (``ncu -i REPORT --page source --csv --print-source sass``, optionally
gzipped): per kernel, the warp-state samples by stall reason and by opcode,
the executed instruction mix, HMMA issued against predicated on, the code
grouped by how many times each instruction ran (loop bodies share a count),
and the hottest instructions.

  python -m benchmarks.ncu_summary SOURCE.csv[.gz] [--warps N] [--steps T]

--warps (CTAs x warps per CTA) and --steps turn execution counts into
"per warp per step" (one kernel at a time: --kernel SUBSTRING).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

_KERNEL = re.compile(r'^"Kernel Name","(.*)",?\s*$', re.M)


def read_kernels(path: Path) -> list[tuple[str, list[dict]]]:
    """[(kernel name, rows of the source page)] in the file's order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", errors="replace") as f:
        text = f.read()
    parts = _KERNEL.split(text)
    return [(name, list(csv.DictReader(io.StringIO(body.strip()))))
            for name, body in zip(parts[1::2], parts[2::2])]


def num(x) -> float:
    try:
        return float(str(x).replace(",", ""))
    except ValueError:
        return 0.0


def opcode(src: str) -> str:
    """'@!P0 HMMA.16816.F32 R1, ...' -> 'HMMA'."""
    s = re.sub(r"^@!?U?P\w+\s+", "", src.strip())
    return s.split(" ")[0].split(".")[0] if s else ""


def summarize(rows: list[dict]) -> dict:
    samples = sum(num(r.get("Warp Stall Sampling (All Samples)")) for r in rows)
    executed = sum(num(r.get("Instructions Executed")) for r in rows)
    stalls, mix, by_op, by_count = Counter(), Counter(), Counter(), defaultdict(lambda: [0, 0.0, 0.0])
    hmma_threads = hmma_on = 0.0
    for r in rows:
        s, e = num(r.get("Warp Stall Sampling (All Samples)")), num(r.get("Instructions Executed"))
        op = opcode(r.get("Source", ""))
        for k, v in r.items():
            if k.startswith("stall_") and "(Not Issued)" not in k:
                stalls[k] += num(v)
        mix[op] += e
        by_op[op] += s
        if e:
            c = by_count[e]
            c[0] += 1
            c[1] += e
            c[2] += s
        if op == "HMMA":
            hmma_threads += num(r.get("Thread Instructions Executed"))
            hmma_on += num(r.get("Predicated-On Thread Instructions Executed"))
    hot = sorted(rows, key=lambda r: -num(r.get("Warp Stall Sampling (All Samples)")))[:16]
    return {"samples": samples, "executed": executed, "stalls": stalls, "mix": mix,
            "by_op": by_op, "by_count": by_count, "hot": hot,
            "hmma_on_share": hmma_on / hmma_threads if hmma_threads else None}


def report(name: str, rows: list[dict], warps: int | None = None, steps: int | None = None) -> str:
    s = summarize(rows)
    per = (warps or 0) * (steps or 0)
    unit = "per warp per step" if per else "executions"
    scale = (lambda e: e / per) if per else (lambda e: e)
    out = [f"=== {name}", f"{len(rows)} SASS lines, {s['samples']:.0f} samples, "
           f"{s['executed']:.0f} warp instructions executed"
           + (f" ({s['executed'] / per:.1f} per warp per step)" if per else "")]
    if s["hmma_on_share"] is not None:
        out.append(f"HMMA predicated on: {s['hmma_on_share']:.1%} of those issued")
    tot, ex = s["samples"] or 1.0, s["executed"] or 1.0
    out.append("stall reasons (share of all samples):")
    out += [f"  {k:28s} {v / tot:6.1%}" for k, v in s["stalls"].most_common(10)]
    out.append("executed instruction mix:")
    out += [f"  {k:10s} {v / ex:6.1%}" for k, v in s["mix"].most_common(14)]
    out.append("samples by opcode:")
    out += [f"  {k:10s} {v / tot:6.1%}" for k, v in s["by_op"].most_common(10)]
    out.append(f"code by execution count ({unit}: lines, instructions, share of samples):")
    for e, (n, total, smp) in sorted(s["by_count"].items(), key=lambda kv: -kv[1][1])[:14]:
        out.append(f"  x{scale(e):<10.4g} {n:6d} lines {scale(total):12.1f} instr {smp / tot:6.1%}")
    out.append("hottest instructions (share of samples, top stall):")
    for r in s["hot"]:
        reasons = [(k, num(v)) for k, v in r.items() if k.startswith("stall_") and "(Not Issued)" not in k]
        top = max(reasons, key=lambda kv: kv[1])[0] if reasons else "-"
        out.append(f"  {num(r.get('Warp Stall Sampling (All Samples)')) / tot:6.1%} "
                   f"{str(r.get('Address', ''))[-5:]} {str(r.get('Source', '')).strip()[:60]:60s} {top}")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path)
    ap.add_argument("--kernel", default="", help="only kernels whose name contains this")
    ap.add_argument("--warps", type=int, default=None, help="CTAs x warps per CTA of the kernel")
    ap.add_argument("--steps", type=int, default=None, help="time steps the launch ran")
    args = ap.parse_args(argv)
    kernels = [(n, r) for n, r in read_kernels(args.source) if args.kernel in n]
    if not kernels:
        print(f"ncu_summary: no kernel matching {args.kernel!r} in {args.source}", file=sys.stderr)
        return 1
    for name, rows in kernels:
        print(report(name, rows, args.warps, args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
