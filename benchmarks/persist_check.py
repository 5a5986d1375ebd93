"""The persistent tier's GPU measurements for gpu_check.sh:

  python3 benchmarks/persist_check.py --json WORK/persist.json

1. plan: which path the issue's points take on this device, and why;
2. exchange: ns per step of the exchange alone (flags + h gather + slice
   write, no math; csrc/cuda/persistent/exchange_bench.cu), grid tier, and
   beside it the same exchange with the flag in the data (NCCL's LL
   protocol: no fence, no flag, one 64-bit store per word;
   ll_exchange_bench.cu), a candidate for a cheaper handoff; and
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
   and rnnfuse persistent with the tiers the planner picks (the "path"
   column, and the backward's), timed with CUDA events (warm-up, median);
   where a pass takes the cluster tier, the grid tier is timed too (grid_ms:
   both passes on it; grid_bwd_ms: training with the backward alone on it,
   RNNFUSE_PERSISTENT_BWD_TIER=grid), and where both take the grid tier the
   cluster tier is, where this GPU has its kernels (cluster_ms, cluster_bwd_ms,
   and its push at the step's end). Each rnnfuse output is
   checked against the per-step path (validated on the H200) before it is
   timed, and the launch counters must move (forward on its tier, and in
   training the backward where its plan says persistent);
4. sweep: at the headline point (LSTM fp16 H=768 B=16 T=1024) and the quick
   preset's bf16 LSTM and GRU at H=512 B=64 T=100, every partition the
   planner can make, pinned in turn (RNNFUSE_PERSISTENT_PIN /
   RNNFUSE_PERSISTENT_BWD_PIN, each with its tier): checked as the points
   are and bitwise against each other (the backward's per K split or
   cluster size: bits_group), timed, and set beside
   the latency model's us per step, so the run ranks the model's
   candidates instead of only its choice.

The measurements run in a child process that rewrites the JSON after each
one; where one breaks the CUDA context (a trapped or faulting kernel fails
every later CUDA call in its process) or kills the process, it is recorded
as an error and a fresh process goes on with the next; --deadline-s stops
it, listing what did not run.

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
import subprocess
import sys
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402

from benchmarks.cuda_health import cuda_context_error  # noqa: E402
from benchmarks.step_check import env, make_run  # noqa: E402

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
# The partition sweep: at these points (cell, dtype, H, B, T) every
# partition the planner can make is pinned in turn (RNNFUSE_PERSISTENT_PIN
# for the forward, timed in inference; RNNFUSE_PERSISTENT_BWD_PIN for the
# backward, timed in training with the forward as planned), checked and
# timed beside the latency model's figure, so one GPU run ranks the model's
# candidates and shows which of its constants misjudge them.
SWEEPS = [("LSTM", torch.float16, 768, 16, 1024), ("LSTM", torch.bfloat16, 512, 64, 100),
          ("GRU", torch.bfloat16, 512, 64, 100)]
SWEEP_R = (1, 2, 4, 8)
SWEEP_CLUSTER = (8, 16)      # CTAs per cluster (cluster_layout.h)
SWEEP_GROUPS = (1, 2, 4)     # cluster tier: slices per bracket (cluster_layout.h)
SWEEP_KSPLIT = (1, 2, 4)     # backward K split (layout.h kMaxKSplit)
BWD_UNITS = (16, 8)          # backward units per CTA: one m-tile, half of one
# Forward grid CTAs wider than a slice (layout.h: up to 4 m-tiles, J <= 16):
# fewer CTAs gather h, so a step gathers fewer bytes.
FWD_WIDE_UNITS = (16,)


def bwd_units(ksplit: int) -> tuple[int, ...]:
    """Backward units per CTA the sweep pins at a K split: one m-tile or
    half, and with S parts up to S m-tiles (layout.h BwdPartition: J <= 16 S),
    which gather fewer bytes per step."""
    return BWD_UNITS + tuple(16 * m for m in (2, 4) if m <= ksplit)


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
    training = mode == "training"
    if info.get("directions") == 2:  # per direction, either pass may be on the cluster tier
        back = info["backward_launches"] if training else 0
        cluster = ((info["launches_per_call"] if "cluster" in info["path"] else 0)
                   + (back if "cluster" in info["backward_path"] else 0))
        return info["launches_per_call"] + back, cluster
    forward = info["path"].startswith("persistent-")
    backward = training and info["backward_path"].startswith("persistent-")
    cluster = (int(info["path"] == "persistent-cluster")
               + int(backward and info["backward_path"] == "persistent-cluster"))
    return forward + backward, cluster


def set_persistent(on: bool):
    os.environ["RNNFUSE_PERSISTENT"] = "1" if on else "0"


def bench_plan(H, B, ctas, replicas, cluster: bool) -> dict:
    """The partition the exchange bench runs (CTAs, units, slices per CTA)."""
    return json.loads(torch.ops.rnnfuse.persistent_exchange_bench_plan(H, B, ctas, replicas,
                                                                       cluster))


def exchange(H, B, P, steps: int) -> list[dict]:
    """The grid tier's exchange alone at one (H, B, CTAs per replica): one row."""
    y = torch.zeros(steps * B, H, device=DEV, dtype=torch.bfloat16)
    h0 = torch.randn(B, H, device=DEV, dtype=torch.bfloat16)
    row = {"H": H, "B": B, "P": P, "plan": bench_plan(H, B, P, 1, cluster=False)}
    try:
        torch.ops.rnnfuse.persistent_exchange_bench(y[: 200 * B], h0, P)  # warm-up
        ns = [torch.ops.rnnfuse.persistent_exchange_bench(y, h0, P) for _ in range(3)]
        row["ns_per_step"] = statistics.median(ns)
        # The data really moved: the last step's rows equal h0 (copied every step).
        row["ok"] = bool(torch.equal(y[-B:], h0))
        # The flags a 128-byte line apart (RNNFUSE_PERSISTENT_FLAG_STRIDE=32)
        # instead of 32 to a line, every CTA of the replica polling them.
        y.zero_()
        with env("RNNFUSE_PERSISTENT_FLAG_STRIDE", "32"):
            row["spread_ns_per_step"] = statistics.median(
                torch.ops.rnnfuse.persistent_exchange_bench(y, h0, P) for _ in range(3))
        row["ok"] = row["ok"] and bool(torch.equal(y[-B:], h0))
    except RuntimeError as e:
        row["error"] = str(e).splitlines()[0]
        row["ok"] = False
    ll_exchange(row, y, h0)
    print(f"exchange H={H} B={B} P={P}: {row.get('ns_per_step', float('nan')):.0f} ns/step "
          f"(flags a line apart {row.get('spread_ns_per_step', float('nan')):.0f}) "
          f"{'ok' if row['ok'] else row.get('error', 'DATA WRONG')}; flag in the data: "
          f"{row.get('ll_ns_per_step', float('nan')):.0f} ns/step "
          f"{'ok' if row['ll_ok'] else row.get('ll_error', 'DATA WRONG')}", flush=True)
    return [row]


def ll_exchange(row: dict, y, h0) -> None:
    """The same exchange with the flag in the data (NCCL's LL protocol,
    csrc/persistent/ll_layout.h) into `row`: ll_ns_per_step and ll_ok, whether
    every step's chain held (each step adds 1 to every 16-bit word of what it
    gathered, so y's last rows must be h0 + steps: a stale or torn read
    breaks it). Its failure is the row's failure."""
    H, B, P = row["H"], row["B"], row["P"]
    row["ll_plan"] = json.loads(torch.ops.rnnfuse.persistent_ll_exchange_plan(H, B, P))
    if row["ll_plan"]["error"] is not None:
        row["ll_error"], row["ll_ok"], row["ok"] = row["ll_plan"]["error"], False, False
        return
    steps = y.size(0) // B
    try:
        torch.ops.rnnfuse.persistent_ll_exchange_bench(y[: 200 * B], h0, P)  # warm-up
        row["ll_ns_per_step"] = statistics.median(
            torch.ops.rnnfuse.persistent_ll_exchange_bench(y, h0, P) for _ in range(3))
        want = (h0.view(torch.int16).to(torch.int32) + steps) & 0xFFFF
        want = torch.where(want >= 0x8000, want - 0x10000, want).to(torch.int16)
        row["ll_ok"] = bool(torch.equal(y[-B:].view(torch.int16), want))
    except RuntimeError as e:
        row["ll_error"], row["ll_ok"] = str(e).splitlines()[0], False
    row["ok"] = row["ok"] and row["ll_ok"]


def cluster_exchange(H, B, S, R, steps: int) -> list[dict]:
    """The cluster tier's DSMEM exchange alone: one row, or none without the
    sm_90 cluster kernels."""
    like = path_info("LSTM", torch.bfloat16, 64, 8, 10)
    if torch.cuda.get_device_capability()[0] < 9 or not like.get("cluster_kernels"):
        print(f"cluster exchange H={H} B={B} S={S} R={R}: skipped (no sm_90 cluster kernels)",
              flush=True)
        return []
    y = torch.zeros(steps * B, H, device=DEV, dtype=torch.bfloat16)
    h0 = torch.randn(B, H, device=DEV, dtype=torch.bfloat16)
    row = {"H": H, "B": B, "S": S, "R": R, "plan": bench_plan(H, B, S, R, cluster=True)}
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
    return [row]


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


def step_push(run, ours, reps, shape) -> tuple[bool | str, float | None]:
    """The cluster tier with every push at the step's end
    (RNNFUSE_CLUSTER_PUSH=step) against the pipelined push it planned:
    whether the outputs agree to the bit (they must: only when peers may
    read h changes) and its time, or why it did not run."""
    def outputs():
        return [t for t in run(ours) if t is not None]
    try:
        pipelined = outputs()
        os.environ["RNNFUSE_CLUSTER_PUSH"] = "step"
        info = path_info(*shape)
        if info["path"] != "persistent-cluster" or (info.get("plan") or {}).get("push") != "step":
            return f"not planned: {info['path']} {info.get('plan')}", None
        same = all(torch.equal(a, b) for a, b in zip(pipelined, outputs()))
        return same, time_ms(lambda: run(ours), reps)
    except Exception as e:  # noqa: BLE001 - the point's own rows must survive
        return f"error: {type(e).__name__}: {e}", None
    finally:
        os.environ.pop("RNNFUSE_CLUSTER_PUSH", None)


def sweep_pins(cell, backward) -> list[tuple[str | None, str]]:
    """(tier, pin) of every partition a sweep tries; the planner says which
    fit (a pin that matches nothing plans per step and is skipped). The
    backward's cluster tier: each R with P free (the model's best cluster
    size) and with P = 8 and 16 (J follows from P)."""
    if backward:
        return ([("grid", f"R={r},J={j},ksplit={s}")
                 for s in SWEEP_KSPLIT for j in bwd_units(s) for r in SWEEP_R]
                + [("cluster", f"R={r}" + (f",P={p}" if p else ""))
                   for p in (None,) + SWEEP_CLUSTER for r in SWEEP_R])
    j_max = 32 // (4 if cell == "LSTM" else 3)  # layout.h kRows / G
    units = (j_max, j_max // 2)
    # A cluster may have fewer CTAs than the 8 or 16 the planner tries (GRU
    # H=512: 13), so each (R, J) also runs with P free: the planner's best size.
    # Slice groups (cluster_layout.h) where they fit, with P free: the
    # latency model and in-order issue disagree on what they save
    # (benchmarks/results/slice-groups_2026-11-29/), so the sweep times them.
    return ([("cluster", f"R={r},J={j}" + (f",P={p}" if p else ""))
             for p in (None,) + SWEEP_CLUSTER for j in units for r in SWEEP_R]
            + [("cluster", f"R={r},J={j},group={g}")
               for g in SWEEP_GROUPS for j in units for r in SWEEP_R]
            + [("grid", f"R={r},J={j}") for j in units + FWD_WIDE_UNITS for r in SWEEP_R])


@contextlib.contextmanager
def pinned(tier, pin, backward):
    """The planner pinned to `pin` (and `tier`, when given) inside, for the
    backward's plans or the forward's."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(env("RNNFUSE_PERSISTENT_BWD_PIN" if backward
                                else "RNNFUSE_PERSISTENT_PIN", pin))
        if tier:
            stack.enter_context(env("RNNFUSE_PERSISTENT_BWD_TIER" if backward
                                    else "RNNFUSE_PERSISTENT_TIER", tier))
        yield


def bits_group(plan: dict):
    """Partitions whose outputs must be equal to the bit: the forward's all
    (None); the grid backward's per K split; the cluster backward's per
    cluster size (its P sources' partial sums over K = G*J each)."""
    if plan.get("pass") != "backward":
        return None
    if plan["tier"] == "cluster":
        return ("cluster", plan["P"])
    return ("grid", plan.get("ksplit"))


def plan_key(plan: dict) -> str:
    """A plan's partition, whatever pin produced it."""
    return json.dumps({k: v for k, v in plan.items() if k not in ("pin", "reason")}, sort_keys=True)


def sweep_candidates(shape, backward) -> list[tuple[str | None, str, dict]]:
    """(tier, pin, plan) of each distinct persistent partition the pins give."""
    seen, out = set(), []
    for tier, pin in sweep_pins(shape[0], backward):
        with pinned(tier, pin, backward):
            info = path_info(*shape)
        path, plan = ((info["backward_path"], info["backward_plan"]) if backward
                      else (info["path"], info["plan"]))
        if not path.startswith("persistent-") or plan_key(plan) in seen:
            continue
        seen.add(plan_key(plan))
        out.append((tier, pin, plan))
    return out


def sweep(cell, dtype, H, B, T, reps) -> list[dict]:
    with tf32_off_for(dtype):
        return _sweep(cell, dtype, H, B, T, reps)


def _sweep(cell, dtype, H, B, T, reps) -> list[dict]:
    import rnnfuse
    torch.manual_seed(0)
    ours = (rnnfuse.LSTM if cell == "LSTM" else rnnfuse.GRU)(H, H, device=DEV, dtype=dtype)
    x = torch.randn(T, B, H, device=DEV, dtype=dtype)
    grad = torch.randn(T, B, H, device=DEV, dtype=dtype)

    def run(m, mode):
        return make_run(m, x, grad, mode)()

    shape = (cell, dtype, H, B, T)
    set_persistent(False)
    base = {mode: run(ours, mode) for mode in ("inference", "training")}
    set_persistent(True)
    rows = []
    try:
        for backward in (False, True):
            mode = "training" if backward else "inference"
            chosen = path_info(*shape)["backward_plan" if backward else "plan"]
            first = {}  # per bits_group, the first correct candidate's outputs
            for tier, pin, plan in sweep_candidates(shape, backward):
                row = {"cell": cell, "dtype": str(dtype).replace("torch.", ""), "H": H, "B": B,
                       "T": T, "pass": "backward" if backward else "forward", "pin": pin,
                       "plan": plan, "chosen": plan_key(plan) == plan_key(chosen)}
                try:
                    with pinned(tier, pin, backward):
                        info = path_info(*shape)
                        row["status"], row["agree_max_abs"] = check_persistent(
                            lambda m: run(m, mode), ours, base[mode], info, mode, shape)
                        if row["status"] == "OK":
                            outs = [t for t in run(ours, mode) if t is not None]
                            # An output's sums are the same in every partition
                            # of a group (slice.cuh; the backward's K split or
                            # cluster size reorders them): the same bits, as
                            # the CPU emulators prove.
                            same = first.setdefault(json.dumps(bits_group(plan)), outs)
                            row["bitwise"] = all(torch.equal(a, b) for a, b in zip(same, outs))
                            row["ms"] = time_ms(lambda: run(ours, mode), reps)
                            row["us_per_step"] = row["ms"] * 1e3 / T
                            if plan["tier"] == "grid" and (not backward
                                                           or plan.get("ksplit", 1) > 1):
                                # The same partition with the LL exchange (a
                                # backward: its K split's partial sums; its
                                # forward takes LL too).
                                with env("RNNFUSE_PERSISTENT_EXCHANGE", "ll"):
                                    ll = [t for t in run(ours, mode) if t is not None]
                                    row["ll_bitwise"] = all(
                                        torch.equal(a, b) for a, b in zip(outs, ll))
                                    row["ll_us_per_step"] = time_ms(
                                        lambda: run(ours, mode), reps) * 1e3 / T
                except Exception as e:  # noqa: BLE001 - the other candidates still run
                    row["status"] = f"error: {type(e).__name__}: {e}"
                print(f"sweep {cell} {row['dtype']} H={H} B={B} T={T} {row['pass']} "
                      f"{plan['tier']} {pin}{' (chosen)' if row['chosen'] else ''}: "
                      f"model {plan['us_per_step']:.3f} us/step, measured "
                      f"{row.get('us_per_step', float('nan')):.3f} us/step"
                      + (f" (LL exchange {row['ll_us_per_step']:.3f}, bitwise equal: "
                         f"{row['ll_bitwise']})" if "ll_us_per_step" in row else "")
                      + f", {row['status']}"
                      + ("" if row.get("bitwise", True) else
                         ", outputs DIFFER from another partition's"),
                      flush=True)
                rows.append(row)
    finally:
        set_persistent(False)
    return rows


def sweep_row_ok(row: dict) -> bool:
    """Correct against the per-step path and bitwise equal to the other
    partitions of its bits_group."""
    return (row["status"] == "OK" and row.get("bitwise") is True
            and row.get("ll_bitwise", True) is True)


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
            return make_run(m, x, grad, mode)()
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
                if row["path"] == "persistent-cluster":
                    row["step_push_bitwise"], row["step_push_ms"] = step_push(
                        run, ours, reps, (cell, dtype, H, B, T, bidir))
            row["speedup_vs_cudnn"] = row["cudnn_ms"] / row["persistent_ms"]
            row["us_per_step"] = row["persistent_ms"] * 1e3 / T
        # Where a pass took the cluster tier, the grid tier at the same point
        # for comparison: both passes on it (grid_ms) and, in training, the
        # backward alone (grid_bwd_ms: the forward as planned).
        cluster_bwd = mode == "training" and "cluster" in row["backward_path"]
        shape = (cell, dtype, H, B, T)
        both = ("RNNFUSE_PERSISTENT_TIER", "RNNFUSE_PERSISTENT_BWD_TIER")
        if "cluster" in row["path"] or cluster_bwd:
            outcome = on_grid(run, ours, base, mode, shape, bidir, reps, both)
            if outcome:
                row["grid_status"], row["grid_ms"] = outcome
            if cluster_bwd:
                outcome = on_grid(run, ours, base, mode, shape, bidir, reps, both[1:])
                if outcome:
                    row["grid_bwd_status"], row["grid_bwd_ms"] = outcome
        # Where both passes took the grid tier (the planner's order since the
        # H200 check of 2026-11-30), the cluster tier for comparison, so that
        # every check still times it: both passes, the backward alone, and
        # its push at the step's end.
        elif info.get("cluster_kernels"):
            outcome = on_tier("cluster", run, ours, base, mode, shape, bidir, reps, both)
            if outcome:
                row["cluster_status"], row["cluster_ms"] = outcome
            if mode == "training":
                outcome = on_tier("cluster", run, ours, base, mode, shape, bidir, reps, both[1:])
                if outcome:
                    row["cluster_bwd_status"], row["cluster_bwd_ms"] = outcome
            if mode == "inference" and row.get("cluster_status") == "OK":
                with env("RNNFUSE_PERSISTENT_TIER", "cluster"), bidir_one_op(bidir):
                    row["step_push_bitwise"], row["step_push_ms"] = step_push(
                        run, ours, reps, (cell, dtype, H, B, T, bidir))
        # Where the forward took the grid tier, its exchange through LL words
        # (RNNFUSE_PERSISTENT_EXCHANGE=ll): the same bits, its time.
        if row["path"] == "persistent-grid" and status == "OK":
            for key, var, value in (("ll", "RNNFUSE_PERSISTENT_EXCHANGE", "ll"),
                                    ("spread", "RNNFUSE_PERSISTENT_FLAG_STRIDE", "32")):
                outcome = on_variant(run, ours, mode, shape, bidir, reps, var, value)
                if outcome:
                    row[f"{key}_status"], row[f"{key}_ms"] = outcome
            # What the LL run's backward exchanged through (its plan under
            # the variable): "ll", "flags" (e.g. an odd H) or its tier.
            if mode == "training" and "ll_status" in row:
                with env("RNNFUSE_PERSISTENT_EXCHANGE", "ll"):
                    bwd = path_info(*shape, bidir).get("backward_plan") or {}
                row["ll_backward"] = bwd.get("exchange") or bwd.get("tier", "?")
            # Where a step's time goes (one CTA's trace), flags and LL words.
            if mode == "inference" and not bidir:
                row["phases"] = {x: traced_phases(run, ours, x) for x in ("flags", "ll")}
        # Where a grid backward step's time goes (one CTA's trace), flags and
        # LL words.
        if (mode == "training" and not bidir and status == "OK"
                and row["backward_path"] == "persistent-grid"):
            row["bwd_phases"] = {x: traced_phases(run, ours, x, backward=True)
                                 for x in ("flags", "ll")}
        set_persistent(False)
        print(f"{cell} {row['dtype']} {mode} H={H} B={B} T={T}{' bidirectional' if bidir else ''}: "
              f"cuDNN {row['cudnn_ms']:.3f} ms, "
              f"per-step {row['perstep_ms']:.3f} ms, persistent "
              f"{row.get('persistent_ms', float('nan')):.3f} ms [{row['path']}"
              + (f", backward {row['backward_path']}" if mode == "training" else "")
              + f"] {row['status']}"
              + (f"; grid tier {row.get('grid_ms') or float('nan'):.3f} ms {row.get('grid_status')}"
                 if "grid_status" in row else "")
              + (f"; grid backward {row.get('grid_bwd_ms') or float('nan'):.3f} ms "
                 f"{row.get('grid_bwd_status')}" if "grid_bwd_status" in row else "")
              + (f"; push at the step's end {row.get('step_push_ms') or float('nan'):.3f} ms, "
                 f"bitwise equal: {row['step_push_bitwise']}" if "step_push_bitwise" in row else "")
              + (f"; LL exchange {row.get('ll_ms') or float('nan'):.3f} ms {row['ll_status']}"
                 if "ll_status" in row else "")
              + (f"; flags a line apart {row.get('spread_ms') or float('nan'):.3f} ms "
                 f"{row['spread_status']}" if "spread_status" in row else ""),
              flush=True)
        rows.append(row)
    return rows


# The step trace's spans (csrc/cuda/persistent/args.h TracePhase, and the
# backward's BwdTracePhase), in order: span p ends at phase p + 1's stamp and
# starts at phase p's (phase 0: the step's start).
TRACE_HEADER = 4
FWD_SPANS = ("wait", "gather", "mma", "epilogue", "publish")
BWD_SPANS = ("wait", "gather", "mma", "parts", "epilogue", "publish")


def step_phases(trace: list[int], names: tuple[str, ...] = FWD_SPANS) -> dict | None:
    """The traced CTA's median ns per step phase over the middle half of its
    steps (from clock64 stamps, converted by the CTA's own globaltimer and
    clock64 at its start and end): wait (start -> flags waited: the operand
    loads issued, then the flags' wait; LL: no wait here), gather (-> h, or
    the backward's gate gradients, in shared memory: LL polls its words
    here), mma (-> the first chunk's sums), the backward's parts (-> the K
    split's partial sums published and the other parts' waited for; no
    split: 0), epilogue (-> the last chunk stored), publish (-> the flag
    released), step (start -> the next step's start). `names`: FWD_SPANS or
    BWD_SPANS. None without two traced steps."""
    t0, c0, t1, c1 = trace[:TRACE_HEADER]
    k = len(names) + 1
    steps = [trace[TRACE_HEADER + s * k:TRACE_HEADER + (s + 1) * k]
             for s in range((len(trace) - TRACE_HEADER) // k)]
    steps = [st for st in steps if st[0] != 0]  # steps the CTA processed
    if len(steps) < 2 or c1 <= c0:
        return None
    ns = (t1 - t0) / (c1 - c0)
    first = len(steps) // 4
    spans = {name: [] for name in names + ("step",)}
    for s in range(first, max(first + 1, 3 * len(steps) // 4)):
        st = steps[s]
        for p, name in enumerate(names, 1):
            spans[name].append((st[p] - st[p - 1]) * ns)
        if s + 1 < len(steps):
            spans["step"].append((steps[s + 1][0] - st[0]) * ns)
    return {name: statistics.median(v) for name, v in spans.items() if v} | {
        "steps": len(steps), "ns_per_cycle": ns}


def traced_phases(run, ours, exchange: str, backward: bool = False) -> dict | str:
    """One call with CTA 0 traced (RNNFUSE_PERSISTENT_TRACE_CTA=0) and the
    exchange given: the step_phases of its forward (or, backward=True, of its
    backward: `run` must train), or why there are none (traces left from
    before are taken first, so a call that traced nothing says so)."""
    take = torch.ops.rnnfuse.persistent_take_trace
    like = torch.empty(0, device=DEV)
    try:
        for either in (False, True):
            with contextlib.suppress(RuntimeError):
                take(like, either)
        with env("RNNFUSE_PERSISTENT_TRACE_CTA", "0"), env("RNNFUSE_PERSISTENT_EXCHANGE", exchange):
            run(ours)
            torch.cuda.synchronize()
            trace = take(like, backward).tolist()
        return (step_phases(trace, BWD_SPANS if backward else FWD_SPANS)
                or "no two traced steps")
    except Exception as e:  # noqa: BLE001 - the point's own rows must survive
        return f"error: {type(e).__name__}: {e}"


def on_variant(run, ours, mode, shape, bidir, reps, var, value
               ) -> tuple[str, float | None] | None:
    """(status, ms) of the point with one exchange variable set, the rest as
    planned: RNNFUSE_PERSISTENT_EXCHANGE=ll (the grid forward's h through LL
    words; csrc/persistent/ll_layout.h GridLl) or RNNFUSE_PERSISTENT_FLAG_STRIDE=32
    (every grid kernel's step flags a 128-byte line apart); None where the
    forward then is not on the grid tier with that exchange. Either moves the
    same data in the same order, so the outputs (and gradients) must equal
    the plain flag exchange's to the bit: "OK", else "WRONG: ..." (or the
    launch counters' complaint, as check_persistent words it)."""
    with bidir_one_op(bidir):
        flags = [t for t in run(ours) if t is not None]
        with env(var, value):
            info = path_info(*shape, bidir)
            exchange = "ll" if var == "RNNFUSE_PERSISTENT_EXCHANGE" else "flags"
            if info["path"] != "persistent-grid" or (info.get("plan") or {}).get("exchange") != exchange:
                return None
            before, _ = launch_counts(*shape)
            got = [t for t in run(ours) if t is not None]
            torch.cuda.synchronize()
            after, _ = launch_counts(*shape)
            want, _ = planned_launches(info, mode)
            if after - before != want:
                return f"WRONG: {after - before} persistent launches, expected {want}", None
            if len(got) != len(flags) or not all(torch.equal(a, b) for a, b in zip(flags, got)):
                worst = max((a.float() - b.float()).abs().max().item() for a, b in zip(flags, got))
                return f"WRONG: outputs differ from the flag exchange's (max {worst:.3g})", None
            return "OK", time_ms(lambda: run(ours), reps)


def on_tier(tier, run, ours, base, mode, shape, bidir, reps,
            tier_vars) -> tuple[str, float | None] | None:
    """(status, ms) of the point with `tier_vars` set to `tier` (the
    bidirectional layer as one op, as the point runs it): the status as
    check_persistent gives it, the time where it is OK; None where the
    passes those variables restrict (the forward's: RNNFUSE_PERSISTENT_TIER;
    the backward's, in training: RNNFUSE_PERSISTENT_BWD_TIER) are not on
    that tier, or none of them is persistent (nothing to compare)."""
    with contextlib.ExitStack() as stack:
        for var in tier_vars:
            stack.enter_context(env(var, tier))
        stack.enter_context(bidir_one_op(bidir))
        info = path_info(*shape, bidir)
        paths = ([info["path"]] if "RNNFUSE_PERSISTENT_TIER" in tier_vars else []) + (
            [info["backward_path"]]
            if mode == "training" and "RNNFUSE_PERSISTENT_BWD_TIER" in tier_vars else [])
        persistent = [p for p in paths if p.startswith("persistent-")]
        if not persistent or any(p != f"persistent-{tier}" for p in persistent):
            return None
        status, _ = check_persistent(run, ours, base, info, mode, shape)
        return status, (time_ms(lambda: run(ours), reps) if status == "OK" else None)


def on_grid(run, ours, base, mode, shape, bidir, reps, tier_vars):
    """on_tier on the grid tier."""
    return on_tier("grid", run, ours, base, mode, shape, bidir, reps, tier_vars)


# What the check measures, in order: (the result list it adds rows to, the
# function's arguments). Each item runs once; a process whose CUDA context an
# item broke stops after it and a fresh one goes on with the next.
ITEMS = ([("exchange", e) for e in EXCHANGE] + [("cluster_exchange", c) for c in CLUSTER_EXCHANGE]
         + [("points", p) for p in POINTS] + [("sweep", s) for s in SWEEPS])


def run_item(kind, spec, args) -> list[dict]:
    if kind == "exchange":
        return exchange(*spec, steps=args.steps)
    if kind == "cluster_exchange":
        return cluster_exchange(*spec, steps=args.steps)
    if kind == "sweep":
        return sweep(*spec, reps=args.reps)
    return point(*spec, reps=args.reps)


def item_name(kind, spec) -> str:
    return f"{kind} {'/'.join(str(x).replace('torch.', '') for x in spec)}"


def new_result() -> dict:
    return {"device": torch.cuda.get_device_name(), "exchange": [], "cluster_exchange": [],
            "points": [], "sweep": [], "errors": [], "next": 0, "restarts": 0}


def print_plans() -> None:
    for cell, dtype, H, B, T, bidir in POINTS:
        set_persistent(True)
        with tf32_off_for(dtype):
            print(f"plan {cell} {dtype} H={H} B={B}{' bidirectional' if bidir else ''}: "
                  f"{path_info(cell, dtype, H, B, T, bidir)}", flush=True)
    set_persistent(False)


def measure(args) -> int:
    """Items args.start.. in this process, the JSON rewritten after each: 0
    when all ran, 3 when one broke the CUDA context (result "next": where a
    fresh process goes on)."""
    import rnnfuse.ops  # noqa: F401
    path = Path(args.json)
    result = json.loads(path.read_text()) if args.start > 0 else new_result()
    if args.start == 0:
        print_plans()
    for k in range(args.start, len(ITEMS)):
        kind, spec = ITEMS[k]
        try:
            result[kind] += run_item(kind, spec, args)
        except Exception as e:  # noqa: BLE001 - record and go on to the next item
            result["errors"].append(f"{item_name(kind, spec)}: {type(e).__name__}: {e}")
            print(f"persist_check {item_name(kind, spec)} FAILED: {e}", flush=True)
        broken = cuda_context_error()
        if broken:
            result["errors"].append(f"{item_name(kind, spec)} broke the CUDA context: {broken}")
        result["next"] = k + 1
        path.write_text(json.dumps(result, indent=1) + "\n")
        if broken:
            print(f"persist_check: {item_name(kind, spec)} broke the CUDA context ({broken}); "
                  f"the rest in a fresh process", flush=True)
            return 3
    return 0


def passed(result: dict) -> bool:
    return bool(not result["errors"] and all(r["ok"] for r in result["exchange"])
                and all(r["ok"] for r in result["cluster_exchange"])
                and result["points"] and all(r["status"] == "OK" for r in result["points"])
                and all(r.get("grid_status", "OK") == "OK" for r in result["points"])
                and all(r.get("grid_bwd_status", "OK") == "OK" for r in result["points"])
                and all(r.get("cluster_status", "OK") == "OK" for r in result["points"])
                and all(r.get("cluster_bwd_status", "OK") == "OK" for r in result["points"])
                and all(r.get("ll_status", "OK") == "OK" for r in result["points"])
                and all(r.get("spread_status", "OK") == "OK" for r in result["points"])
                and all(step_push_ok(r.get("step_push_bitwise", True)) for r in result["points"])
                and all(sweep_row_ok(r) for r in result.get("sweep", [])))


def step_push_ok(outcome) -> bool:
    """A step-push comparison passes when bitwise equal or not planned (the
    planner may prefer the grid tier then); different outputs or an error
    fail the check."""
    return outcome is True or (isinstance(outcome, str) and outcome.startswith("not planned"))


def spawn_measure(argv, start: int, timeout: float):
    """A fresh process measuring items start..; its exit status, or
    "deadline" when it was stopped at the timeout."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--start", str(start)]
    try:
        return subprocess.run(cmd, timeout=max(timeout, 1.0)).returncode
    except subprocess.TimeoutExpired:
        return "deadline"


def supervise(args, argv, spawn=spawn_measure) -> int:
    """Run the items in child processes, a fresh one after an item that broke
    the CUDA context or killed its process, until all ran or --deadline-s."""
    t0 = time.monotonic()
    path = Path(args.json)
    path.unlink(missing_ok=True)
    start, restarts = 0, 0
    while True:
        rc = spawn(argv, start, args.deadline_s - (time.monotonic() - t0))
        if not path.exists():
            print(f"persist_check: the measuring process wrote nothing (exit {rc})", flush=True)
            return 1
        result = json.loads(path.read_text())
        if rc not in (0, 3, "deadline") and result["next"] < len(ITEMS):
            # The process died inside item `next` (the JSON holds those before it).
            name = item_name(*ITEMS[result["next"]])
            result["errors"].append(f"{name}: the measuring process died (exit {rc})")
            print(f"persist_check: {name} killed its process (exit {rc}); the rest in a fresh one",
                  flush=True)
            result["next"] += 1
            path.write_text(json.dumps(result, indent=1) + "\n")
            rc = 3
        if rc != 3 or result["next"] >= len(ITEMS) or time.monotonic() - t0 >= args.deadline_s:
            break
        start, restarts = result["next"], restarts + 1
    left = ITEMS[result["next"]:]
    if any(kind != "sweep" for kind, _ in left):
        result["errors"].append("not run (deadline): " + ", ".join(item_name(*i) for i in left))
    elif left:  # the sweep ranks partitions; a deadline that cuts it fails nothing
        result["not_run"] = [item_name(*i) for i in left]
    result["restarts"] = restarts
    result["seconds"] = time.monotonic() - t0
    path.write_text(json.dumps(result, indent=1) + "\n")
    ok = passed(result)
    print(f"persist_check: {'OK' if ok else 'FAILED'} in {result['seconds']:.0f} s"
          f" ({restarts} restart{'s' if restarts != 1 else ''})", flush=True)
    return 0 if ok else 1


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--steps", type=int, default=20000, help="steps of the exchange runs")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--deadline-s", type=float, default=3600.0,
                    help="start no measuring process after this; stop one still running")
    ap.add_argument("--start", type=int, default=None,
                    help="(internal) measure items START.. in this process")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("persist_check: no CUDA device", file=sys.stderr)
        return 2
    if args.start is None:
        return supervise(args, argv)
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
