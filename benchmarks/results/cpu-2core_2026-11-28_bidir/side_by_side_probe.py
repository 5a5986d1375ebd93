import torch, time, statistics, rnnfuse
O=torch.ops.rnnfuse
def run(mode, dt, B, H, T=100, n=9):
    G=4 if mode=="LSTM" else 3
    g=torch.Generator().manual_seed(0)
    xp=torch.randn(T*B,2*G*H,generator=g).to(dt)
    w=[(torch.randn(G*H,H,generator=g)*0.05).to(dt) for _ in range(2)]
    h0=torch.zeros(2,B,H,dtype=dt)
    xs=[xp[:,:G*H].contiguous(), xp[:,G*H:].contiguous()]
    def old():
        for d in range(2):
            if mode=="LSTM": O.lstm_fwd(xs[d],w[d],None,h0[d],h0[d],None,d==1,False)
            else: O.gru_fwd(xs[d],w[d],None,h0[d],None,d==1,False)
    def new():
        if mode=="LSTM": O.lstm_bidir_fwd(xp,w[0],w[1],None,None,h0,h0,None,False)
        else: O.gru_bidir_fwd(xp,w[0],w[1],None,None,h0,None,False)
    with torch.no_grad():
        old(); new(); r=[]
        for _ in range(n):
            t=time.perf_counter(); old(); a=time.perf_counter()-t
            t=time.perf_counter(); new(); b=time.perf_counter()-t
            r.append(a/b)
    print(mode, dt, B, H, f"{B*G*H*H/1e6:.1f}M macs/step; old/new", round(statistics.median(r),3), [round(x,2) for x in sorted(r)])
for mode in ("LSTM","GRU"):
    for dt in (torch.float32, torch.bfloat16):
        for B,H in ((16,256),(64,256),(16,512),(64,512)):
            run(mode,dt,B,H)
