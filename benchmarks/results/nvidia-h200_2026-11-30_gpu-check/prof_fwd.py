"""One persistent forward per tier at the published point (T=64), for ncu."""
import os, sys, torch, rnnfuse
torch.manual_seed(0)
H, B, T = 768, 16, 64
dtype = torch.float16
m = rnnfuse.LSTM(H, H, device="cuda", dtype=dtype)
x = torch.randn(T, B, H, device="cuda", dtype=dtype)
os.environ["RNNFUSE_PERSISTENT"] = "1"
for tier in sys.argv[1:]:
    os.environ["RNNFUSE_PERSISTENT_TIER"] = tier
    with torch.no_grad():
        y, _ = m(x)
    torch.cuda.synchronize()
    print(tier, "ran", tuple(y.shape), flush=True)
