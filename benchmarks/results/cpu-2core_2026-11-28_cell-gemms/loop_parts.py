"""Where the LSTM points short of 1.0 spend their time: the input projection, the time
loop (rnnfuse::lstm_fwd), and torch.nn's whole LSTM, with GFLOP/s; and whether x_proj's
residency matters (T=5 twenty times vs T=100 once: same steps, x_proj in cache or not)."""
import torch
import rnnfuse
from ab import ab, show

T = 100
for dtype, B, H in ((torch.float32, 16, 256), (torch.bfloat16, 64, 512)):
    x = torch.randn(T * B, H).to(dtype)
    w_ih = (torch.randn(4 * H, H) * .05).to(dtype); w_hh = (torch.randn(4 * H, H) * .05).to(dtype)
    b = torch.randn(4 * H).to(dtype)
    h0 = torch.zeros(B, H, dtype=dtype); c0 = torch.zeros(B, H, dtype=dtype)
    proj = (lambda: torch.ops.rnnfuse.linear(x, w_ih, b)) if dtype == torch.float32 else \
        (lambda: torch.nn.functional.linear(x, w_ih, b))
    xp = proj()
    ref = torch.nn.LSTM(H, H).to(dtype); ours = rnnfuse.LSTM(H, H).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x3 = x.view(T, B, H)
    gemm = 2 * T * B * H * 4 * H
    xp5 = xp[:5 * B].contiguous()
    fns = {"input projection": proj,
           "time loop (lstm_fwd)": lambda: torch.ops.rnnfuse.lstm_fwd(xp, w_hh, None, h0, c0, None, False, False),
           "time loop, T=5 x 20": lambda: [torch.ops.rnnfuse.lstm_fwd(xp5, w_hh, None, h0, c0, None, False, False) for _ in range(20)],
           "torch.nn LSTM": lambda: ref(x3), "rnnfuse LSTM": lambda: ours(x3)}
    flops = {"input projection": gemm, "time loop (lstm_fwd)": gemm, "time loop, T=5 x 20": gemm,
             "torch.nn LSTM": 2 * gemm, "rnnfuse LSTM": 2 * gemm}
    print(f"{dtype} T={T} B={B} I=H={H}, inference")
    with torch.inference_mode():
        show(ab(fns, n=1, reps=15, warm=2), flops)
