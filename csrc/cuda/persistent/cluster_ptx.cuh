// The PTX the cluster tier needs (sm_90): cluster ids, mapa, mbarriers with
// transaction counts, st.async into a peer CTA's shared memory, the cluster
// barrier, and cp.async for staging x_proj. Everything that needs sm_90 is
// compiled only there (__CUDA_ARCH__ >= 900); elsewhere these functions trap,
// and the cluster kernels are never launched there (the planner needs
// cc >= 9.0 and the host checks the kernels carry sm_90 code). RNNFUSE_SIMT
// builds (host execution for the tests, simt.h) take the runtime's versions.
//
// Memory ordering (PTX ISA, st.async and mbarrier): an st.async is a weak
// shared-memory store whose completion performs complete-tx on the mbarrier
// in the destination CTA, with release semantics at cluster scope; a wait
// with try_wait.parity.acquire.cluster that sees the phase complete
// therefore sees every byte that phase counted, and everything the
// producing threads did before their st.async (in particular their reads
// of the buffer they are about to have overwritten). The SASS of this
// exchange is STAS + SYNCS (no MEMBAR); tests/test_persistent_build.py
// checks it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ptx.cuh"

#if defined(RNNFUSE_SIMT) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
#define RNNFUSE_CLUSTER_ARCH 1
#else
#define RNNFUSE_CLUSTER_ARCH 0
#endif

namespace rnnfuse {
namespace persist {

#ifdef RNNFUSE_SIMT
// Host execution (simt.h): the same functions on the fiber runtime's
// clusters, mbarriers, in-flight st.async and deferred cp.async.
inline uint32_t smem_addr(const void* p) { return simt::shared_offset(p); }
inline uint32_t cluster_ctarank() { return simt::cluster_ctarank(); }
inline uint32_t cluster_id_x() { return simt::cluster_id(); }
inline uint32_t mapa_shared(uint32_t addr, uint32_t rank) { return simt::map_shared(addr, rank); }
inline void mbarrier_init_cluster(uint64_t* bars, int n) {
  for (int i = 0; i < n; ++i) simt::mbarrier_init(smem_addr(bars + i), 1);
}
inline void cluster_sync_all() { simt::cluster_sync(); }
inline void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  simt::mbarrier_arrive_expect_tx(smem_addr(bar), bytes);
}
inline bool mbarrier_try_wait_cluster(uint64_t* bar, uint32_t parity) {
  return simt::mbarrier_try_wait_parity(smem_addr(bar), parity);
}
inline void st_async_b32(uint32_t addr, uint32_t v, uint32_t bar) {
  simt::st_async(addr, &v, 4, bar);
}
inline void st_async_v4(uint32_t addr, uint4 v, uint32_t bar) { simt::st_async(addr, &v, 16, bar); }
inline void cp_async_4(void* dst, const void* src) { simt::cp_async(dst, src, 4); }
inline void cp_async_commit() { simt::cp_async_commit(); }
inline void cp_async_wait_prior() { simt::cp_async_wait(1); }
#else

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ uint32_t cluster_ctarank() {
  uint32_t r = 0;
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
#else
  __trap();
#endif
  return r;
}

__device__ __forceinline__ uint32_t cluster_id_x() {
  uint32_t r = 0;
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("mov.u32 %0, %%clusterid.x;\n" : "=r"(r));
#else
  __trap();
#endif
  return r;
}

// The shared::cluster address of `addr` (a shared::cta address) in CTA `rank`.
__device__ __forceinline__ uint32_t mapa_shared(uint32_t addr, uint32_t rank) {
  uint32_t r = 0;
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
#else
  __trap();
#endif
  return r;
}

// Thread 0: two mbarriers, one arrival per phase, made visible to the
// cluster before any peer may complete bytes on them.
__device__ __forceinline__ void mbarrier_init_cluster(uint64_t* bars, int n) {
#if RNNFUSE_CLUSTER_ARCH
  for (int i = 0; i < n; ++i) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bars + i)) : "memory");
  }
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#else
  __trap();
#endif
}

// Every thread of every CTA of the cluster: a cluster-wide barrier (once
// after set-up, once before exit; never in the step loop). The release
// fence is restricted to this CTA's shared memory (a CTA-level MEMBAR, not
// the gpu-scope one a plain release arrive costs): peers' later st.async
// into this CTA cannot be overtaken by its set-up stores (zeroed buffers).
__device__ __forceinline__ void cluster_sync_all() {
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("fence.release.sync_restrict::shared::cta.cluster;\n"
               "barrier.cluster.arrive.relaxed.aligned;\n"
               "barrier.cluster.wait.aligned;\n" ::: "memory");
#else
  __trap();
#endif
}

// The local arrival of a phase, declaring the bytes the peers will complete.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("mbarrier.arrive.expect_tx.relaxed.cta.shared::cta.b64 _, [%0], %1;\n" ::"r"(
                   smem_addr(bar)),
               "r"(bytes)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ bool mbarrier_try_wait_cluster(uint64_t* bar, uint32_t parity) {
  uint32_t done = 0;
#if RNNFUSE_CLUSTER_ARCH
  asm volatile(
      "{\n .reg .pred p;\n"
      " mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2;\n"
      " selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done)
      : "r"(smem_addr(bar)), "r"(parity)
      : "memory");
#else
  __trap();
#endif
  return done != 0;
}

// 4 or 16 bytes into a peer's shared memory (shared::cluster addresses),
// completing them on the peer's mbarrier `bar`.
__device__ __forceinline__ void st_async_b32(uint32_t addr, uint32_t v, uint32_t bar) {
#if RNNFUSE_CLUSTER_ARCH
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.b32 [%0], %1, [%2];\n" ::"r"(
                   addr),
               "r"(v), "r"(bar)
               : "memory");
#else
  __trap();
#endif
}

__device__ __forceinline__ void st_async_v4(uint32_t addr, uint4 v, uint32_t bar) {
#if RNNFUSE_CLUSTER_ARCH
  asm volatile(
      "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, "
      "[%5];\n" ::"r"(addr),
      "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w), "r"(bar)
      : "memory");
#else
  __trap();
#endif
}

// cp.async of 4 bytes global -> shared (sm_80+), and its group bookkeeping.
__device__ __forceinline__ void cp_async_4(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_addr(dst)), "l"(src)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
// All but the most recent group complete (this thread's copies).
__device__ __forceinline__ void cp_async_wait_prior() {
  asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}

#endif  // RNNFUSE_SIMT

// Wait for the phase of parity `parity` to complete; longer than
// watchdog_ns (0: never) traps: a loud launch failure, not a hang.
__device__ __forceinline__ void mbarrier_wait_watchdog(uint64_t* bar, uint32_t parity,
                                                       uint64_t watchdog_ns) {
  if (mbarrier_try_wait_cluster(bar, parity)) return;
  const uint64_t t0 = globaltimer_ns();
  for (uint32_t spin = 1;; ++spin) {
    if (mbarrier_try_wait_cluster(bar, parity)) return;
    if ((spin & 63u) == 0 && watchdog_ns != 0 && globaltimer_ns() - t0 > watchdog_ns) __trap();
  }
}

}  // namespace persist
}  // namespace rnnfuse
