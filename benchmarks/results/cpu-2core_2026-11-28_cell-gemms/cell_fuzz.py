"""150 random LSTMCell/GRUCell cases from 16 rows (the side-by-side GEMMs) against
torch.nn: B 16-80, I and H 1-128, x contiguous, strided or transposed, fp32/fp64, 1-3
threads; h, c and every gradient. Prints the worst error as a fraction of its tolerance."""
import random

import torch
import rnnfuse

random.seed(0); torch.manual_seed(0)
worst = 0.0
for trial in range(150):
    kind = random.choice(["LSTMCell", "GRUCell"])
    B = random.choice([16, 17, 33, 64, 80]); I = random.choice([1, 7, 64, 100, 128])
    H = random.choice([5, 16, 64, 100, 128]); dt = random.choice([torch.float64, torch.float32])
    bias = random.random() < 0.7; layout = random.choice(["contiguous", "strided", "transposed"])
    torch.set_num_threads(random.choice([1, 2, 3]))
    ref = getattr(torch.nn, kind)(I, H, bias=bias).to(dt)
    ours = getattr(rnnfuse, kind)(I, H, bias=bias).to(dt); ours.load_state_dict(ref.state_dict())
    x0 = {"contiguous": lambda: torch.randn(B, I, dtype=dt), "strided": lambda: torch.randn(B, 2 * I, dtype=dt)[:, ::2],
          "transposed": lambda: torch.randn(I, B, dtype=dt).t()}[layout]()
    h, c = torch.randn(B, H, dtype=dt), torch.randn(B, H, dtype=dt)
    res = []
    for m in (ref, ours):
        x = x0.detach().requires_grad_(); hh = h.clone().requires_grad_(); cc = c.clone().requires_grad_()
        outs = m(x, (hh, cc)) if kind == "LSTMCell" else (m(x, hh),)
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=dt).view_as(o)).sum() for o in outs)
        wrt = [x, hh] + ([cc] if kind == "LSTMCell" else []) + list(m.parameters())
        res.append([o.detach() for o in outs] + list(torch.autograd.grad(loss, wrt)))
    err = max(((a - b).abs().max() / (1 + b.abs().max())).item() for a, b in zip(res[1], res[0]))
    tol = 1e-12 if dt == torch.float64 else 2e-5
    worst = max(worst, err / tol)
    if err > tol:
        print("MISMATCH", kind, B, I, H, dt, bias, layout, err)
torch.set_num_threads(2)
print(f"worst error / tolerance over 150 cases: {worst:.3f}")
