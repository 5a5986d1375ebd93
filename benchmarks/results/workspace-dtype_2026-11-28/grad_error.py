"""Gradient error of rnnfuse's half-precision training against float64, on the CPU:

  python benchmarks/results/workspace-dtype_2026-11-28/grad_error.py > out.txt

For each cell (LSTM, GRU), dtype (bfloat16, float16) and sequence length,
the same weights and inputs run (a) in rnnfuse at that dtype, (b) in
torch.nn at float64 (the reference) and (c) in torch.nn at that dtype on the
CPU (what a user gets today without rnnfuse). Printed per output and
gradient: max |error| / max |reference|. The workspace's dtype (what the
backward reads: the gate activations and c) is what this measures the
effect of; the forward outputs do not depend on it.
"""
import torch

import rnnfuse

torch.set_num_threads(2)
B, H = 16, 256


def run(module, x, h0, g):
    x = x.detach().clone().requires_grad_(True)
    out, _ = module(x, h0)
    out.backward(g)
    grads = {"y": out.detach(), "x": x.grad}
    for name, p in module.named_parameters():
        grads[name] = p.grad
    return grads


def rel_errors(ref, got):
    return {k: float((got[k].double() - ref[k]).abs().max() / ref[k].abs().max()) for k in ref}


print(f"B={B} H={H} I=H, seed 0; max |err| / max |ref| per tensor, vs float64 torch.nn")
for cell in ("LSTM", "GRU"):
    for dtype in (torch.bfloat16, torch.float16):
        for T in (100, 1000):
            torch.manual_seed(0)
            ref_mod = getattr(torch.nn, cell)(H, H).double()
            x = torch.randn(T, B, H, dtype=torch.float64)
            g = torch.randn(T, B, H, dtype=torch.float64)
            ref = run(ref_mod, x, None, g)
            ours_mod = getattr(rnnfuse, cell)(H, H).to(dtype)
            ours_mod.load_state_dict(ref_mod.state_dict())
            ours = rel_errors(ref, run(ours_mod, x.to(dtype), None, g.to(dtype)))
            nn_mod = getattr(torch.nn, cell)(H, H).to(dtype)
            nn_mod.load_state_dict(ref_mod.state_dict())
            theirs = rel_errors(ref, run(nn_mod, x.to(dtype), None, g.to(dtype)))
            print(f"\n{cell} {str(dtype)[6:]} T={T}")
            print(f"  {'tensor':14s} {'rnnfuse':>10s} {'torch.nn':>10s}")
            for k in ref:
                print(f"  {k:14s} {ours[k]:10.2e} {theirs[k]:10.2e}")
