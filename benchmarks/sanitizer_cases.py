"""Small rnnfuse CUDA workloads for compute-sanitizer.

  compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/sanitizer_cases.py
  compute-sanitizer --tool racecheck --error-exitcode 1 python benchmarks/sanitizer_cases.py --subset race

Each case runs forward and backward through rnnfuse on CUDA and asserts that
every output and gradient is finite and close to torch.nn computed on the
CPU in float64 (a finite garbage result from reading unwritten memory is as
much a bug as an out-of-bounds access, and memcheck does not see it).
cuDNN is disabled, so the only recurrent kernels the sanitizer sees are
ours (plus cuBLAS GEMMs and ATen's pointwise kernels). Shapes are tiny
(T=5, B=3; one cluster backward case takes B=37, for its reduction's item
count) because the sanitizers slow kernels 10-100x; H=40 is not a
multiple of 32 (the general path), H=64 is (the aligned path), bf16 H=36 is
not a multiple of 8 (rows that are not 16-byte multiples apart and k tails:
the tensor-core tiles stage those element by element beside their 16-byte
loads).

Run it with PYTORCH_NO_CUDA_MEMORY_CACHING=1 (gpu_check.sh does): with the
caching allocator an overrun lands inside a cached block and memcheck cannot
see it.

Bidirectional cases named -1op run each bidirectional layer as one op (on
CUDA one launch per time step for both directions), as the modules do once
rnnfuse._driver.BIDIR_ONE_OP_DEVICES names the device.

Persistent tier: --with-persistent appends cases that run with
RNNFUSE_PERSISTENT=1 and RNNFUSE_PERSISTENT_TIER set to the case's tier,
RNNFUSE_PERSISTENT_BWD_TIER to its backward's (grid unless named "-bwd-cluster")
(and RNNFUSE_PERSISTENT_PIN to its pin, where it has one: slice groups;
RNNFUSE_PERSISTENT_BWD_PIN to its backward pin: wide backward CTAs)
(bf16; grid cases on any sm_80+ GPU, cluster cases where the cluster kernels
exist, skipped elsewhere; each checks that its tier's launches really
happened); --subset persistent runs only those.

Other flags: --list prints the cases; --subset {all,race,persistent}; -k SUBSTR keeps
cases whose name contains SUBSTR; --device cpu runs the same checks on the
CPU kernels (to test this script without a GPU); --deadline-s S starts no
case after S seconds (cases run most-informative first). A case that breaks
the CUDA context (a trap or a fault: every later CUDA call in the process
fails) fails, the script stops with exit 3 and a line "resume with --start
N", and gpu_check.sh goes on in a fresh process from case N.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

_T0 = time.monotonic()  # --deadline-s counts from here, torch's import included

# Run as a script, Python puts benchmarks/ first on sys.path, where our
# env.py, grid.py, timing.py... could shadow other top-level modules: put the
# repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import torch  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

from benchmarks.cuda_health import cuda_context_error  # noqa: E402

T, B, I = 5, 3, 24  # noqa: E741
LENGTHS = [5, 3, 2]  # packed: sorted, distinct, shorter than T; B entries
TOL = {"fp32": 1e-4, "bf16": 5e-2}  # max-abs error relative to the reference's magnitude
DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str  # LSTM, GRU, LSTMCell, GRUCell
    dtype: str
    H: int
    packed: bool = False
    proj: int = 0
    layers: int = 1
    bidirectional: bool = False
    persistent: bool = False  # run with RNNFUSE_PERSISTENT=1
    # RNNFUSE_PERSISTENT_TIER of a persistent case; "cluster-bwd": the cluster
    # backward kernel launched directly with the pin's J and R (not through
    # the planner)
    tier: str = "grid"
    bwd_tier: str = "grid"    # RNNFUSE_PERSISTENT_BWD_TIER of a persistent case
    pin: str = ""             # RNNFUSE_PERSISTENT_PIN of a persistent case ("": the planner's)
    bwd_pin: str = ""         # RNNFUSE_PERSISTENT_BWD_PIN of a persistent case
    one_op: bool = False      # bidirectional layers as one op (one launch per step for both)
    batch: int = 0            # a padded "cluster-bwd" case's batch (0: B)
    exchange: str = "flags"   # RNNFUSE_PERSISTENT_EXCHANGE of a persistent case ("ll": LL words)

    @property
    def name(self) -> str:
        extra = (f"-proj{self.proj}" if self.proj else "") + (f"-L{self.layers}" if self.layers > 1 else "")
        extra += "-bi" if self.bidirectional else ""
        extra += "-1op" if self.one_op else ""
        extra += f"-persistent-{self.tier}" if self.persistent else ""
        extra += f"-bwd-{self.bwd_tier}" if self.persistent and self.bwd_tier != "grid" else ""
        extra += "-" + self.pin.replace("=", "").replace(",", "-") if self.pin else ""
        extra += f"-B{self.batch}" if self.batch else ""
        extra += "-bwd-" + self.bwd_pin.replace("=", "").replace(",", "-") if self.bwd_pin else ""
        extra += "-ll" if self.exchange == "ll" else ""
        layout = "" if self.kind.endswith("Cell") else ("-packed" if self.packed else "-padded")
        return f"{self.kind}-{self.dtype}-H{self.H}{layout}{extra}"


def all_cases() -> list[Case]:
    """Every case, ordered so that a run cut short by --deadline-s has already
    covered each cell, dtype, size class, layout and feature once."""
    first = [Case("LSTM", "fp32", 40), Case("GRU", "bf16", 64, packed=True),
             Case("LSTM", "bf16", 64, packed=True), Case("GRU", "fp32", 40),
             Case("LSTM", "bf16", 40, proj=24), Case("LSTM", "fp32", 40, packed=True, layers=2,
                                                    bidirectional=True),
             Case("GRU", "fp32", 40, packed=True, layers=2, bidirectional=True),
             Case("LSTM", "bf16", 40, packed=True, proj=24, bidirectional=True, one_op=True),
             Case("GRU", "fp32", 40, packed=True, layers=2, bidirectional=True, one_op=True),
             Case("LSTMCell", "bf16", 40), Case("GRUCell", "fp32", 40),
             Case("GRU", "bf16", 36, packed=True),
             Case("LSTM", "bf16", 36, packed=True, bidirectional=True, one_op=True)]
    rest = [Case(k, d, h, packed=p)
            for k in ("LSTM", "GRU") for d in ("fp32", "bf16") for h in (40, 64) for p in (False, True)]
    rest += [Case("LSTM", d, 40, packed=p, proj=24) for d in ("fp32", "bf16") for p in (False, True)]
    rest += [Case(k, "fp32", 40, packed=p, layers=2, bidirectional=True, one_op=o)
             for k in ("LSTM", "GRU") for p in (False, True) for o in (False, True)]
    rest += [Case(k, "bf16", 64, packed=True, bidirectional=True, one_op=True)
             for k in ("LSTM", "GRU")]
    rest += [Case("LSTM", "bf16", 40, packed=True, bidirectional=True, one_op=True),
             Case("GRU", "fp32", 40, packed=True, bidirectional=True, one_op=True)]
    rest += [Case(k, d, 40) for k in ("LSTMCell", "GRUCell") for d in ("fp32", "bf16")]
    return first + [c for c in rest if c not in first]


def race_cases() -> list[Case]:
    """racecheck is slower than memcheck: one aligned and one ragged size per cell."""
    return [Case("LSTM", "bf16", 64), Case("LSTM", "fp32", 40, packed=True),
            Case("GRU", "bf16", 64), Case("GRU", "fp32", 40, packed=True),
            Case("LSTM", "fp32", 40, proj=24),
            Case("LSTM", "bf16", 40, packed=True, bidirectional=True, one_op=True),
            Case("GRU", "fp32", 40, packed=True, bidirectional=True, one_op=True),
            Case("GRU", "bf16", 36, packed=True)]


def persistent_cases() -> list[Case]:
    """The persistent kernels (bf16: taken on any sm_80+ GPU; T=5 >= 3 steps):
    ragged and aligned H, packed, bidirectional, two layers, both cells; fp32
    (TF32 is off here) on the exact-FMA grid kernels; G*H above 2048 in fp32
    (LSTM H=520, GRU H=690): the backward's K split over CTAs."""
    grid = [Case("LSTM", "bf16", 40, packed=True, layers=2, bidirectional=True, persistent=True),
            Case("GRU", "bf16", 64, persistent=True),
            Case("LSTM", "fp32", 520, packed=True, persistent=True),
            Case("LSTM", "fp32", 40, packed=True, bidirectional=True, persistent=True),
            Case("GRU", "fp32", 64, persistent=True),
            Case("LSTM", "bf16", 64, persistent=True),
            Case("GRU", "bf16", 40, packed=True, bidirectional=True, persistent=True),
            # Both directions in one launch (the bidirectional op; row strides).
            Case("LSTM", "bf16", 40, packed=True, bidirectional=True, persistent=True, one_op=True),
            Case("GRU", "fp32", 64, bidirectional=True, persistent=True, one_op=True),
            Case("GRU", "fp32", 690, persistent=True),
            # Backward CTAs of 4 m-tiles (K split 4 ways): MMA, and FMA in 4
            # groups of 64 units, the last with 8 (3 m-tiles of padding). The
            # FMA case's forward: CTAs of 16 units, 3 m-tiles; the other fp32
            # cases' forward runs 2.
            Case("LSTM", "bf16", 64, packed=True, persistent=True, bwd_pin="J=64,ksplit=4"),
            Case("GRU", "fp32", 200, persistent=True, pin="J=16", bwd_pin="J=64,ksplit=4"),
            # Forward CTAs of 16 units: LSTM (4 m-tiles, MMA and FMA), GRU
            # (3; the last CTA 8 units), with MMAs: all of a CTA's m-tiles at
            # once, 2 n-tiles (or 4 FMA columns) a pass.
            Case("LSTM", "bf16", 64, packed=True, persistent=True, pin="J=16,R=1"),
            Case("LSTM", "fp32", 64, packed=True, persistent=True, pin="J=16,R=1"),
            Case("GRU", "bf16", 40, persistent=True, pin="J=16"),
            # The grid forward with h exchanged through LL words: packed (the
            # batch shrinking, and growing in reverse: rows from h0 beside
            # rows from words), two layers, both directions in one launch,
            # CTAs of 16 units, exact fp32 (one row per word).
            Case("LSTM", "bf16", 40, packed=True, layers=2, bidirectional=True, persistent=True,
                 exchange="ll"),
            Case("GRU", "bf16", 40, packed=True, bidirectional=True, persistent=True, one_op=True,
                 exchange="ll"),
            Case("LSTM", "bf16", 64, packed=True, persistent=True, pin="J=16,R=1", exchange="ll"),
            Case("GRU", "fp32", 64, bidirectional=True, persistent=True, one_op=True,
                 exchange="ll"),
            # The grid backward with its gate gradients and K-split partial
            # sums as LL words (4 parts, packed), beside the forward's.
            Case("LSTM", "bf16", 64, packed=True, persistent=True, bwd_pin="J=64,ksplit=4",
                 exchange="ll")]
    # The cluster tier (sm_90): DSMEM pushes, mbarriers, the double buffer;
    # H=40 GRU has a pad element in its last CTA's words.
    cluster = [Case("LSTM", "bf16", 40, packed=True, bidirectional=True, persistent=True,
                    tier="cluster"),
               Case("GRU", "bf16", 40, packed=True, layers=2, persistent=True, tier="cluster"),
               # Both directions' clusters in one launch (the bidirectional op).
               Case("GRU", "bf16", 40, packed=True, bidirectional=True, persistent=True,
                    tier="cluster", one_op=True),
               # Several slices per CTA (25 of 8 units, 4 per CTA in clusters
               # of 7): the pipelined push's stores issued between a slice's
               # gate math and the next MMAs, one slice per bracket, then two
               # (slice groups: each slice in its own accumulators, one tile).
               Case("LSTM", "bf16", 200, packed=True, persistent=True, tier="cluster",
                    pin="P=7,group=1"),
               Case("LSTM", "bf16", 200, packed=True, persistent=True, tier="cluster",
                    pin="P=7,group=2"),
               # Groups of 4 with a short last group (40 slices of 10 units,
               # 5 per CTA: groups of 4 and 1).
               Case("GRU", "bf16", 400, packed=True, persistent=True, tier="cluster",
                    pin="P=8,group=4"),
               # The cluster backward kernel (launched directly): its 4-byte
               # pushes of partial sums to every owner, itself included, and
               # the reduction's reads; M = 1 in clusters of 5 with 2
               # replicas, M = 2 in clusters of 9 with a short last CTA.
               Case("LSTM", "bf16", 40, packed=True, persistent=True, tier="cluster-bwd",
                    pin="J=8,R=2"),
               Case("GRU", "bf16", 200, persistent=True, tier="cluster-bwd", pin="J=24,R=1"),
               # 37 rows x 48 units: 7 reduction items a thread, those past 4
               # loaded in the reduction, a round ahead of their turn.
               Case("LSTM", "bf16", 300, persistent=True, tier="cluster-bwd", pin="J=48,R=1",
                    batch=37),
               # The cluster backward as the driver launches it (the planner's
               # partition): two bidirectional layers, one launch per
               # direction; the bidirectional op's backward, both directions'
               # clusters in one launch where the plan says so.
               Case("LSTM", "bf16", 64, packed=True, layers=2, bidirectional=True,
                    persistent=True, bwd_tier="cluster"),
               Case("GRU", "bf16", 40, packed=True, bidirectional=True, persistent=True,
                    one_op=True, bwd_tier="cluster")]
    return grid + cluster


def _persistent_path(case: Case, directions: int = 1) -> dict:
    import json

    import rnnfuse  # noqa: F401  (loads the ops; a -k run may ask before any case imported it)
    like = torch.empty(1, device="cuda", dtype=DTYPE[case.dtype])
    return json.loads(torch.ops.rnnfuse.recurrence_path(like, case.kind, case.H, B, T, 0, 1,
                                                        directions))


def _persistent_launches() -> tuple[int, int]:
    """(all persistent launches, cluster-tier launches) so far."""
    p = _persistent_path(Case("LSTM", "bf16", 8))
    return p["launches"], p["cluster_launches"]


def skip_reason(case: Case) -> str:
    """Why this GPU cannot run the case ("" if it can)."""
    if (case.persistent and (case.tier.startswith("cluster") or case.bwd_tier == "cluster")
            and torch.cuda.is_available()):
        if torch.cuda.get_device_capability()[0] < 9 or not _persistent_path(case)["cluster_kernels"]:
            return "no sm_90 cluster kernels"
    return ""


def _modules(case: Case, device: str):
    import rnnfuse
    torch.manual_seed(0)
    if case.kind.endswith("Cell"):
        args = (I, case.H)
        kwargs = {}
    else:
        args = (I, case.H)
        kwargs = dict(num_layers=case.layers, bidirectional=case.bidirectional)
        if case.proj:
            kwargs["proj_size"] = case.proj
    ref = getattr(torch.nn, case.kind)(*args, **kwargs).double()
    ours = getattr(rnnfuse, case.kind)(*args, **kwargs)
    ours.load_state_dict(ref.state_dict())
    return ref, ours.to(device=device, dtype=DTYPE[case.dtype])


def _inputs(case: Case):
    gen = torch.Generator().manual_seed(1)
    if case.kind.endswith("Cell"):
        x = torch.randn(B, I, generator=gen, dtype=torch.float64)
    else:
        x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    return x


def _flatten(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if hasattr(out, "data") and hasattr(out, "batch_sizes"):  # PackedSequence
        return [out.data]
    return [t for o in out for t in _flatten(o)]


def _forward_backward(module, x, case: Case, device, dtype):
    """Outputs and gradients (input and parameters) of one forward+backward."""
    x = x.to(device=device, dtype=dtype).requires_grad_(True)
    inp = pack_padded_sequence(x, torch.tensor(LENGTHS)) if case.packed else x
    out = _flatten(module(inp))
    gen = torch.Generator().manual_seed(2)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=torch.float64)
                .to(device=device, dtype=o.dtype)).sum() for o in out)
    loss.backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    return out, grads


def _rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = ours.detach().double().cpu(), ref.detach().double()
    scale = ref.abs().max().item() or 1.0
    return (ours - ref).abs().max().item() / scale


def _cluster_bwd_case(case: Case, device: str) -> float:
    """The cluster backward kernel (persistent_cuda_cluster_*_bwd) with the
    pin's partition, fed a forward made on the CPU in the case's dtype: every
    gradient against the float64 backward of that same forward. With
    --device cpu (the harness's self-check) its CPU emulator stands in."""
    import rnnfuse.ops  # noqa: F401 - registers the ops
    ops = torch.ops.rnnfuse
    part = dict(kv.split("=") for kv in case.pin.split(","))
    J, R, H, dtype = int(part["J"]), int(part["R"]), case.H, DTYPE[case.dtype]
    lstm = case.kind == "LSTM"
    G = 4 if lstm else 3
    gen = torch.Generator().manual_seed(3)

    def rand(*shape, scale=1.0):  # rounded to the case's dtype, kept in float64
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype).double()

    assert not (case.batch and case.packed), "LENGTHS are for B rows: a batch of its own is padded"
    nb = case.batch or B
    bs = torch.tensor([sum(1 for n in LENGTHS if n > t) for t in range(T)]) if case.packed else None
    N = int(bs.sum()) if case.packed else T * nb
    x, w, h0 = rand(N, G * H), rand(G * H, H, scale=H ** -0.5), rand(nb, H, scale=0.5)
    extra = rand(nb, H, scale=0.5) if lstm else rand(G * H, scale=0.3)  # c0, or b_hh
    gy, ghn, gcn = rand(N, H), rand(nb, H), rand(nb, H)
    low = (lambda t: t.to(dtype))  # noqa: E731
    if lstm:
        y, _, _, ws = ops.lstm_fwd(low(x), low(w), None, low(h0), low(extra), bs, False, True)
        r = ops.lstm_bwd(gy, ghn, gcn, w, None, h0, extra, y.double(), ws.double(), bs, False)
        ref = [r[0], r[1], r[3], r[4]]
    else:
        y, _, ws = ops.gru_fwd(low(x), low(w), low(extra), low(h0), bs, False, True)
        ref = list(ops.gru_bwd(gy, ghn, w, extra, h0, y.double(), ws.double(), bs, False))
    d = (lambda t: low(t).to(device))  # noqa: E731
    y, ws = y.to(device), ws.to(device)
    if lstm:
        args = (d(gy), d(ghn), d(gcn), d(w), d(h0), d(extra), y, ws, bs, False, J, R, 2)
        o = (ops.persistent_cuda_cluster_lstm_bwd(*args) if device == "cuda"
             else ops.persistent_emulate_cluster_lstm_bwd(*args, 0))
        out = [o[0], o[1], o[3], o[4]]
    else:
        args = (d(gy), d(ghn), d(w), d(extra), d(h0), y, ws, bs, False, J, R, 2)
        out = list(ops.persistent_cuda_cluster_gru_bwd(*args) if device == "cuda"
                   else ops.persistent_emulate_cluster_gru_bwd(*args, 0))
    if device == "cuda":
        torch.cuda.synchronize()
    worst = 0.0
    for i, (o, r) in enumerate(zip(out, ref)):
        assert o.shape == r.shape and torch.isfinite(o).all(), f"{case.name}: gradient {i}"
        err = _rel_err(o, r)
        assert err <= TOL[case.dtype], f"{case.name}: gradient {i} error {err:.3g} > {TOL[case.dtype]}"
        worst = max(worst, err)
    return worst


def run_case(case: Case, device: str = "cuda") -> float:
    """Run one case; returns its worst relative error; raises AssertionError if off."""
    import os
    if case.tier == "cluster-bwd":
        return _cluster_bwd_case(case, device)
    ref, ours = _modules(case, device)
    x = _inputs(case)
    check_launches = case.persistent and device == "cuda"
    before = _persistent_launches() if check_launches else (0, 0)
    from rnnfuse import _driver
    os.environ["RNNFUSE_PERSISTENT"] = "1" if case.persistent else "0"
    os.environ["RNNFUSE_PERSISTENT_TIER"] = case.tier
    os.environ["RNNFUSE_PERSISTENT_BWD_TIER"] = case.bwd_tier
    os.environ["RNNFUSE_PERSISTENT_PIN"] = case.pin
    os.environ["RNNFUSE_PERSISTENT_BWD_PIN"] = case.bwd_pin
    os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = case.exchange
    one_op_devices = _driver.BIDIR_ONE_OP_DEVICES
    if case.one_op:
        _driver.BIDIR_ONE_OP_DEVICES = one_op_devices | {device}
    try:
        out, grads = _forward_backward(ours, x, case, device, DTYPE[case.dtype])
    finally:
        os.environ["RNNFUSE_PERSISTENT"] = "0"
        os.environ.pop("RNNFUSE_PERSISTENT_PIN", None)
        os.environ.pop("RNNFUSE_PERSISTENT_BWD_PIN", None)
        os.environ.pop("RNNFUSE_PERSISTENT_EXCHANGE", None)
        _driver.BIDIR_ONE_OP_DEVICES = one_op_devices
    if device == "cuda":
        torch.cuda.synchronize()  # attribute any asynchronous fault to this case
    if check_launches:
        os.environ["RNNFUSE_PERSISTENT"] = "1"
        directions = case.layers * (2 if case.bidirectional else 1)
        if case.one_op and case.bidirectional:
            # A bidirectional layer as one op: the launches its plan names
            # (one for both directions, or one each), forward and backward.
            p = _persistent_path(case, directions=2)
            fwd, bwd = p["launches_per_call"], p["backward_launches"]
            want = case.layers * (fwd + bwd)
            want_cluster = case.layers * ((fwd if "cluster" in p["path"] else 0)
                                          + (bwd if "cluster" in p["backward_path"] else 0))
        else:
            p = _persistent_path(case)
            backward = p["backward_path"].startswith("persistent-")
            want = directions * (2 if backward else 1)
            want_cluster = directions * ((p["path"] == "persistent-cluster")
                                         + (p["backward_path"] == "persistent-cluster"))
        # The forward and backward the case ran are the pinned partitions.
        for var, pin, key in (("RNNFUSE_PERSISTENT_PIN", case.pin, "plan"),
                              ("RNNFUSE_PERSISTENT_BWD_PIN", case.bwd_pin, "backward_plan")):
            if not pin:
                continue
            os.environ[var] = pin
            plan = _persistent_path(case)[key]
            os.environ.pop(var)
            for kv in pin.split(","):
                k, v = kv.split("=")
                assert plan.get(k) == int(v), f"{case.name}: {key} {plan}"
        # An LL case's forward planned the LL exchange (the path it ran), and
        # its grid backward too (and, where it splits K, its partial sums).
        if case.exchange == "ll":
            os.environ["RNNFUSE_PERSISTENT_EXCHANGE"] = "ll"
            if case.bwd_pin:
                os.environ["RNNFUSE_PERSISTENT_BWD_PIN"] = case.bwd_pin
            p = _persistent_path(case)
            os.environ.pop("RNNFUSE_PERSISTENT_EXCHANGE")
            os.environ.pop("RNNFUSE_PERSISTENT_BWD_PIN", None)
            assert p["path"] == "persistent-grid" and p["plan"].get("exchange") == "ll", \
                f"{case.name}: {p['plan']}"
            bwd = p.get("backward_plan") or {}
            if bwd.get("tier") == "grid":
                want_partials = "ll" if bwd.get("ksplit", 1) > 1 else "none"
                assert (bwd.get("exchange"), bwd.get("partials")) == ("ll", want_partials), \
                    f"{case.name}: {bwd}"
        os.environ["RNNFUSE_PERSISTENT"] = "0"
        now = _persistent_launches()
        got, got_cluster = now[0] - before[0], now[1] - before[1]
        assert got == want, f"{case.name}: {got} persistent launches, expected {want}"
        assert got_cluster == want_cluster, (f"{case.name}: {got_cluster} cluster-tier launches, "
                                             f"expected {want_cluster}")
    ref_out, ref_grads = _forward_backward(ref, x, case, "cpu", torch.float64)
    worst = 0.0
    for i, (o, r) in enumerate(zip(out + grads, ref_out + ref_grads)):
        assert o is not None, f"{case.name}: tensor {i} has no gradient"
        assert o.shape == r.shape, f"{case.name}: tensor {i} shape {tuple(o.shape)} != {tuple(r.shape)}"
        assert torch.isfinite(o).all(), f"{case.name}: tensor {i} is not finite"
        err = _rel_err(o, r)
        assert err <= TOL[case.dtype], f"{case.name}: tensor {i} error {err:.3g} > {TOL[case.dtype]}"
        worst = max(worst, err)
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subset", choices=("all", "race", "persistent"), default="all")
    ap.add_argument("--with-persistent", action="store_true",
                    help="append the persistent-tier cases (RNNFUSE_PERSISTENT=1)")
    ap.add_argument("-k", dest="keyword", default="", help="keep cases whose name contains this")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: check the harness itself on a machine without a GPU")
    ap.add_argument("--start", type=int, default=0,
                    help="skip the first START cases (an earlier process ran them and broke "
                    "its CUDA context on the last)")
    ap.add_argument("--deadline-s", type=float, default=None,
                    help="start no case after this many seconds from start-up, so the "
                    "process ends by itself and the sanitizer prints its summary "
                    "(a killed run prints none)")
    args = ap.parse_args(argv)
    cases = {"all": all_cases, "race": race_cases, "persistent": persistent_cases}[args.subset]()
    if args.with_persistent and args.subset != "persistent":
        cases = cases + persistent_cases()
    cases = [c for c in cases if args.keyword in c.name]
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("sanitizer_cases: no CUDA device", file=sys.stderr)
        return 2
    # No cuDNN: even a fallback inside rnnfuse must not put cuDNN's kernels
    # under the sanitizer in place of ours.
    torch.backends.cudnn.enabled = False
    torch.backends.cuda.matmul.allow_tf32 = False
    # fp32 then takes the exact FMA tiles and bf16 the tensor-core tiles, so
    # both kernel families run under the sanitizer (TF32 would need a looser
    # tolerance than fp32's).
    torch.backends.cudnn.allow_tf32 = False
    failed = skipped = 0
    cases = cases[args.start:]
    for i, case in enumerate(cases):
        if args.deadline_s is not None and time.monotonic() - _T0 > args.deadline_s:
            skipped += 1
            print(f"skip  {case.name:36s} (deadline)", flush=True)
            continue
        why = skip_reason(case) if args.device == "cuda" else ""
        if why:
            skipped += 1
            print(f"skip  {case.name:36s} ({why})", flush=True)
            continue
        t0 = time.perf_counter()
        try:
            err = run_case(case, args.device)
            print(f"ok    {case.name:36s} max rel err {err:.2e}  {time.perf_counter() - t0:6.2f} s",
                  flush=True)
            case_failed = False
        except Exception as e:  # noqa: BLE001 - report every case, then fail
            case_failed = True
            failed += 1
            print(f"FAIL  {case.name:36s} {type(e).__name__}: {e}", flush=True)
        broken = cuda_context_error()
        if broken:
            # Every later CUDA call here would fail: stop, and say where a
            # fresh process goes on (gpu_check.sh does). The case that broke
            # it fails even if its own checks passed.
            left = len(cases) - i - 1
            failed += not case_failed
            print(f"BROKEN {case.name}: the CUDA context is broken ({broken}); "
                  f"resume with --start {args.start + i + 1}", flush=True)
            print(f"sanitizer_cases: {i + 1 - failed - skipped} passed, {failed} failed, "
                  f"{skipped} skipped (deadline or no cluster kernels); {left} left for a "
                  f"fresh process", flush=True)
            return 3
    print(f"sanitizer_cases: {len(cases) - failed - skipped} passed, {failed} failed, "
          f"{skipped} skipped (deadline or no cluster kernels)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
