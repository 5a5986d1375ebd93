"""A/B of one bidirectional layer on the CPU: the per-direction path the
modules took before (two input projections, lstm_layer / gru_layer per
direction, torch.cat of the outputs) against the bidirectional op as the
modules now call it (one (N, 2*G*H) projection, _driver._bidir_projection;
lstm_bidir_layer / gru_bidir_layer writing both directions into one output).
Both are timed alternately, repeat by repeat; the ratio is the median of
per-repeat ratios (old / new: above 1, the new path is faster), with its
p10-p90.

    python ab_bidir.py [--threads 2] [--repeats 40]
"""
import argparse
import statistics
import time

import torch

import rnnfuse.functional as F
from rnnfuse import _driver


def make(mode, T, B, I, H, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = 4 if mode == "lstm" else 3

    def r(*s):
        return (torch.randn(*s, generator=g) * 0.1).to(dtype)
    # LSTM: b is b_ih + b_hh, folded into the projection as the modules do.
    d = [dict(w_ih=r(G * H, I), w_hh=r(G * H, H), b=r(G * H)) for _ in range(2)]
    if mode == "gru":
        for dd in d:
            dd["b_hh"] = r(G * H)
    x = r(T * B, I)
    h0, c0 = r(2, B, H), r(2, B, H)
    return x, d, h0, c0


def old_path(mode, x, d, h0, c0):
    outs = []
    for k in range(2):
        xp = _driver._linear(x, d[k]["w_ih"], d[k]["b"])
        if mode == "lstm":
            y, _, _ = F.lstm_layer(xp, d[k]["w_hh"], None, h0[k], c0[k], None, k == 1)
        else:
            y, _ = F.gru_layer(xp, d[k]["w_hh"], d[k]["b_hh"], h0[k], None, k == 1)
        outs.append(y)
    return torch.cat(outs, 1)


def new_path(mode, x, d, h0, c0):
    # The modules' projection (one GEMM, or one per direction at few rows).
    xp = _driver._bidir_projection(x, d[0]["w_ih"], d[1]["w_ih"], d[0]["b"], d[1]["b"], x.dtype,
                                   None)
    if mode == "lstm":
        return F.lstm_bidir_layer(xp, d[0]["w_hh"], d[1]["w_hh"], None, None, h0, c0)[0]
    return F.gru_bidir_layer(xp, d[0]["w_hh"], d[1]["w_hh"], d[0]["b_hh"], d[1]["b_hh"], h0)[0]


def timed(fn, training, leaves):
    t0 = time.perf_counter()
    if training:
        y = fn()
        grads = torch.autograd.grad(y.sum(), leaves)
        del grads
    else:
        with torch.no_grad():
            fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=40)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("point | old ms | new ms | old/new median (p10-p90) | max |y_old - y_new|")
    for mode in ("lstm", "gru"):
        for dtype in (torch.float32, torch.bfloat16):
            for B, H in ((1, 512), (16, 256), (64, 512)):
                T, I = 100, H
                x, d, h0, c0 = make(mode, T, B, I, H, dtype)
                with torch.no_grad():
                    err = (old_path(mode, x, d, h0, c0).double()
                           - new_path(mode, x, d, h0, c0).double()).abs().max().item()
                for training in (False, True):
                    leaves = ([x] + [t for dd in d for t in dd.values()]
                              + ([h0, c0] if mode == "lstm" else [h0]))
                    for t in leaves:
                        t.requires_grad_(training)
                    fo = lambda: old_path(mode, x, d, h0, c0)  # noqa: E731
                    fn = lambda: new_path(mode, x, d, h0, c0)  # noqa: E731
                    for _ in range(3):
                        timed(fo, training, leaves), timed(fn, training, leaves)
                    to, tn = [], []
                    for _ in range(args.repeats):
                        to.append(timed(fo, training, leaves))
                        tn.append(timed(fn, training, leaves))
                    ratios = sorted(a / b for a, b in zip(to, tn))
                    q = statistics.quantiles(ratios, n=10)
                    name = (f"{mode} {str(dtype)[6:]} T{T} B{B} I=H={H} "
                            f"{'training' if training else 'inference'}")
                    print(f"{name} | {statistics.median(to) * 1e3:.2f} | "
                          f"{statistics.median(tn) * 1e3:.2f} | {statistics.median(ratios):.2f} "
                          f"({q[0]:.2f}-{q[-1]:.2f}) | {err:.3g}")


if __name__ == "__main__":
    main()
