"""Where the two persistent forward kernels' warps wait, from ncu's source
page (ncu_sass.csv.gz: `ncu -i prof.ncu-rep --page source --csv --print-source
sass`, LSTM fp16 H=768 B=16 T=64, both tiers, see NOTES.md).

  python ncu_stalls.py ncu_sass.csv.gz
"""
import csv
import gzip
import io
import re
import sys
from collections import Counter, defaultdict


def kernels(path):
    text = gzip.open(path, "rt").read()
    parts = re.split(r'^"Kernel Name","(.*)",\s*$', text, flags=re.M)
    for name, body in zip(parts[1::2], parts[2::2]):
        rows = list(csv.DictReader(io.StringIO(body.strip())))
        yield name, rows


def num(x):
    try:
        return float(x.replace(",", ""))
    except (ValueError, AttributeError):
        return 0.0


def opcode(src):
    s = src.strip()
    s = re.sub(r"^@!?U?P\w+\s+", "", s)
    return s.split(" ")[0].split(".")[0] if s else ""


def main(path):
    for name, rows in kernels(path):
        short = re.search(r"persist_\w+<[^>]*>", name).group(0)
        total = sum(num(r["Warp Stall Sampling (All Samples)"]) for r in rows)
        stalls = Counter()
        for r in rows:
            for k, v in r.items():
                if k.startswith("stall_") and "(Not Issued)" not in k:
                    stalls[k] += num(v)
        execd = Counter()
        for r in rows:
            execd[opcode(r["Source"])] += num(r["Instructions Executed"])
        n_exec = sum(execd.values())
        print(f"=== {short}: {len(rows)} SASS lines, {total:.0f} samples, "
              f"{n_exec:.0f} warp instructions executed")
        print("stall reasons (share of all samples):")
        for k, v in stalls.most_common(10):
            print(f"  {k:28s} {v / total:6.1%}")
        print("executed instruction mix (top 14):")
        for k, v in execd.most_common(14):
            print(f"  {k:10s} {v / n_exec:6.1%}  ({v:.0f})")
        by_op = defaultdict(float)
        for r in rows:
            by_op[opcode(r["Source"])] += num(r["Warp Stall Sampling (All Samples)"])
        print("samples by opcode (top 10):")
        for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  {k:10s} {v / total:6.1%}")
        print("hottest instructions (samples, top stall of each):")
        hot = sorted(rows, key=lambda r: -num(r["Warp Stall Sampling (All Samples)"]))[:16]
        for r in hot:
            top = max(((k, num(v)) for k, v in r.items()
                       if k.startswith("stall_") and "(Not Issued)" not in k), key=lambda kv: kv[1])
            print(f"  {num(r['Warp Stall Sampling (All Samples)']) / total:6.1%} "
                  f"{r['Address'][-5:]} {r['Source'].strip()[:60]:60s} {top[0]}")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
