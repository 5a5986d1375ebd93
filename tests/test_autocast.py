"""Under torch.autocast the modules follow torch.nn's policy on each device
(rnnfuse/_autocast.py): the same output dtypes, and values within the
precision torch.nn's own path has there.

On the CPU torch.nn mixes precisions inside its native recurrence (autocast
runs its matmuls in the low dtype), while rnnfuse computes the recurrence in
the module's dtype: both are compared with the float32 computation, and
rnnfuse must be at least as close to it as torch.nn (plus a small slack).
"""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from conftest import make_twins, requires_cuda, tensors_of

CPU_CASES = {
    "LSTM": ("LSTM", dict(), False),
    "LSTM-packed": ("LSTM", dict(), True),
    "LSTM-proj": ("LSTM", dict(proj_size=4), False),
    "LSTM-proj-packed": ("LSTM", dict(proj_size=4), True),
    "LSTM-bidir-2layer": ("LSTM", dict(bidirectional=True, num_layers=2), False),
    "GRU": ("GRU", dict(), False),
    "GRU-packed": ("GRU", dict(), True),
    "GRU-bidir-2layer": ("GRU", dict(bidirectional=True, num_layers=2), False),
    "LSTMCell": ("LSTMCell", dict(), False),
    "GRUCell": ("GRUCell", dict(), False),
    # From 16 rows the CPU cells run ATen's GEMMs inside the op, which an
    # enclosing autocast must not recast.
    "LSTMCell-32rows": ("LSTMCell", dict(), False),
    "GRUCell-32rows": ("GRUCell", dict(), False),
}


def _input(mode, packed, dtype, device="cpu", batch=3):
    gen = torch.Generator().manual_seed(0)
    shape = (batch, 8) if mode.endswith("Cell") else (5, batch, 8)
    x = torch.randn(*shape, generator=gen).to(device, dtype)
    return pack_padded_sequence(x, [5, 4, 2]) if packed else x


def _run(module, x, device_type, dtype):
    with torch.autocast(device_type, dtype=dtype):
        return tensors_of(module(x))


@pytest.mark.parametrize("module_dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("case", list(CPU_CASES))
def test_cpu_autocast_bfloat16_follows_torch_nn(case, module_dtype, layer_calls):
    mode, kwargs, packed = CPU_CASES[case]
    plain, fused = make_twins(mode, 8, 16, dtype=module_dtype, **kwargs)
    x = _input(mode, packed, module_dtype, batch=32 if case.endswith("32rows") else 3)
    expected = _run(plain, x, "cpu", torch.bfloat16)
    actual = _run(fused, x, "cpu", torch.bfloat16)
    assert sum(layer_calls.values()) > 0
    reference = tensors_of(fused(x))  # no autocast: the module's own precision
    for i, (e, a, r) in enumerate(zip(expected, actual, reference)):
        assert a.dtype == e.dtype, f"output {i}: {a.dtype}, torch.nn gives {e.dtype}"
        err_ours = (a.double() - r.double()).abs().max().item()
        err_torch = (e.double() - r.double()).abs().max().item()
        print(f"  output {i} {a.dtype}: rnnfuse {err_ours:.2e}  torch.nn {err_torch:.2e}")
        # float64 is never cast: both must equal the plain float64 run.
        bound = 1e-12 if module_dtype == torch.float64 else 2 * err_torch + 1e-3
        assert err_ours <= bound


def _param_grads(module, x, autocast):
    """The parameters' gradients of the sum of every output, forward and
    backward both run inside (or outside) a CPU bfloat16 autocast region."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = sum(o.float().sum() for o in tensors_of(module(x)))
        return torch.autograd.grad(loss, list(module.parameters()))


@pytest.mark.parametrize("case", list(CPU_CASES))
def test_cpu_autocast_backward_inside_region_follows_torch_nn(case, layer_calls):
    # PyTorch advises against a backward inside an autocast region, but
    # torch.nn's runs there; rnnfuse's must too (its ops' ATen GEMMs once
    # raised dtype mismatches there), with torch.nn's gradient dtypes and
    # values as close to the plain run's as torch.nn's.
    mode, kwargs, packed = CPU_CASES[case]
    plain, fused = make_twins(mode, 8, 16, **kwargs)
    x = _input(mode, packed, torch.float32, batch=32 if case.endswith("32rows") else 3)
    expected = _param_grads(plain, x, True)
    actual = _param_grads(fused, x, True)
    assert sum(layer_calls.values()) > 0
    reference = _param_grads(fused, x, False)
    for i, (e, a, r) in enumerate(zip(expected, actual, reference)):
        assert a.dtype == e.dtype, f"grad {i}: {a.dtype}, torch.nn gives {e.dtype}"
        err_ours = (a.double() - r.double()).abs().max().item()
        err_torch = (e.double() - r.double()).abs().max().item()
        print(f"  grad {i} {tuple(a.shape)}: rnnfuse {err_ours:.2e}  torch.nn {err_torch:.2e}")
        assert err_ours <= 2 * err_torch + 1e-3 * (1 + r.abs().max().item())


@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_cpu_autocast_float16_gives_torch_nn_dtypes(mode, layer_calls):
    # torch.nn's oneDNN LSTM cannot build a float16 primitive on many CPUs
    # and raises; rnnfuse computes it. The dtypes follow torch.nn's policy
    # (float16 where oneDNN would run, float32 on the native path).
    plain, fused = make_twins(mode, 8, 16)
    x = _input(mode, False, torch.float32)
    actual = _run(fused, x, "cpu", torch.float16)
    expected_dtype = torch.float16 if mode == "LSTM" else torch.float32
    assert all(a.dtype == expected_dtype for a in actual)
    reference = tensors_of(plain(x))
    for a, r in zip(actual, reference):
        assert (a.float() - r).abs().max().item() < 1e-2
    assert sum(layer_calls.values()) > 0


def test_autocast_on_other_device_type_changes_nothing(layer_calls):
    # CUDA autocast does not touch a CPU module (nor does torch.nn).
    plain, fused = make_twins("GRU", 8, 16)
    x = _input("GRU", False, torch.float32)
    with torch.autocast("cuda", dtype=torch.float16, enabled=torch.cuda.is_available()):
        out = fused(x)[0]
    assert out.dtype == torch.float32
    assert (out - plain(x)[0]).abs().max().item() < 1e-5


@requires_cuda
@pytest.mark.parametrize("autocast_dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "LSTMCell", "GRUCell"])
def test_cuda_autocast_gives_torch_nn_dtypes(mode, autocast_dtype, layer_calls):
    # cuDNN's autocast wrapper casts LSTM/GRU to float16 whatever the
    # autocast dtype; the cells follow the autocast dtype.
    plain, fused = make_twins(mode, 8, 16, device="cuda")
    x = _input(mode, False, torch.float32, device="cuda")
    expected = _run(plain, x, "cuda", autocast_dtype)
    actual = _run(fused, x, "cuda", autocast_dtype)
    assert sum(layer_calls.values()) > 0
    for e, a in zip(expected, actual):
        assert a.dtype == e.dtype
        assert (a.double() - e.double()).abs().max().item() < 2e-2
