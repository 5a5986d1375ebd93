"""One bracket of the cluster kernel's main loop as a run-length string of
opcode classes (HMMA H, MUFU M, STS S, STS to DSMEM A, STG G, BAR.SYNC |),
from the first HMMA on.

    cuobjdump -sass -fun <cluster kernel> <object> > k.sass
    python sass_order.py k.sass 1500
"""
import re, sys
ops = []
for line in open(sys.argv[1]):
    m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
    if m: ops.append(m.group(2))
first = next(i for i, o in enumerate(ops) if o.startswith("HMMA"))
def cls(o):
    if o.startswith("HMMA"): return "H"
    if o.startswith("MUFU"): return "M"
    if o.startswith("STS"): return "S"
    if o.startswith("BAR.SYNC") or o.startswith("BAR.SYNC.DEFER"): return "|"
    if o.startswith("STAS"): return "A"
    if o.startswith("STG"): return "G"
    return None
out = []
for o in ops[first - 200:]:
    c = cls(o)
    if c is None: continue
    if out and out[-1][0] == c: out[-1][1] += 1
    else: out.append([c, 1])
print(" ".join(f"{c}{n}" for c, n in out)[:int(sys.argv[2]) if len(sys.argv) > 2 else 3000])
