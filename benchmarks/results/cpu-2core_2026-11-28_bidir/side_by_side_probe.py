"""The two directions' time loops side by side (two threads, one each: the
default with two threads) against one after the other on both threads
(RNNFUSE_CPU_BIDIR_SEQUENTIAL=1), through rnnfuse.functional's bidirectional
layers, inference and training (forward + backward); toggled call by call in
one process (the variable is read at every call). Ratio: median of paired
per-repeat ratios, one after the other / side by side, with p10-p90.

    python side_by_side_probe.py
"""
import os
import statistics
import time

import torch

import rnnfuse.functional as F

torch.set_num_threads(2)
def run(mode, dt, B, H, T=100, n=11):
    G=4 if mode=="LSTM" else 3
    g=torch.Generator().manual_seed(0)
    xp=torch.randn(T*B,2*G*H,generator=g).to(dt)
    w=[(torch.randn(G*H,H,generator=g)*0.05).to(dt) for _ in range(2)]
    h0=torch.zeros(2,B,H,dtype=dt)
    res={}
    for training in (False, True):
        leaves=[xp,*w]
        for t in leaves: t.requires_grad_(training)
        def call():
            t0=time.perf_counter()
            if mode=="LSTM": y=F.lstm_bidir_layer(xp,w[0],w[1],None,None,h0,h0)[0]
            else: y=F.gru_bidir_layer(xp,w[0],w[1],None,None,h0)[0]
            if training: torch.autograd.grad(y.sum(), leaves)
            return time.perf_counter()-t0
        r=[]
        for i in range(n+2):
            os.environ["RNNFUSE_CPU_BIDIR_SEQUENTIAL"]="1"; a=call()
            os.environ["RNNFUSE_CPU_BIDIR_SEQUENTIAL"]="0"; b=call()
            if i>=2: r.append(a/b)
        q=statistics.quantiles(r,n=10)
        res[training]=f"{statistics.median(r):.3f} ({q[0]:.2f}-{q[-1]:.2f})"
    print(f"{mode} {str(dt)[6:]} B{B} H{H} | {res[False]} | {res[True]}", flush=True)
print("one after the other / side by side (above 1: side by side faster); inference | training")
for mode in ("LSTM","GRU"):
    for dt in (torch.float32, torch.bfloat16):
        for B,H in ((1,512),(16,256),(64,256),(16,512),(64,512)):
            run(mode,dt,B,H)
