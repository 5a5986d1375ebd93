// Host execution of the persistent kernels' own source, for the tests
// (RNNFUSE_SIMT builds of kernel.cuh / kernel_bwd.cuh: simt_run.cpp; of
// cluster_kernel.cuh: simt_cluster_run.cpp). Every thread of every CTA is
// a fiber (ucontext) on the calling thread; a seeded random scheduler
// resumes them round by round, a random quarter of them sitting each round
// out (a thread may lag any time), and now and then a whole CTA sitting out
// until no other thread can move (its peers run as far ahead as they can). A fiber yields only
// where a GPU thread may wait on others: __syncthreads, the warp collectives
// (mma.sync, __shfl_down_sync: all 32 lanes meet and trade operands), flag
// and mbarrier polls, and the cluster barrier. So the kernels' loops,
// conditions, index arithmetic, barrier placement and flag protocol run as
// written; the CPU emulators (csrc/persistent/emulate*.cpp) run layout.h's
// maps instead of them.
//
// What it catches: wrong indices or loop bounds; a thread reading memory
// another writes without a barrier or flag between them (the results then
// depend on the seed; benchmarks/results/simt-kernels_*/ drops each barrier
// in turn); an unmatched barrier; lanes of a warp diverging at a
// collective; a flag wait that can never be met (an error: the kernel's
// watchdog trap on a virtual clock, or the scheduler's deadlock check).
// For the cluster tier also: an st.async before the peer's mbarrier exists,
// into a CTA that is exiting, or whose bytes no phase ever counted; an
// mbarrier overwritten, or left mid-phase; x_proj read before its cp.async
// landed (simt_selftest.cpp breaks each rule once).
// For the grid tier's exchange through global memory, gpu-scope ordering
// (see "Global memory" below): a read of bytes another CTA stored, or a
// store over bytes another CTA stored or read, that no release -> acquire
// chain (or, within a CTA, barrier) orders after that access is an error,
// whenever it happens; so is a plain store into an exchanged buffer (a
// flag written without release publishes nothing, so its readers fail).
// Shared memory starts as seeded garbage. What it cannot see: the rest of
// the memory model (fibers are otherwise sequentially consistent; plain
// loads of global memory are not checked, so exchanged bytes must be read
// through ld_cg, which ptx.cuh routes here), the hardware beyond the PTX
// ISA's fragment tables coded here, timing.
#pragma once

#ifndef RNNFUSE_SIMT
#error "simt.h is for host builds of the kernels (RNNFUSE_SIMT)"
#endif

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_types.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <vector>

// Bit casts (CUDA's device built-ins), used below too.
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace rnnfuse {
namespace simt {

struct Idx {
  unsigned x, y, z;
};

// The running fiber's coordinates and its CTA's dynamic shared memory.
Idx thread_idx();
Idx block_idx();
unsigned char* shared_memory();

void syncthreads();
// A poll that found nothing new: lets the other fibers run.
void yield_spin();
[[noreturn]] void trap();
uint64_t globaltimer_ns();
// clock64 on the fibers: a count that every call advances (monotonic per
// thread, as an SM's cycle counter is; not a time).
long long cycle_count();

// A warp collective: each of the 32 lanes puts `bytes` (<= 32) of its own
// and gets all 32 lanes' (lane-major, `bytes` apart). The lanes must all
// reach the same collective (tag), as a *_sync instruction requires.
void warp_exchange(const void* mine, void* all, int bytes, int tag);

// ---- Thread-block clusters (the cluster tier, sm_90). CTA i is rank
// i % cluster of cluster i / cluster. Shared-memory addresses are offsets
// into a CTA's dynamic shared memory (shared::cta), with the rank + 1 in
// the top byte for a peer's (shared::cluster, from map_shared).
unsigned cluster_ctarank();
unsigned cluster_id();
uint32_t shared_offset(const void* p);  // __cvta_generic_to_shared
uint32_t map_shared(uint32_t addr, uint32_t rank);  // mapa.shared::cluster
// barrier.cluster arrive + wait: every thread of every CTA of the cluster.
void cluster_sync();
// mbarriers (PTX ISA semantics: pending arrivals and a signed tx-count; a
// phase completes when both reach 0). The state lives beside shared memory
// and is mirrored into the barrier's 8 bytes there, so a kernel that
// overwrites a barrier, or uses one it never initialised, is an error.
void mbarrier_init(uint32_t bar, uint32_t count);
void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes);
// One poll (yields first): whether the phase of parity `parity` completed.
bool mbarrier_try_wait_parity(uint32_t bar, uint32_t parity);
// st.async of `bytes` (4 or 16) to a shared::cluster address, completing
// them on the destination CTA's mbarrier `bar` (a shared::cluster address).
// The bytes are in flight until the scheduler delivers them at a random
// later round; delivery into a CTA that has begun to exit, or bytes still
// in flight when the grid ends, are errors.
void st_async(uint32_t addr, const void* data, int bytes, uint32_t bar);
// cp.async global -> shared: lands at once or only at the wait_group that
// covers it (the seeded scheduler picks), so a read before the wait sees
// garbage. Copies still pending when a thread exits are an error.
void cp_async(void* dst, const void* src, int bytes);
// The same for global memory other CTAs may have stored (the grid tier's
// gathers): the read is load_exchanged's, checked and taken at issue (the
// flag acquire and barrier that order it come before the issue), and lands
// at once or at the covering wait_group.
void cp_async_exchanged(void* dst, const void* src, int bytes);
void cp_async_commit();
void cp_async_wait(int newest_pending);

// ---- Global memory between the CTAs of a grid (the grid tier's flags).
// A launch names its exchanged buffers (run_grid's `exchanged`): bytes CTAs
// store for other CTAs to read in the same launch. Every store into them
// goes through store_exchanged and every read through load_exchanged
// (ptx.cuh's st_exchanged, ld_cg). The model is the PTX memory model's
// release/acquire at gpu scope, with vector clocks over CTAs:
//  - a store is pending until a release (st.release.gpu) by a thread of its
//    CTA that it precedes: in the releasing thread's program order, or
//    before a __syncthreads the releasing thread passed;
//  - an acquire (ld.acquire.gpu) that reads a released flag value makes the
//    releases the releaser had seen visible to the acquiring thread, and a
//    __syncthreads shares what each thread had seen with its whole CTA;
//  - reads are published as stores are (a release after them), so a CTA
//    learns that another has read bytes by acquiring one of its releases;
//  - reading bytes another CTA stored, or storing over bytes another CTA
//    stored or read, without having seen that access so is an error,
//    however long ago it happened; within a CTA, a barrier (or program
//    order) must separate the two;
//  - at the end, bytes of an exchanged buffer that changed without
//    store_exchanged are an error (a plain store the model could not see).
// One thread per CTA releases (each CTA's releases are one sequence).
struct Region {
  void* base;
  size_t bytes;
};
void store_exchanged(void* dst, const void* src, int bytes);
void load_exchanged(void* dst, const void* src, int bytes);  // ld.global.cg
uint32_t acquire_gpu(const unsigned* flag);                   // ld.acquire.gpu (yields first)
void release_gpu(unsigned* flag, uint32_t value);             // st.release.gpu

// LL words (ptx.cuh ll_store8 / ll_load16 / ll_load8): an 8-byte store, a
// 16-byte load of two words or an 8-byte load of one (loads yield first: a
// poll). Aligned, and outside the exchanged buffers (whose rules are
// release/acquire's).
void ll_store(uint64_t* word, uint64_t value);
void ll_load(const uint64_t* words, uint64_t (&out)[2]);
uint64_t ll_load_word(const uint64_t* word);

// The virtual clock's step per idle round for a kernel watchdog of
// `watchdog` ns: a wait that can never end passes it within 64 idle rounds
// (the kernels look at the clock every 64 or 1024 polls).
inline uint64_t idle_step_ns(uint64_t watchdog) { return watchdog / 64 + 1; }

// Runs `body` on ctas x threads fibers (each CTA with smem_bytes of shared
// memory; clusters of `cluster` CTAs) until all return. Raises (TORCH_CHECK)
// on a trap, a fiber that throws, rounds without progress (a deadlock), or
// an mbarrier left mid-phase at the end, or a breach of the global-memory
// rules above. idle_ns: the virtual clock's step per round in which
// nothing progressed (the watchdog's time). exchanged: the launch's
// exchanged global buffers (disjoint).
void run_grid(int ctas, int threads, size_t smem_bytes, uint64_t seed, uint64_t idle_ns,
              const std::function<void()>& body, int cluster = 1,
              const std::vector<Region>& exchanged = {});

// mma.sync on the fibers: the 32 lanes trade fragments and each computes its
// own D elements from the PTX ISA's fragment tables (written out here apart
// from layout.h's maps, so the two check each other), k in order, fp32 adds
// of exact products (16-bit and TF32 operands multiply exactly in fp32).
struct Operands {
  uint32_t a[4], b0, b1;
};
inline float half_bits(uint32_t bits, bool bf16) {
  return bf16 ? __uint_as_float(bits << 16)
              : __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}
// TF32: the tensor cores ignore the low 13 mantissa bits.
inline float tf32_bits(uint32_t bits) { return __uint_as_float(bits & 0xffffe000u); }

template <int K, typename Decode>
inline void mma_run(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1,
                const Decode& decode) {
  const Operands mine{{a[0], a[1], a[2], a[3]}, b0, b1};
  Operands all[32];
  warp_exchange(&mine, all, sizeof(Operands), /*tag=*/2 + K);
  float A[16][K], B[K][8];
  for (int lane = 0; lane < 32; ++lane) decode(all[lane], lane >> 2, lane & 3, A, B);
  const int lane = static_cast<int>(thread_idx().x & 31u), g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; ++i) {  // c_i: row g (+8 for i >= 2), column 2t + (i & 1)
    const int row = g + 8 * (i >> 1), col = 2 * t + (i & 1);
    float s = d[i];
    for (int k = 0; k < K; ++k) s += A[row][k] * B[k][col];
    d[i] = s;
  }
}

// m16n8k16, 16-bit: a_i (register i / 2, low half first) at row g (+8 for
// i in {2,3,6,7}), column 2t + (i & 1) (+8 for i >= 4); b_i at row 2t +
// (i & 1) (+8 for i >= 2), column g.
template <bool BF16>
inline void mma16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_run<16>(d, a, b0, b1,
              [](const Operands& o, int g, int t, float (&A)[16][16], float (&B)[16][8]) {
    for (int i = 0; i < 8; ++i) {
      const uint32_t bits = (o.a[i / 2] >> (16 * (i & 1))) & 0xffffu;
      A[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >> 2)] = half_bits(bits, BF16);
    }
    const uint32_t b[2] = {o.b0, o.b1};
    for (int i = 0; i < 4; ++i) {
      const uint32_t bits = (b[i / 2] >> (16 * (i & 1))) & 0xffffu;
      B[2 * t + (i & 1) + 8 * (i >> 1)][g] = half_bits(bits, BF16);
    }
  });
}

// m16n8k8, TF32: a_i at row g (+8 for odd i), column t (+4 for i >= 2);
// b_i at row t + 4i, column g.
inline void mma_tf32(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  mma_run<8>(d, a, b0, b1,
             [](const Operands& o, int g, int t, float (&A)[16][8], float (&B)[8][8]) {
    for (int i = 0; i < 4; ++i) A[g + 8 * (i & 1)][t + 4 * (i >> 1)] = tf32_bits(o.a[i]);
    B[t][g] = tf32_bits(o.b0);
    B[t + 4][g] = tf32_bits(o.b1);
  });
}

}  // namespace simt
}  // namespace rnnfuse

// The CUDA built-ins the persistent kernels use, on the fibers.
#ifdef __launch_bounds__
#undef __launch_bounds__
#endif
#define __launch_bounds__(...)

namespace rnnfuse {
namespace persist {
using std::max;  // CUDA's device min/max on ints
using std::min;
}  // namespace persist
}  // namespace rnnfuse

#define threadIdx (::rnnfuse::simt::thread_idx())
#define blockIdx (::rnnfuse::simt::block_idx())

inline void __syncthreads() { ::rnnfuse::simt::syncthreads(); }
inline void __nanosleep(unsigned) { ::rnnfuse::simt::yield_spin(); }
[[noreturn]] inline void __trap() { ::rnnfuse::simt::trap(); }


inline float __shfl_down_sync(unsigned mask, float v, unsigned delta) {
  (void)mask;  // the kernels pass the full warp
  float all[32];
  ::rnnfuse::simt::warp_exchange(&v, all, 4, /*tag=*/1);
  const unsigned lane = ::rnnfuse::simt::thread_idx().x & 31u;
  return lane + delta < 32 ? all[lane + delta] : v;
}

inline unsigned __shfl_down_sync(unsigned mask, unsigned v, unsigned delta) {
  (void)mask;
  unsigned all[32];
  ::rnnfuse::simt::warp_exchange(&v, all, 4, /*tag=*/2);
  const unsigned lane = ::rnnfuse::simt::thread_idx().x & 31u;
  return lane + delta < 32 ? all[lane + delta] : v;
}
