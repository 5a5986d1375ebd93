"""Alternating timer: each callable in turn, repeat by repeat; median and p10/p90 in us per call."""
import statistics
import time


def ab(fns, n=20, reps=30, warm=5):
    for f in fns.values():
        for _ in range(warm):
            f()
    ts = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(n):
                f()
            ts[k].append((time.perf_counter() - t0) / n * 1e6)
    out = {}
    for k, v in ts.items():
        v = sorted(v)
        out[k] = (statistics.median(v), v[len(v) // 10], v[9 * len(v) // 10])
    return out


def show(res, flops=None):
    for k, (m, lo, hi) in res.items():
        rate = f"  {flops[k] / m / 1e3:6.1f} GFLOP/s" if flops and k in flops else ""
        print(f"  {k:34s} {m:10.1f} us  [{lo:.1f}, {hi:.1f}]{rate}")
