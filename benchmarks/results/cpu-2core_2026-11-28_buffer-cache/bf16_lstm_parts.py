import torch, time, rnnfuse, sys
torch.manual_seed(0)
T,B,H=100,int(sys.argv[1]),512
dt=torch.bfloat16
ref=torch.nn.LSTM(H,H).to(dt); ours=rnnfuse.LSTM(H,H).to(dt); ours.load_state_dict(ref.state_dict())
x=torch.randn(T,B,H,dtype=dt)
O=torch.ops.rnnfuse
def t(f, reps=9):
    ts=[]
    for _ in range(reps):
        t0=time.perf_counter(); f(); ts.append(time.perf_counter()-t0)
    ts.sort(); return ts[len(ts)//2]*1e3
w_ih, w_hh, b = ours.weight_ih_l0, ours.weight_hh_l0, ours.bias_ih_l0+ours.bias_hh_l0
h0=torch.zeros(B,H,dtype=dt)
with torch.no_grad():
    xp = torch.nn.functional.linear(x.view(T*B,H), w_ih, b)
    bs=torch.full((T,),B,dtype=torch.long)
    for r in range(2):
        print('torch %.1f ours %.1f | linear %.1f loop %.1f' % (t(lambda: ref(x)), t(lambda: ours(x)), t(lambda: torch.nn.functional.linear(x.view(T*B,H), w_ih, b)), t(lambda: O.lstm_fwd(xp, w_hh, None, h0, h0, bs, False, False))))
