"""The cluster tier's backward kernel on a GPU (sm_90), launched directly with
a given partition (rnnfuse::persistent_cuda_cluster_{lstm,gru}_bwd; no
planner path takes it yet): the partitions the planner's candidate picks at
the published point and the quick preset's B=64, TF32, packed and reverse
walks, short last CTAs, every m-tile stride (M = 1, 2, 4, 6).

Fed the CPU's forward (y, workspace), every gradient must be
- as close to the float64 reference as the CPU kernel is, plus one operand
  rounding (the emulator's own criterion, assert_rounding_like_cpu);
- within four roundings of the operand type of the CPU emulation of the same
  partition (test_persistent_emulator_cluster_bwd.py): the GPU's
  activations' derivatives may differ from the CPU's in the last bits, a
  wrong owner, source or order would be off by whole sums;
- bit for bit the same run to run.
The CPU proves the protocol (emulator) and the kernel's code (fibers,
test_persistent_simt_cluster_bwd.py); this is the hardware's word.
"""
from __future__ import annotations

import pytest
import torch

from test_cuda_ops import DEVICE
from test_persistent_emulator import EPS, assert_rounding_like_cpu, make_inputs
from test_persistent_emulator_bwd import cast, spec_bwd, with_grads
from test_persistent_emulator_cluster_bwd import emulate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

OPS = torch.ops.rnnfuse
F16, BF16, F32, F64 = torch.float16, torch.bfloat16, torch.float32, torch.float64


def sm90() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


def on_gpu(cell, a, saved, reverse, J, R, eb):
    d = (lambda t: None if t is None else t.to(DEVICE))  # noqa: E731
    y, ws = (d(t) for t in saved)
    if cell == "LSTM":
        out = OPS.persistent_cuda_cluster_lstm_bwd(d(a["gy"]), d(a["ghn"]), d(a["gcn"]), d(a["w"]),
                                                   d(a["h0"]), d(a["c0"]), y, ws, a["bs"], reverse,
                                                   J, R, eb)
        out = [out[0], out[1], out[3], out[4]]
    else:
        out = list(OPS.persistent_cuda_cluster_gru_bwd(d(a["gy"]), d(a["ghn"]), d(a["w"]),
                                                       d(a["b"]), d(a["h0"]), y, ws, a["bs"],
                                                       reverse, J, R, eb))
    torch.cuda.synchronize()
    return [t.cpu() for t in out]


# (cell, dtype, H, B, T, packed, reverse, J, R): the published point's
# candidate (P=16, R=2, M=6, W in shared memory), the quick preset's GRU
# bf16 B=64 candidate (P=8, R=8, M=4), TF32 (P=16, R=4), M=1 (H=45, packed,
# reverse, 3 replicas), M=2 with a short last CTA.
CASES = [
    ("LSTM", F16, 768, 16, 24, False, False, 48, 2),
    ("GRU", BF16, 512, 64, 12, True, True, 64, 8),
    ("LSTM", F32, 512, 64, 8, True, False, 32, 4),
    ("GRU", F16, 45, 37, 10, True, True, 8, 3),
    ("LSTM", BF16, 200, 9, 8, False, True, 24, 1),
]


@pytest.mark.skipif(not sm90(), reason="the cluster kernels need sm_90")
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c)).replace("torch.", ""))
def test_cluster_backward_on_the_gpu(case):
    cell, dtype, H, B, T, packed, reverse, J, R = case
    eb = 4 if dtype == F32 else 2
    a = with_grads(make_inputs(cell, dtype, H, B, T, packed, seed=H + B), cell, dtype, seed=H + B)
    cpu, saved = spec_bwd(cell, a, reverse)
    ref, _ = spec_bwd(cell, cast(a, F64), reverse)
    got = on_gpu(cell, a, saved, reverse, J, R, eb)
    again = on_gpu(cell, a, saved, reverse, J, R, eb)
    emu = emulate(cell, a, saved, reverse, J, R, eb)
    assert_rounding_like_cpu(ref, cpu, got, dtype)
    for k, (g, e, g2) in enumerate(zip(got, emu, again)):
        scale = max(e.double().abs().max().item(), 1e-3)
        err = (g.double() - e.double()).abs().max().item()
        print(f"  out{k}: GPU vs emulator {err:.2e} (scale {scale:.2e})")
        assert err <= 4 * EPS[dtype] * scale, f"out{k}: {err:.3e}"
        assert torch.equal(g, g2), f"out{k}: differs run to run"


@pytest.mark.skipif(not sm90(), reason="the cluster kernels need sm_90")
def test_partitions_it_cannot_run_are_refused():
    a = with_grads(make_inputs("LSTM", F16, 40, 4, 3, False), "LSTM", F16)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="at least two"):
        on_gpu("LSTM", a, saved, False, 40, 1, 2)
    with pytest.raises(RuntimeError, match="elem_bytes"):
        on_gpu("LSTM", a, saved, False, 8, 1, 4)


@pytest.mark.skipif(sm90(), reason="checks the refusal below sm_90")
def test_refused_below_sm90():
    a = with_grads(make_inputs("LSTM", F16, 40, 4, 3, False), "LSTM", F16)
    _, saved = spec_bwd("LSTM", a, False)
    with pytest.raises(RuntimeError, match="cannot run clusters"):
        on_gpu("LSTM", a, saved, False, 8, 1, 2)
