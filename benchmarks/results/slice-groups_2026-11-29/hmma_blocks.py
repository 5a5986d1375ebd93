import re, sys
lines=open(sys.argv[1]).read().splitlines()
ins=[]
for ln in lines:
    m=re.match(r'\s*/\*([0-9a-f]{4,})\*/\s+(.*?);', ln)
    if m: ins.append((int(m.group(1),16), m.group(2)))
idx=[i for i,(a,t) in enumerate(ins) if 'HMMA' in t]
blocks=[]; cur=[idx[0]]
for i in idx[1:]:
    if i-cur[-1] <= 12: cur.append(i)
    else: blocks.append(cur); cur=[i]
blocks.append(cur)
R=r'(R\d+|RZ)(?:\.reuse)?'
for b in blocks:
    dests=[]
    for i in b:
        t=ins[i][1]
        m=re.search(r'HMMA\S*\s+'+R+r',\s*'+R+r',\s*'+R+r',\s*'+R, t)
        pred=re.match(r'(@!?U?P\w+)', t)
        dests.append((m.group(1), m.group(4), pred.group(1) if pred else ''))
    dist=[]
    for k,(d,c,p) in enumerate(dests):
        for j in range(k-1,-1,-1):
            if dests[j][0]==c: dist.append(k-j); break
    print(f"block at {ins[b[0]][0]:#x}: {len(b)} HMMA over {b[-1]-b[0]+1} instrs, "
          f"{len(set(d for d,_,_ in dests))} distinct dests, preds {sorted(set(p for *_,p in dests))}, "
          f"dependency distances (HMMAs) {sorted(set(dist))}")
