// A cache of the CPU's large per-call buffers (y, the workspace, x_proj, the
// gradients over all rows), kept across calls as PyTorch's CUDA caching
// allocator keeps device memory. A fresh mapping of tens of MB pays a page
// fault and a zeroed page per 4 KB on first touch: on a 2-core VM that was
// 60-110 ms of system time per LSTM training forward at T=100, B=64, H=512
// (65 MB workspace), as long as the step loop's arithmetic. A block freed by
// one call serves the next call's buffer of about its size, already mapped.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace rnnfuse {

// at::empty(sizes, options) for a CPU tensor: blocks of kMinCachedBytes and
// more come from the cache (or, when none fits, a fresh block, 2 MB-aligned
// and advised to use transparent huge pages from 4 MB); smaller ones, and all
// with the cache turned off, from ATen's allocator.
// The tensor is an ordinary resizable CPU tensor whose storage returns its
// block to the cache when freed.
at::Tensor cached_empty_cpu(at::IntArrayRef sizes, const at::TensorOptions& options);

constexpr int64_t kMinCachedBytes = int64_t(1) << 20;

// The cache's limit: RNNFUSE_CPU_CACHE_MB if set (0: keep nothing; freed
// blocks go straight back to the system), else 1/8 of physical memory, at
// most 1 GiB. Read once.
struct BufferCacheInfo {
  int64_t cached_bytes;  // held, free, for reuse
  int64_t limit_bytes;
  int64_t hits;          // allocations served from the cache
  int64_t misses;        // fresh blocks
};
BufferCacheInfo buffer_cache_info();

// Returns every cached (free) block to the system; blocks in use are not
// touched and join the cache when freed, as before.
void release_buffer_cache();

}  // namespace rnnfuse
