"""The cache of the CPU's large per-call buffers (csrc/cpu/buffer_cache.h,
rnnfuse.cpu_cache_info / empty_cpu_cache): blocks are reused across calls, a
reused block's old contents never reach a result, the limit (and turning the
cache off) is honoured, and what comes out of it is an ordinary tensor.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import rnnfuse

# T * B rows of 4H fp32 gates: the workspace (5H) and x_proj (4H) are several
# MB, y over 1 MB, so every large buffer of a call goes through the cache.
T, B, I, H = 40, 32, 64, 256


def _pair(seed=0):
    torch.manual_seed(seed)
    ref = torch.nn.LSTM(I, H)
    ours = rnnfuse.LSTM(I, H)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _train_step(module, x):
    x = x.clone().requires_grad_(True)
    y, (h, c) = module(x)
    (y.square().sum() + h.sum() + c.sum()).backward()
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad(set_to_none=True)
    return [y.detach(), h.detach(), c.detach()] + grads


def test_blocks_are_reused_and_old_contents_never_reach_a_result():
    ref, ours = _pair()
    x = torch.randn(T, B, I)
    expected = _train_step(ref, x)
    # Fill the cache with blocks full of NaN: a call on NaN input writes NaN
    # through y, the workspace, x_proj and every gradient buffer.
    _train_step(ours, torch.full_like(x, float("nan")))
    before = rnnfuse.cpu_cache_info()
    assert before["cached_bytes"] > 0, before
    got = _train_step(ours, x)
    after = rnnfuse.cpu_cache_info()
    print("cache before", before, "after", after)
    assert after["hits"] > before["hits"], (before, after)
    for g, e in zip(got, expected):
        assert not g.isnan().any()
        err = (g - e).abs().max().item()
        print(f"max |rnnfuse - torch.nn| {err:.2e}")
        # fp32 against torch.nn's fp32: both within a few ulp of the exact
        # result, accumulated over T steps.
        torch.testing.assert_close(g, e, rtol=2e-4, atol=2e-5)
    # The same call again, on reused blocks: bitwise the same result.
    again = _train_step(ours, x)
    for a, g in zip(again, got):
        assert torch.equal(a, g)


def test_empty_cpu_cache_returns_the_free_blocks():
    _, ours = _pair()
    with torch.no_grad():
        ours(torch.randn(T, B, I))
    assert rnnfuse.cpu_cache_info()["cached_bytes"] > 0
    rnnfuse.empty_cpu_cache()
    assert rnnfuse.cpu_cache_info()["cached_bytes"] == 0


def test_an_output_from_the_cache_is_an_ordinary_resizable_tensor():
    _, ours = _pair()
    with torch.no_grad():
        y, _ = ours(torch.randn(T, B, I))
    assert y.untyped_storage().nbytes() >= 1 << 20  # came from the cache
    head = y[:2].clone()
    y.resize_(2 * T, B, H)  # a larger storage from the same allocator
    assert torch.equal(y[:2], head)
    y.resize_(1, B, H)
    assert torch.equal(y[0], head[0])


_CHILD = r"""
import sys, torch, rnnfuse
torch.manual_seed(0)
ref = torch.nn.LSTM(%(I)d, %(H)d); ours = rnnfuse.LSTM(%(I)d, %(H)d)
ours.load_state_dict(ref.state_dict())
x = torch.randn(%(T)d, %(B)d, %(I)d)
with torch.no_grad():
    for _ in range(3):
        y, _ = ours(x)
info = rnnfuse.cpu_cache_info()
torch.save({"y": y, "info": info}, sys.argv[1])
"""


def _child(tmp_path, env_value):
    out = tmp_path / "out.pt"
    env = dict(os.environ)
    env.pop("RNNFUSE_CPU_CACHE_MB", None)
    if env_value is not None:
        env["RNNFUSE_CPU_CACHE_MB"] = env_value
    proc = subprocess.run([sys.executable, "-c", _CHILD % dict(T=T, B=B, I=I, H=H), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    return proc, out


def test_the_limit_and_turning_the_cache_off(tmp_path):
    results = {}
    for value in (None, "0", "4"):
        proc, out = _child(tmp_path, value)
        assert proc.returncode == 0, proc.stderr
        results[value] = torch.load(out)
        print(value, results[value]["info"])
    default, off, small = results[None], results["0"], results["4"]
    assert default["info"]["hits"] > 0
    assert default["info"]["limit_bytes"] > 0
    # Off: nothing kept, nothing served from it.
    assert off["info"] == {"cached_bytes": 0, "limit_bytes": 0, "hits": 0, "misses": 0}
    # 4 MB: never holds more than that.
    assert small["info"]["limit_bytes"] == 4 << 20
    assert small["info"]["cached_bytes"] <= 4 << 20
    # Where the memory came from never changes a result.
    assert torch.equal(default["y"], off["y"]) and torch.equal(default["y"], small["y"])


@pytest.mark.parametrize("value", ["-5", "lots", "12MB"])
def test_a_bad_limit_is_a_clear_error(tmp_path, value):
    proc, _ = _child(tmp_path, value)
    assert proc.returncode != 0
    assert "RNNFUSE_CPU_CACHE_MB must be >= 0" in proc.stderr
