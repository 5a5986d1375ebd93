"""A/B timing of rnnfuse vs torch.nn on the CPU, alternating repeat by repeat.

python abbench.py [--what layer|cell] [--reps N] [--dtype fp32|bf16] [--only lstm,gru]
Prints, per point, min and median of each side and ratio = torch.nn / rnnfuse
(min ratio from the mins, med ratio from the medians). Alternation means
background load hits both sides alike; min is the least noisy statistic.
"""
import argparse
import statistics
import time

import torch
CLOCK = time.perf_counter

import rnnfuse

DT = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp64": torch.float64}


QUIET = False


def _busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def wait_quiet(max_wait=120.0, window=0.5, busy_max=0.08):
    """Wait until the other processes leave both cores nearly idle for a
    window (our own process sleeps meanwhile); give up after max_wait."""
    t_end = time.time() + max_wait
    while time.time() < t_end:
        b0, t0 = _busy(); time.sleep(window); b1, t1 = _busy()
        if (b1 - b0) <= busy_max * max(1, t1 - t0):
            return True
    return False


def ab(fa, fb, reps, warm=3):
    for _ in range(warm):
        fa(); fb()
    ta, tb = [], []
    for _ in range(reps):
        if QUIET:
            wait_quiet()
        t0 = CLOCK(); fa(); t1 = CLOCK(); fb(); t2 = CLOCK()
        ta.append(t1 - t0); tb.append(t2 - t1)
    return ta, tb


def layer_fns(cell, B, T, H, dtype, mode):
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    rcls = {"lstm": rnnfuse.LSTM, "gru": rnnfuse.GRU}[cell]
    base = cls(H, H).to(dtype)
    cand = rcls(H, H).to(dtype)
    cand.load_state_dict(base.state_dict())
    x = torch.randn(T, B, H).to(dtype)
    h0 = torch.randn(1, B, H).to(dtype)
    hx = (h0, torch.randn(1, B, H).to(dtype)) if cell == "lstm" else h0
    g = torch.randn(T, B, H).to(dtype)

    def mk(m):
        if mode == "inference":
            m.eval()
            def f():
                with torch.inference_mode():
                    m(x, hx)
        else:
            m.train()
            x.requires_grad_(True)
            def f():
                for p in m.parameters():
                    p.grad = None
                x.grad = None
                y, _ = m(x, hx)
                y.backward(g)
        return f
    return mk(base), mk(cand)


def cell_fns(cell, B, H, dtype, mode, calls=20):
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[cell]
    rcls = {"lstm": rnnfuse.LSTMCell, "gru": rnnfuse.GRUCell}[cell]
    base = cls(H, H).to(dtype)
    cand = rcls(H, H).to(dtype)
    cand.load_state_dict(base.state_dict())
    xs = [torch.randn(B, H).to(dtype) for _ in range(calls)]
    h0 = torch.randn(B, H).to(dtype)
    hx = (h0, torch.randn(B, H).to(dtype)) if cell == "lstm" else h0

    def mk(m):
        def f():
            ctx = torch.no_grad() if mode == "inference" else torch.enable_grad()
            with ctx:
                s = hx
                for x in xs:
                    s = m(x, s)
                if mode == "training":
                    (s[0] if isinstance(s, tuple) else s).sum().backward()
        return f
    return mk(base), mk(cand), calls


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--what", default="layer")
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--only", default="lstm,gru")
    p.add_argument("--B", default="1,64")
    p.add_argument("--H", default="128,512")
    p.add_argument("--modes", default="inference,training")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    p.add_argument("--quiet", action="store_true",
                   help="before each A/B pair, wait (up to 2 min) until the machine is idle")
    a = p.parse_args()
    global QUIET
    QUIET = a.quiet
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.threads == 1:
        # One thread: CPU time of this thread, which other processes on the
        # machine do not inflate (they still share caches and memory bandwidth).
        global CLOCK
        CLOCK = time.thread_time
    dtype = DT[a.dtype]
    print(f"threads={torch.get_num_threads()} dtype={a.dtype}")
    for cell in a.only.split(","):
        for B in map(int, a.B.split(",")):
            for mode in a.modes.split(","):
                if a.what == "layer":
                    fa, fb = layer_fns(cell, B, 100, 512, dtype, mode)
                    ta, tb = ab(fa, fb, a.reps)
                    tag, scale = f"{cell} B={B:<3} {mode:9s}", 1e3
                    unit = "ms"
                    rows = [(tag, ta, tb)]
                else:
                    rows = []
                    for H in map(int, a.H.split(",")):
                        fa, fb, calls = cell_fns(cell, B, H, dtype, mode)
                        ta, tb = ab(fa, fb, a.reps)
                        ta = [t / calls for t in ta]; tb = [t / calls for t in tb]
                        rows.append((f"{cell}cell B={B:<3} H={H:<4} {mode:9s}", ta, tb))
                    scale, unit = 1e6, "us/call"
                for tag, ta, tb in rows:
                    ma, mb = min(ta), min(tb)
                    da, db = statistics.median(ta), statistics.median(tb)
                    print(f"{tag} torch {ma*scale:8.3f}/{da*scale:8.3f}  rnnfuse {mb*scale:8.3f}/{db*scale:8.3f} {unit} (min/med)"
                          f"  ratio min {ma/mb:5.2f} med {da/db:5.2f}", flush=True)


if __name__ == "__main__":
    main()
