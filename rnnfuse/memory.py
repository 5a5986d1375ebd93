"""The cache of the CPU's large per-call buffers (csrc/cpu/buffer_cache.h).

rnnfuse's CPU ops keep the blocks of their large outputs and workspaces (1 MB
and more) when those are freed, and hand them to the next call, as PyTorch's
CUDA caching allocator keeps device memory: a fresh mapping pays a page fault
and a zeroed page per 4 KB on first touch. The cache holds at most
RNNFUSE_CPU_CACHE_MB (read at the first allocation; 0 turns it off), by
default 1/8 of physical memory and at most 1 GiB.
"""
from __future__ import annotations

import torch

from . import ops  # noqa: F401  (loads rnnfuse._C)


def cpu_cache_info() -> dict:
    """What the cache holds: ``cached_bytes`` (free blocks kept for reuse),
    ``limit_bytes``, and the ``hits`` and ``misses`` of its allocations so far."""
    cached, limit, hits, misses = torch.ops.rnnfuse._cpu_cache_info()
    return {"cached_bytes": cached, "limit_bytes": limit, "hits": hits, "misses": misses}


def empty_cpu_cache() -> None:
    """Returns the cache's free blocks to the system (as torch.cuda.empty_cache);
    blocks still in use join the cache when they are freed."""
    torch.ops.rnnfuse._cpu_cache_release()
