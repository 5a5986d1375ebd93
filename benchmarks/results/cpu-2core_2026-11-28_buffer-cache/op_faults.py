import torch, time, resource, sys
T,B,H=100,64,512
O=torch.ops.rnnfuse; import rnnfuse
xp = torch.randn(T*B, 4*H); w = torch.randn(4*H,H)/H**.5; h0=torch.randn(B,H); c0=torch.randn(B,H)
bs = torch.full((T,), B, dtype=torch.long)
keep=[]
for training in (True, False, True, False):
    r0=resource.getrusage(resource.RUSAGE_SELF); t0=time.perf_counter()
    out=O.lstm_fwd(xp, w, None, h0, c0, bs, False, training)
    t1=time.perf_counter(); r1=resource.getrusage(resource.RUSAGE_SELF)
    print(training, '%.1f ms'%((t1-t0)*1e3), 'minflt', r1.ru_minflt-r0.ru_minflt, 'sys %.1f ms'%((r1.ru_stime-r0.ru_stime)*1e3))
    del out
y,hn,cn,ws = O.lstm_fwd(xp, w, None, h0, c0, bs, False, True)
gy=torch.randn_like(y); z=torch.zeros_like(h0)
for i in range(4):
    r0=resource.getrusage(resource.RUSAGE_SELF); t0=time.perf_counter()
    out=O.lstm_bwd(gy, z, z, w, None, h0, c0, y, ws, bs, False)
    t1=time.perf_counter(); r1=resource.getrusage(resource.RUSAGE_SELF)
    print('bwd', '%.1f ms'%((t1-t0)*1e3), 'minflt', r1.ru_minflt-r0.ru_minflt, 'sys %.1f ms'%((r1.ru_stime-r0.ru_stime)*1e3), 'user %.1f'%((r1.ru_utime-r0.ru_utime)*1e3))
    del out
