"""The grid tier's LL exchanges on a GPU (RNNFUSE_PERSISTENT_EXCHANGE=ll): the
forward's h through LL words, and the backward's gate gradients and K-split
partial sums as LL words. Either moves the same values in the same order as the flags, so
every output and gradient must equal the flag exchange's bit for bit, each
in one persistent launch of the plan that says so. The fibers prove the
protocol on the CPU (test_persistent_simt_ll.py, test_persistent_simt_ll_bwd.py);
this is the hardware's word.
"""
from __future__ import annotations

import pytest
import torch

import rnnfuse
from test_cuda_ops import BF16, DEVICE, F16, F32, tf32
from test_cuda_persistent import _layer_bwd_on_gpu, path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture
def grid(monkeypatch):
    monkeypatch.setenv("RNNFUSE_PERSISTENT", "1")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_TIER", "grid")
    monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_TIER", "grid")


def assert_same_bits(a, b, label):
    for k, (x, y) in enumerate(zip(a, b)):
        assert x is not None and torch.equal(x, y), (
            f"{label} out{k}: max {(x.float() - y.float()).abs().max().item():.3e}")


@pytest.mark.parametrize("mode, dtype, allow_tf32", [("LSTM", F16, False), ("GRU", BF16, False),
                                                     ("LSTM", F32, True), ("GRU", F32, False)],
                         ids=["lstm-fp16", "gru-bf16", "lstm-tf32", "gru-fp32"])
def test_ll_forward_gives_the_flags_bits(mode, dtype, allow_tf32, grid, monkeypatch):
    """A packed batch (shrinking) through a bidirectional two-layer module:
    outputs and every gradient with LL words equal the flags'."""
    torch.manual_seed(3)
    H, T, lengths = 64, 9, [9, 7, 7, 4, 2, 1]
    with tf32(allow_tf32):
        assert path(mode, dtype, H, len(lengths), T)["plan"].get("exchange") == "flags"
        m = getattr(rnnfuse, mode)(16, H, num_layers=2, bidirectional=True).to(DEVICE, dtype)
        x = torch.randn(T, len(lengths), 16, device=DEVICE, dtype=dtype)
        outs = {}
        for exchange in ("flags", "ll"):
            monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", exchange)
            assert path(mode, dtype, H, len(lengths), T)["plan"].get("exchange") == exchange
            xi = x.clone().requires_grad_()
            packed = torch.nn.utils.rnn.pack_padded_sequence(xi, lengths)
            out, _ = m(packed)
            y, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
            m.zero_grad()
            y.float().square().sum().backward()
            outs[exchange] = [y.detach(), xi.grad] + [p.grad.clone() for p in m.parameters()]
        assert_same_bits(outs["flags"], outs["ll"], f"{mode} {dtype}")


@pytest.mark.parametrize("dtype, allow_tf32", [(BF16, False), (F32, False)], ids=["bf16", "fp32"])
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_ll_partial_sums_give_the_flags_bits(mode, dtype, allow_tf32, grid, monkeypatch):
    """The backward pinned to K splits of 2 and 4 (two 32-row chunks a step):
    with the gate gradients and partial sums as LL words, one persistent
    launch whose plan says so, and the flags' bits."""
    H, B, T = 256, 40, 9
    with tf32(allow_tf32):
        for S, J in ((2, 32), (4, 64)):
            monkeypatch.setenv("RNNFUSE_PERSISTENT_BWD_PIN", f"J={J},ksplit={S},R=1")
            outs = {}
            for exchange in ("flags", "ll"):
                monkeypatch.setenv("RNNFUSE_PERSISTENT_EXCHANGE", exchange)
                q = path(mode, dtype, H, B, T)["backward_plan"]
                assert q["tier"] == "grid" and q["ksplit"] == S, q
                assert (q["exchange"], q["partials"]) == (exchange, exchange), q
                outs[exchange], n, _ = _layer_bwd_on_gpu(mode, dtype, H, B, T, seed=S)
                assert n == 1, f"S={S} {exchange}: {n} persistent launches"
            assert_same_bits(outs["flags"], outs["ll"], f"{mode} {dtype} S={S}")
