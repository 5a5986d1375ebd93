// The cluster tier's per-step exchange (cluster_layout.h's protocol),
// shared by the cluster kernel and its microbenchmark: the wait for the
// peers' bytes on one mbarrier, and the push of this CTA's units to every
// peer with st.async. No global memory, no grid-wide flag, no fence.
#pragma once

#include "../../persistent/cluster_layout.h"
#include "cluster_ptx.cuh"

namespace rnnfuse {
namespace persist {

// Thread 0 declares the bytes the peers complete on mbarrier `buf` for this
// step and waits for the phase (watchdog). Every thread flips its copy of
// the parity bits; the caller's __syncthreads then orders the other threads
// after thread 0's acquire.
__device__ __forceinline__ void cluster_wait_step(uint64_t* bars, int buf, uint32_t& parity,
                                                  uint32_t bytes, uint64_t watchdog_ns) {
  if (threadIdx.x == 0) {
    mbarrier_arrive_expect_tx(bars + buf, bytes);
    mbarrier_wait_watchdog(bars + buf, (parity >> buf) & 1u, watchdog_ns);
  }
  parity ^= 1u << buf;
}

// Words [w0, w1) of rows [n0, n1) of CTA c's units, already in its own
// buffer `hbuf` ([hb_rows][pitch]), to the same place in every peer's
// buffer, each store completing its bytes on the peer's copy of mbarrier
// `bar`. Threads take consecutive words of one row for one peer (coalesced
// DSMEM traffic); 16-byte vectors where the range allows. The caller has
// synchronised the CTA after writing those words of `hbuf`.
template <typename E>
__device__ __forceinline__ void cluster_push_range(const ClusterPartition& p, int c,
                                                   const E* hbuf, const uint64_t* bar, int n0,
                                                   int n1, int w0, int w1, int pitch) {
  constexpr int eb = int(sizeof(E));
  const int peers = p.cluster - 1, rows = n1 - n0;
  if (rows <= 0 || w1 <= w0) return;
  const unsigned char* local = reinterpret_cast<const unsigned char*>(hbuf + p.unit_begin(c));
  const uint32_t base = smem_addr(local), bar_local = smem_addr(bar);
  const int row_bytes = pitch * eb;
  if (p.range_vec16(c, w0, w1, eb)) {
    const int vecs = (w1 - w0) / 4;
    const int total = peers * rows * vecs;
    for (int i = threadIdx.x; i < total; i += kThreads) {
      const int v = i % vecs, t = i / vecs, n = n0 + t % rows;
      int q = t / rows;
      q += q >= c;  // peers: every rank but c
      const int off = n * row_bytes + w0 * 4 + v * 16;
      const uint4 val = *reinterpret_cast<const uint4*>(local + off);
      st_async_v4(mapa_shared(base + off, q), val, mapa_shared(bar_local, q));
    }
  } else {
    const int words = w1 - w0;
    const int total = peers * rows * words;
    for (int i = threadIdx.x; i < total; i += kThreads) {
      const int v = i % words, t = i / words, n = n0 + t % rows;
      int q = t / rows;
      q += q >= c;
      const int off = n * row_bytes + (w0 + v) * 4;
      const uint32_t val = *reinterpret_cast<const uint32_t*>(local + off);
      st_async_b32(mapa_shared(base + off, q), val, mapa_shared(bar_local, q));
    }
  }
}

// Rows [0, rows) of all of CTA c's units (the push at a step's end).
template <typename E>
__device__ __forceinline__ void cluster_push(const ClusterPartition& p, int c, const E* hbuf,
                                             const uint64_t* bar, int rows, int pitch) {
  cluster_push_range<E>(p, c, hbuf, bar, 0, rows, 0, p.push_words(c, int(sizeof(E))), pitch);
}

}  // namespace persist
}  // namespace rnnfuse
