"""A cell's GEMMs at B=64 (and the LSTM step's at B=16, H=256): MKL (torch.mm) against
rnnfuse's blocked GEMM (rnnfuse::mm), on 1 and 2 threads."""
import torch
import rnnfuse  # noqa: F401  (registers rnnfuse::mm)
from ab import ab, show

for threads in (1, 2):
    torch.set_num_threads(threads)
    for B, H in ((64, 128), (64, 512)):
        x = torch.randn(B, H); w = torch.randn(4 * H, H); dg = torch.randn(B, 4 * H)
        w_t = w.t().contiguous()
        cases = {"dx = dg @ W": (dg, w), "dW = dg^T @ x": (dg.t(), x), "x @ W^T (W^T laid out)": (x, w_t)}
        fns, flops = {}, {}
        for name, (a, b) in cases.items():
            fns[f"mkl    {name}"] = (lambda a=a, b=b: torch.mm(a, b))
            fns[f"kernel {name}"] = (lambda a=a, b=b: torch.ops.rnnfuse.mm(a, b))
            flops[f"mkl    {name}"] = flops[f"kernel {name}"] = 2 * a.size(0) * a.size(1) * b.size(1)
        print(f"threads={threads} B={B} H={H}")
        show(ab(fns, n=10, reps=15), flops)
torch.set_num_threads(2)
a = torch.randn(16, 256); b = torch.randn(256, 1024)
print("LSTM step GEMM B=16 H=256 (16 x 256 @ 256 x 1024), 2 threads")
show(ab({"kernel": lambda: torch.ops.rnnfuse.mm(a, b), "mkl": lambda: torch.mm(a, b)}, n=50, reps=15),
     {"kernel": 2 * 16 * 256 * 1024, "mkl": 2 * 16 * 256 * 1024})
