"""The persistent tier's GPU measurements for gpu_check.sh, in one process:

  python3 benchmarks/persist_check.py --json WORK/persist.json

1. plan: which path the issue's points take on this device, and why;
2. exchange: ns per step of the exchange alone (flags + h gather + slice
   write, no math; csrc/cuda/persistent/exchange_bench.cu), grid tier; and
   of the cluster tier's DSMEM exchange alone (mbarrier wait + st.async push
   of each CTA's units, cluster_exchange_bench.cu; sm_90 only), whose data
   check is exact (every step adds 1, so a stale row shows);
3. points: LSTM H=768, B=16, T=1024 (FlashRNN's point) in fp16 and bf16, and
   GRU bf16, and the fastrnns point (LSTM H=512, B=64, T=100) in fp32 with
   TF32 off on both sides (the exact-FMA kernels against cuDNN's exact
   fp32), and the standard preset's bidirectional point (LSTM bf16 H=512,
   B=64, T=128: rnnfuse's layer as one op, both directions per persistent
   launch, against the per-step path's one op per direction), and the
   standard preset's LSTM H=1024, B=16, T=128 in exact fp32 (the backward's
   K split), forward and forward+backward: cuDNN (torch.nn), rnnfuse per-step
   and rnnfuse persistent with the tier the planner picks (the "path"
   column), timed with CUDA events (warm-up, median); where that is the
   cluster tier, the grid tier is timed too (grid_ms). Each rnnfuse output is
   checked against the per-step path (validated on the H200) before it is
   timed, and the launch counters must move (forward on its tier, and in
   training the backward where its plan says persistent).

Exit 0 when everything ran, every point was correct and the persistent path
ran where the plan said it would; 1 otherwise. Prints a summary; the JSON is
what gpu_check_report.py renders.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402

DEV = "cuda"
EXCHANGE = [  # (H, B, CTAs per replica)
    (768, 16, 16), (768, 16, 48), (768, 16, 96), (768, 16, 128),
    (256, 16, 32), (1024, 16, 128), (768, 64, 96)]
CLUSTER_EXCHANGE = [  # (H, B, CTAs per cluster, replicas)
    (768, 16, 16, 1), (768, 16, 16, 2), (768, 16, 8, 1), (256, 16, 8, 1), (512, 64, 16, 4)]
# (cell, dtype, H, B, T, bidirectional). float32 points run with TF32 off on
# both sides (cuDNN's exact fp32 against the exact-FMA kernels): the quick
# preset's "fp32". The bidirectional point is the standard preset's: rnnfuse
# runs it as one op (both directions per persistent launch) against the
# per-step path's one op per direction. The last is the standard preset's
# exact fp32 at H=1024, whose backward splits K over 2 CTAs per unit group.
POINTS = [("LSTM", torch.float16, 768, 16, 1024, False),
          ("LSTM", torch.bfloat16, 768, 16, 1024, False),
          ("GRU", torch.bfloat16, 768, 16, 1024, False),
          ("LSTM", torch.float32, 512, 64, 100, False),
          ("LSTM", torch.bfloat16, 512, 64, 128, True),
          ("LSTM", torch.float32, 1024, 16, 128, False)]
AGREE = 3e-2  # persistent vs per-step: max abs on h (|h| <= 1), max relative on dx (bf16-level)


def path_info(cell, dtype, H, B, T, bidir=False):
    like = torch.empty(1, device=DEV, dtype=dtype)
    return json.loads(torch.ops.rnnfuse.recurrence_path(like, cell, H, B, T, 0, 1,
                                                        2 if bidir else 1))


@contextlib.contextmanager
def bidir_one_op(on: bool):
    """The modules' bidirectional layers as one op on CUDA (both directions
    per launch) inside, when on."""
    from rnnfuse import _driver
    saved = _driver.BIDIR_ONE_OP_DEVICES
    if on:
        _driver.BIDIR_ONE_OP_DEVICES = saved | {"cuda"}
    try:
        yield
    finally:
        _driver.BIDIR_ONE_OP_DEVICES = saved


def planned_launches(info, mode) -> tuple[int, int]:
    """(persistent launches, cluster-tier launches) one call makes on the
    path `info` names."""
    if info.get("directions") == 2:  # per direction, the forward may be on the cluster tier
        cluster = info["launches_per_call"] if "cluster" in info["path"] else 0
        return (info["launches_per_call"]
                + (info["backward_launches"] if mode == "training" else 0)), cluster
    forward = info["path"].startswith("persistent-")
    backward = mode == "training" and info["backward_path"] == "persistent-grid"
    return forward + backward, int(info["path"] == "persistent-cluster")


def set_persistent(on: bool):
    os.environ["RNNFUSE_PERSISTENT"] = "1" if on else "0"


def exchange(steps: int) -> list[dict]:
    out = []
    for H, B, P in EXCHANGE:
        y = torch.zeros(steps * B, H, device=DEV, dtype=torch.bfloat16)
        h0 = torch.randn(B, H, device=DEV, dtype=torch.bfloat16)
        row = {"H": H, "B": B, "P": P}
        try:
            torch.ops.rnnfuse.persistent_exchange_bench(y[: 200 * B], h0, P)  # warm-up
            ns = [torch.ops.rnnfuse.persistent_exchange_bench(y, h0, P) for _ in range(3)]
            row["ns_per_step"] = statistics.median(ns)
            # The data really moved: the last step's rows equal h0 (copied every step).
            row["ok"] = bool(torch.equal(y[-B:], h0))
        except RuntimeError as e:
            row["error"] = str(e).splitlines()[0]
            row["ok"] = False
        print(f"exchange H={H} B={B} P={P}: {row.get('ns_per_step', float('nan')):.0f} ns/step "
              f"{'ok' if row['ok'] else row.get('error', 'DATA WRONG')}", flush=True)
        out.append(row)
    return out


def cluster_exchange(steps: int) -> list[dict]:
    out = []
    like = path_info("LSTM", torch.bfloat16, 64, 8, 10)
    if torch.cuda.get_device_capability()[0] < 9 or not like.get("cluster_kernels"):
        print("cluster exchange: skipped (no sm_90 cluster kernels)", flush=True)
        return out
    for H, B, S, R in CLUSTER_EXCHANGE:
        y = torch.zeros(steps * B, H, device=DEV, dtype=torch.bfloat16)
        h0 = torch.randn(B, H, device=DEV, dtype=torch.bfloat16)
        row = {"H": H, "B": B, "S": S, "R": R}
        try:
            torch.ops.rnnfuse.persistent_cluster_exchange_bench(y[: 200 * B], h0, S, R)  # warm-up
            ns = [torch.ops.rnnfuse.persistent_cluster_exchange_bench(y, h0, S, R) for _ in range(3)]
            row["ns_per_step"] = statistics.median(ns)
            # Each step added 1 to every 16-bit word: the last step holds h0 + steps - 1.
            want = (h0.view(torch.int16).to(torch.int32) + steps - 1) & 0xFFFF
            want = torch.where(want >= 0x8000, want - 0x10000, want).to(torch.int16)
            row["ok"] = bool(torch.equal(y[-B:].view(torch.int16), want))
        except RuntimeError as e:
            row["error"] = str(e).splitlines()[0]
            row["ok"] = False
        print(f"cluster exchange H={H} B={B} S={S} R={R}: "
              f"{row.get('ns_per_step', float('nan')):.0f} ns/step "
              f"{'ok' if row['ok'] else row.get('error', 'DATA WRONG')}", flush=True)
        out.append(row)
    return out


def launch_counts(cell, dtype, H, B, T) -> tuple[int, int]:
    info = path_info(cell, dtype, H, B, T)
    return info["launches"], info["cluster_launches"]


def time_ms(fn, reps: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def check_persistent(run, ours, base, info, mode, shape) -> tuple[str, float]:
    """Run once on the path `info` names; "OK" when the launch counters moved
    as its plans say and the output (and input gradient) agree with the
    per-step path's `base`; also the agreement (max abs on h, max relative
    on dx)."""
    before, before_cluster = launch_counts(*shape)
    got = run(ours)
    torch.cuda.synchronize()
    after, after_cluster = launch_counts(*shape)
    want, want_cluster = planned_launches(info, mode)
    agree = (got[0].float() - base[0].float()).abs().max().item()
    if got[1] is not None:
        scale = max(base[1].float().abs().max().item(), 1e-6)
        agree = max(agree, (got[1].float() - base[1].float()).abs().max().item() / scale)
    if after - before != want:
        return f"WRONG: {after - before} persistent launches, expected {want}", agree
    if after_cluster - before_cluster != want_cluster:
        return (f"WRONG: {after_cluster - before_cluster} cluster launches, expected "
                f"{want_cluster}"), agree
    if not agree <= AGREE:
        return f"WRONG: persistent vs per-step {agree:.3g} > {AGREE}", agree
    return "OK", agree


@contextlib.contextmanager
def tf32_off_for(dtype):
    """float32: cudnn and matmul TF32 off inside (restored after)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if dtype == torch.float32:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def point(cell, dtype, H, B, T, bidir, reps) -> list[dict]:
    with tf32_off_for(dtype):
        return _point(cell, dtype, H, B, T, bidir, reps)


def _point(cell, dtype, H, B, T, bidir, reps) -> list[dict]:
    import rnnfuse
    torch.manual_seed(0)
    nn_cls, our_cls = (torch.nn.LSTM, rnnfuse.LSTM) if cell == "LSTM" else (torch.nn.GRU, rnnfuse.GRU)
    ref = nn_cls(H, H, bidirectional=bidir, device=DEV, dtype=dtype)
    ours = our_cls(H, H, bidirectional=bidir, device=DEV, dtype=dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, H, device=DEV, dtype=dtype)
    grad = torch.randn(T, B, (2 if bidir else 1) * H, device=DEV, dtype=dtype)
    rows = []
    for mode in ("inference", "training"):
        def run(m, mode=mode):
            """The output and, in training, the input gradient."""
            if mode == "inference":
                with torch.no_grad():
                    return m(x)[0], None
            xi = x.detach().requires_grad_()
            y = m(xi)[0]
            y.backward(grad)
            return y, xi.grad
        row = {"cell": cell, "dtype": str(dtype).replace("torch.", ""), "mode": mode, "H": H,
               "B": B, "T": T, "bidirectional": bidir}
        row["cudnn_ms"] = time_ms(lambda: run(ref), reps)
        set_persistent(False)
        base = run(ours)  # the validated per-step path (one op per direction)
        row["perstep_ms"] = time_ms(lambda: run(ours), reps)
        set_persistent(True)
        info = path_info(cell, dtype, H, B, T, bidir)
        row["path"] = info["path"]
        row["plan"] = info["plan"]
        row["backward_path"] = info["backward_path"]
        with bidir_one_op(bidir):
            status, agree = check_persistent(run, ours, base, info, mode, (cell, dtype, H, B, T))
        row["agree_max_abs"] = agree
        row["status"] = status
        if status == "OK":
            with bidir_one_op(bidir):
                row["persistent_ms"] = time_ms(lambda: run(ours), reps)
            row["speedup_vs_cudnn"] = row["cudnn_ms"] / row["persistent_ms"]
            row["us_per_step"] = row["persistent_ms"] * 1e3 / T
        if row["path"] == "persistent-cluster":  # the grid tier at the same point, for comparison
            os.environ["RNNFUSE_PERSISTENT_TIER"] = "grid"
            try:
                ginfo = path_info(cell, dtype, H, B, T)
                if ginfo["path"] == "persistent-grid":
                    gstatus, _ = check_persistent(run, ours, base, ginfo, mode, (cell, dtype, H, B, T))
                    row["grid_status"] = gstatus
                    if gstatus == "OK":
                        row["grid_ms"] = time_ms(lambda: run(ours), reps)
            finally:
                del os.environ["RNNFUSE_PERSISTENT_TIER"]
        set_persistent(False)
        print(f"{cell} {row['dtype']} {mode} H={H} B={B} T={T}{' bidirectional' if bidir else ''}: "
              f"cuDNN {row['cudnn_ms']:.3f} ms, "
              f"per-step {row['perstep_ms']:.3f} ms, persistent "
              f"{row.get('persistent_ms', float('nan')):.3f} ms [{row['path']}] {row['status']}"
              + (f"; grid tier {row.get('grid_ms', float('nan')):.3f} ms {row.get('grid_status')}"
                 if "grid_status" in row else ""), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--steps", type=int, default=20000, help="steps of the exchange runs")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("persist_check: no CUDA device", file=sys.stderr)
        return 2
    import rnnfuse.ops  # noqa: F401
    t0 = time.monotonic()
    result = {"device": torch.cuda.get_device_name(), "exchange": [], "cluster_exchange": [],
              "points": [], "errors": []}
    for cell, dtype, H, B, T, bidir in POINTS:
        set_persistent(True)
        with tf32_off_for(dtype):
            print(f"plan {cell} {dtype} H={H} B={B}{' bidirectional' if bidir else ''}: "
                  f"{path_info(cell, dtype, H, B, T, bidir)}", flush=True)
    set_persistent(False)
    for name, fn in (("exchange", lambda: exchange(args.steps)),
                     ("cluster_exchange", lambda: cluster_exchange(args.steps)),
                     ("points", lambda: [r for p in POINTS for r in point(*p, reps=args.reps)])):
        try:
            result[name] = fn()
        except Exception as e:  # noqa: BLE001 - record and go on to the next part
            result["errors"].append(f"{name}: {type(e).__name__}: {e}")
            print(f"persist_check {name} FAILED: {e}", flush=True)
    result["seconds"] = time.monotonic() - t0
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    ok = (not result["errors"] and all(r["ok"] for r in result["exchange"])
          and all(r["ok"] for r in result["cluster_exchange"])
          and result["points"] and all(r["status"] == "OK" for r in result["points"])
          and all(r.get("grid_status", "OK") == "OK" for r in result["points"]))
    print(f"persist_check: {'OK' if ok else 'FAILED'} in {result['seconds']:.0f} s", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
