// The per-step exchange of the grid tier, shared by the forward kernel and
// the exchange microbenchmark: wait for the replica's flags (acquire, with a
// watchdog), gather h rows through L2 into shared memory, publish (release).
#pragma once

#include "../../persistent/layout.h"
#include "args.h"
#include "ptx.cuh"

namespace rnnfuse {
namespace persist {

// Threads 0..P-1 each wait for one producer of replica r to have published
// `want` steps; then the whole CTA passes a barrier. A wait that exceeds the
// watchdog traps: a loud launch failure instead of a hang.
__device__ __forceinline__ void wait_for_replica(const PersistArgs& a, int r, uint32_t want) {
  const int tid = threadIdx.x;
  if (tid < a.part.ctas) {
    const unsigned* flag = a.flags + a.part.cta_index(r, tid);
    if (ld_acquire_gpu(flag) < want) {
      const uint64_t t0 = globaltimer_ns();
      for (uint32_t spin = 1;; ++spin) {
        if (ld_acquire_gpu(flag) >= want) break;
        if (spin > 32) __nanosleep(40);
        if ((spin & 1023u) == 0 && a.watchdog_ns != 0 && globaltimer_ns() - t0 > a.watchdog_ns) {
          __trap();
        }
      }
    }
  }
  __syncthreads();
}

// hbuf rows n = 0..rows-1 <- h_{t-1} of replica rows g0 + n: the previous
// step's output (y, written by other CTAs: read through L2 only) for rows
// below `carry`, h0 for the rest.
template <typename E>
__device__ __forceinline__ void gather_rows(const PersistArgs& a, const StepInfo& st, int r, int g0,
                                            int rows, E* hbuf) {
  const Partition& p = a.part;
  const int H = p.hidden;
  const int pitch = p.h_pitch(Elem<E>::kBytes);
  const E* y = static_cast<const E*>(a.y);
  const E* h0 = static_cast<const E*>(a.h0);
  if (a.vec16) {
    constexpr int kVec = 16 / Elem<E>::kBytes;
    const int per_row = H / kVec;
    for (int i = threadIdx.x; i < rows * per_row; i += kThreads) {
      const int n = i / per_row, v = i % per_row;
      const int64_t b = p.replica_row(r, g0 + n);
      const E* src = b < st.carry ? y + (st.prev_row0 + b) * H : h0 + b * H;
      const uint4 x = __ldcg(reinterpret_cast<const uint4*>(src) + v);
      *reinterpret_cast<uint4*>(hbuf + n * pitch + v * kVec) = x;
    }
  } else {
    for (int i = threadIdx.x; i < rows * H; i += kThreads) {
      const int n = i / H, k = i % H;
      const int64_t b = p.replica_row(r, g0 + n);
      const E* src = b < st.carry ? y + (st.prev_row0 + b) * H : h0 + b * H;
      hbuf[n * pitch + k] = __ldcg(src + k);
    }
  }
}

}  // namespace persist
}  // namespace rnnfuse
