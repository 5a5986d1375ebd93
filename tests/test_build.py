"""What the build registered: a CPU kernel for every op always, a CUDA kernel
whenever setup.py found nvcc, and no silent CPU-only build where a CUDA
toolkit is present (unless RNNFUSE_CPU_ONLY asked for one)."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

import rnnfuse.ops  # noqa: F401  (loads rnnfuse._C: registers the kernels)
from rnnfuse import _build_config

OPS = ["lstm_fwd", "lstm_bwd", "gru_fwd", "gru_bwd"]


def _has_kernel(op: str, key: str) -> bool:
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"rnnfuse::{op}", key)


def _cpu_only_requested() -> bool:
    # Same reading of the variable as setup.py.
    return os.environ.get("RNNFUSE_CPU_ONLY", "0") not in ("", "0")


def _nvcc_available() -> bool:
    return shutil.which("nvcc") is not None or os.path.isfile("/usr/local/cuda/bin/nvcc")


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_cpu_kernel(op):
    assert _has_kernel(op, "CPU"), f"rnnfuse::{op} has no CPU kernel"


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_fake_and_autograd_where_expected(op):
    # Fake kernels come from rnnfuse/ops.py (register_fake gives the Meta key).
    assert _has_kernel(op, "Meta"), f"rnnfuse::{op} has no fake (Meta) kernel"
    if op.endswith("_fwd"):
        assert _has_kernel(op, "Autograd"), f"rnnfuse::{op} has no autograd kernel"


@pytest.mark.parametrize("op", OPS)
def test_every_op_has_a_cuda_kernel_when_built_with_cuda(op):
    if not _build_config.WITH_CUDA:
        pytest.skip("rnnfuse._C was built without CUDA")
    assert _has_kernel(op, "CUDA"), f"built with CUDA but rnnfuse::{op} has no CUDA kernel"


def test_build_config_is_consistent():
    assert _build_config.TORCH_VERSION == torch.__version__, (
        f"rnnfuse._C was built against torch {_build_config.TORCH_VERSION}, "
        f"running torch {torch.__version__}: rebuild")
    if _build_config.WITH_CUDA:
        assert _build_config.CUDA_HOME, "WITH_CUDA without a CUDA_HOME"
        assert _build_config.CUDA_ARCH_LIST, "WITH_CUDA without an arch list"
    else:
        for op in OPS:
            assert not _has_kernel(op, "CUDA"), f"CPU-only build but {op} has a CUDA kernel"


def test_cuda_build_when_nvcc_is_available():
    """CI guard: a machine with nvcc must produce a CUDA build."""
    if _cpu_only_requested():
        pytest.skip("RNNFUSE_CPU_ONLY is set: a CPU-only build was asked for")
    if not _nvcc_available():
        pytest.skip("no nvcc on this machine")
    assert _build_config.WITH_CUDA, (
        "nvcc is available but rnnfuse._C was built without CUDA (rebuild without "
        "RNNFUSE_CPU_ONLY, or set RNNFUSE_CPU_ONLY=1 when running the tests)")
