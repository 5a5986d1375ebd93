"""The per-step path's GPU measurements for gpu_check.sh, in one process:

  python3 benchmarks/step_check.py --json WORK/steps.json

1. tiles: the tile planner (csrc/step_plan.h; RNNFUSE_STEP_TILE=auto, the
   default) against the rule before it (threshold: 64-row tiles above 32
   rows), each tile forced (small, large), and the planner over the
   tensor-core tiles' twins with twice the k-chunk (auto-deep:
   RNNFUSE_STEP_CHUNK=deep; half the round trips per step, if those bound
   it). H=512, T=100, B 8, 64 and 256;
   LSTM and GRU in bf16, LSTM in fp32 (exact FMA tiles, TF32 off); inference
   and training (forward + backward), ms per call (CUDA events, median).
2. bidir: a bidirectional layer as one op (one launch per time step for both
   directions, the path the modules take on CUDA once
   rnnfuse._driver.BIDIR_ONE_OP_DEVICES names cuda) against one op per
   direction (their CUDA path today). LSTM and GRU bf16, H=512, T=100,
   B 16 and 64, one layer.

Every variant's output (and in training the input gradient) is checked
against the baseline's (threshold; per direction) before it is timed: a tile
sums in another order, so agreement is to a tolerance (bf16 3e-2, fp32 1e-4,
max abs on h and max relative on dx). RNNFUSE_PERSISTENT=0 throughout.

Exit 0 when every row ran and agreed; 1 otherwise. --device cpu --tiny runs
the same code on the CPU at small sizes (tests; the tile rule has no effect
there).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402

# RNNFUSE_STEP_TILE values, "-deep": with RNNFUSE_STEP_CHUNK=deep.
RULES = ("threshold", "auto", "small", "large", "auto-deep")
TILE_POINTS = [("LSTM", torch.bfloat16), ("GRU", torch.bfloat16), ("LSTM", torch.float32)]
TOL = {torch.bfloat16: 3e-2, torch.float32: 1e-4}


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def time_ms(fn, reps: int, device: str) -> float:
    import time
    fn()
    sync(device)
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


@contextlib.contextmanager
def env(name, value):
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            del os.environ[name]
        else:
            os.environ[name] = saved


def make_run(module, x, grad, mode):
    def run():
        """The output and, in training, the input gradient."""
        if mode == "inference":
            with torch.no_grad():
                return module(x)[0], None
        xi = x.detach().requires_grad_()
        y = module(xi)[0]
        y.backward(grad)
        return y, xi.grad
    return run


def disagreement(got, base) -> float:
    err = (got[0].float() - base[0].float()).abs().max().item()
    if got[1] is not None:
        scale = max(base[1].float().abs().max().item(), 1e-6)
        err = max(err, (got[1].float() - base[1].float()).abs().max().item() / scale)
    return err


def model(cell, dtype, H, device, bidirectional=False):
    import rnnfuse
    torch.manual_seed(0)
    cls = rnnfuse.LSTM if cell == "LSTM" else rnnfuse.GRU
    return cls(H, H, bidirectional=bidirectional).to(device=device, dtype=dtype)


def tiles(device, H, T, batches, reps) -> list[dict]:
    rows = []
    for cell, dtype in TILE_POINTS:
        for B in batches:
            m = model(cell, dtype, H, device)
            x = torch.randn(T, B, H, device=device, dtype=dtype)
            grad = torch.randn(T, B, H, device=device, dtype=dtype)
            for mode in ("inference", "training"):
                run = make_run(m, x, grad, mode)
                row = {"cell": cell, "dtype": str(dtype).replace("torch.", ""), "mode": mode,
                       "H": H, "B": B, "T": T, "status": "OK"}
                with env("RNNFUSE_STEP_TILE", "threshold"):
                    base = run()
                for rule in RULES:
                    tile, _, chunk = rule.partition("-")
                    with env("RNNFUSE_STEP_TILE", tile), \
                            env("RNNFUSE_STEP_CHUNK", chunk or "base"):
                        err = disagreement(run(), base)
                        if not err <= TOL[dtype]:
                            row["status"] = f"WRONG: {rule} vs threshold {err:.3g} > {TOL[dtype]}"
                            continue
                        row[f"{rule}_ms"] = time_ms(run, reps, device)
                if "auto_ms" in row and "threshold_ms" in row:
                    row["speedup_vs_threshold"] = row["threshold_ms"] / row["auto_ms"]
                print(f"tiles {cell} {row['dtype']} {mode} B={B}: "
                      + ", ".join(f"{r} {row.get(f'{r}_ms', float('nan')):.3f} ms" for r in RULES)
                      + f" {row['status']}", flush=True)
                rows.append(row)
    return rows


def bidir(device, H, T, batches, reps) -> list[dict]:
    from rnnfuse import _driver
    rows = []
    per_direction = frozenset(_driver.BIDIR_ONE_OP_DEVICES - {device})
    one_op = frozenset(_driver.BIDIR_ONE_OP_DEVICES | {device})
    saved = _driver.BIDIR_ONE_OP_DEVICES
    try:
        for cell in ("LSTM", "GRU"):
            for B in batches:
                dtype = torch.bfloat16
                m = model(cell, dtype, H, device, bidirectional=True)
                x = torch.randn(T, B, H, device=device, dtype=dtype)
                grad = torch.randn(T, B, 2 * H, device=device, dtype=dtype)
                for mode in ("inference", "training"):
                    run = make_run(m, x, grad, mode)
                    row = {"cell": cell, "dtype": "bfloat16", "mode": mode, "H": H, "B": B,
                           "T": T, "status": "OK"}
                    _driver.BIDIR_ONE_OP_DEVICES = per_direction
                    base = run()
                    row["per_direction_ms"] = time_ms(run, reps, device)
                    _driver.BIDIR_ONE_OP_DEVICES = one_op
                    err = disagreement(run(), base)
                    if err <= TOL[dtype]:
                        row["one_op_ms"] = time_ms(run, reps, device)
                        row["speedup"] = row["per_direction_ms"] / row["one_op_ms"]
                    else:
                        row["status"] = f"WRONG: one op vs per direction {err:.3g} > {TOL[dtype]}"
                    print(f"bidir {cell} {mode} B={B}: per direction "
                          f"{row['per_direction_ms']:.3f} ms, one op "
                          f"{row.get('one_op_ms', float('nan')):.3f} ms {row['status']}",
                          flush=True)
                    rows.append(row)
    finally:
        _driver.BIDIR_ONE_OP_DEVICES = saved
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    # 7 timed calls per variant: with five tile rules about as many calls as
    # 10 with four, inside the steps stage's cap (gpu_check.sh).
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small sizes (tests of this script)")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("step_check: no CUDA device", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False  # fp32 on the exact FMA tiles
    H, T = (16, 5) if args.tiny else (512, 100)
    tile_batches = (3, 40) if args.tiny else (8, 64, 256)
    bidir_batches = (3,) if args.tiny else (16, 64)
    result = {"tiles": [], "bidir": [], "errors": []}
    with env("RNNFUSE_PERSISTENT", "0"):
        for name, fn, batches in (("tiles", tiles, tile_batches), ("bidir", bidir, bidir_batches)):
            try:
                result[name] = fn(args.device, H, T, batches, args.reps)
            except Exception as e:  # noqa: BLE001 - report, keep the other section
                result["errors"].append(f"{name}: {type(e).__name__}: {e}")
                print(f"step_check {name}: {type(e).__name__}: {e}", flush=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    rows = result["tiles"] + result["bidir"]
    bad = [r for r in rows if r["status"] != "OK"]
    ok = not bad and not result["errors"] and rows
    print(f"step_check: {len(rows) - len(bad)} of {len(rows)} rows OK, "
          f"{len(result['errors'])} errors", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
