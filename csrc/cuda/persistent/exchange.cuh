// The per-step exchange of the grid tier, shared by the forward kernel and
// the exchange microbenchmark: wait for the replica's flags (acquire, with a
// watchdog), gather h rows through L2 into shared memory, publish (release).
#pragma once

#include "../../persistent/layout.h"
#include "args.h"
#include "ptx.cuh"

namespace rnnfuse {
namespace persist {

// One thread waits until `flag` >= want (acquire). A wait that exceeds
// watchdog_ns (0: never) traps: a loud launch failure instead of a hang.
__device__ __forceinline__ void wait_flag(const unsigned* flag, uint32_t want, uint64_t watchdog_ns) {
  if (ld_acquire_gpu(flag) >= want) return;
  const uint64_t t0 = globaltimer_ns();
  for (uint32_t spin = 1;; ++spin) {
    if (ld_acquire_gpu(flag) >= want) break;
    if (spin > 32) __nanosleep(40);
    if ((spin & 1023u) == 0 && watchdog_ns != 0 && globaltimer_ns() - t0 > watchdog_ns) __trap();
  }
}

// Threads 0..P-1 each wait for one producer of replica r to have published
// `want` steps; then the whole CTA passes a barrier. Args: the forward or
// backward kernel's parameters of one direction (part, flags, watchdog_ns).
template <typename Args>
__device__ __forceinline__ void wait_for_replica(const Args& a, int r, uint32_t want) {
  const int tid = threadIdx.x;
  if (tid < a.part.ctas) wait_flag(a.flags + a.part.cta_index(r, tid), want, a.watchdog_ns);
  __syncthreads();
}

// hbuf rows n = 0..rows-1 <- the exchanged rows of replica rows g0 + n, K
// elements each: for batch rows below `carry` row (carry_row0 + b) of
// `exchanged` (rows ld elements apart; written by other CTAs the step
// before: read through L2 only), for the others row b of `start` (rows K
// apart), or zeros when `start` is null. K: the forward's H; a backward
// part's columns (`exchanged` then points at its first). A thread's index
// splits into (row, piece) by shift and mask, the pieces per row padded to
// a power of two (the padding's indices load nothing): this runs right
// after every step's wait, and a division by the runtime count put about
// 35 dependent instructions ahead of the first load (and one more per
// trip of the compiler's unrolled loop). With 16-byte pieces (vec16) the
// pieces are cp.async copies, all of a thread's in flight at once, waited
// for at the end (ptx.cuh cp_async_exchanged16); the caller's __syncthreads
// then shares them.
template <typename E, typename Part>
__device__ __forceinline__ void gather_rows(const Part& p, int K, const E* exchanged, int64_t ld,
                                            int64_t carry_row0, const E* start, int carry, int r,
                                            int g0, int rows, bool vec16, E* hbuf) {
  const int pitch = p.h_pitch(Elem<E>::kBytes);
  if (vec16) {
    constexpr int kVec = 16 / Elem<E>::kBytes;
    const int per_row = K / kVec, bits = ceil_log2(per_row);
    for (int i = threadIdx.x; i < rows << bits; i += kThreads) {
      const int n = i >> bits, v = i & ((1 << bits) - 1);
      if (v >= per_row) continue;
      const int64_t b = p.replica_row(r, g0 + n);
      const E* src = b < carry ? exchanged + (carry_row0 + b) * ld : start == nullptr ? nullptr : start + b * K;
      uint4* dst = reinterpret_cast<uint4*>(hbuf + n * pitch + v * kVec);
      if (src != nullptr) {
        cp_async_exchanged16(dst, reinterpret_cast<const uint4*>(src) + v);
      } else {
        *dst = make_uint4(0u, 0u, 0u, 0u);
      }
    }
    cp_async_wait_all();
  } else {
    // Element by element (cp.async has no 2-byte copy): kGatherBatch
    // elements a trip, all loaded before the first is stored, so a thread
    // waits one L2 round trip per trip, not per element.
    constexpr int kGatherBatch = 4;
    const int bits = ceil_log2(K), slots = rows << bits;
    for (int i0 = threadIdx.x; i0 < slots; i0 += kGatherBatch * kThreads) {
      E v[kGatherBatch];
#pragma unroll
      for (int u = 0; u < kGatherBatch; ++u) {
        const int i = i0 + u * kThreads, n = i >> bits, k = i & ((1 << bits) - 1);
        v[u] = Elem<E>::from_float(0.0f);
        if (i < slots && k < K) {
          const int64_t b = p.replica_row(r, g0 + n);
          const E* src = b < carry ? exchanged + (carry_row0 + b) * ld : start == nullptr ? nullptr : start + b * K;
          if (src != nullptr) v[u] = ld_cg(src + k);
        }
      }
#pragma unroll
      for (int u = 0; u < kGatherBatch; ++u) {
        const int i = i0 + u * kThreads, n = i >> bits, k = i & ((1 << bits) - 1);
        if (i < slots && k < K) hbuf[n * pitch + k] = v[u];
      }
    }
  }
}

}  // namespace persist
}  // namespace rnnfuse
