"""The cell backward op: the CPU implementation (cpu/cell_bwd_cpu.cpp: one step of the
layer's loop, then its four GEMMs side by side) against the composite body it replaced
on the CPU (driver_cell.cpp, reached by redispatching to CompositeExplicitAutograd)."""
import torch
import rnnfuse  # noqa: F401
from ab import ab, show

ops = torch.ops.rnnfuse
comp = torch._C.DispatchKeySet(torch._C.DispatchKey.CompositeExplicitAutograd)
for dtype in (torch.float32, torch.bfloat16):
    for B in (1, 64):
        H = 512
        g = torch.Generator().manual_seed(0)
        r = lambda *s: torch.randn(*s, generator=g).to(dtype)
        x, h0, c0, gh, gc = r(B, H), r(B, H), r(B, H), r(B, H), r(B, H)
        print(f"{dtype} B={B} H={H}")
        for cell in ("lstm", "gru"):
            G = 4 if cell == "lstm" else 3
            w_ih, w_hh, b_ih, b_hh = r(G * H, H) * .05, r(G * H, H) * .05, r(G * H), r(G * H)
            if cell == "lstm":
                h, c, ws = ops.lstm_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, c0, True)
                args = (gh, gc, x, w_ih, w_hh, h0, c0, h, ws, True)
            else:
                h, ws = ops.gru_cell_fwd(x, w_ih, w_hh, b_ih, b_hh, h0, True)
                args = (gh, x, w_ih, w_hh, b_hh, h0, h, ws)
            op = getattr(ops, f"{cell}_cell_bwd")
            new = lambda: op(*args)
            old = lambda: op.default.redispatch(comp, *args)
            diff = max((a.double() - b.double()).abs().max().item() for a, b in zip(new(), old()))
            print(f"  {cell}: max |new - composite| over the six gradients {diff:.2e}")
            show(ab({f"{cell} new (CPU op)": new, f"{cell} composite": old}, n=20, reps=15))
