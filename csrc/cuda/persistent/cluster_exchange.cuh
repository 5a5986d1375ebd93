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

// Words [s.w0, s.w1) of rows [n0, n1) of CTA c's units, already in its
// own buffer `hbuf` ([hb_rows][pitch]), to the same place in every peer's
// buffer, each store completing its bytes on the peer's copy of mbarrier
// `bar`. Threads take consecutive words of one row for one peer (coalesced
// DSMEM traffic); the span's 16-byte-aligned middle [s.v0, s.v1) as
// vectors, the words around it one by one (cluster_layout.h PushSpan,
// made once per launch: the kernel keeps its CTA's in shared memory). The
// caller has synchronised the CTA after writing those words of `hbuf`.
// A thread's index splits into (peer, row, item) by shifts and masks, the
// items and rows each padded to a power of two (the padding's indices do
// nothing): this runs at the start of every bracket, and a split by the
// runtime counts cost two integer divisions, about 70 mostly dependent
// instructions, ahead of the bracket's MMAs.
template <typename E>
__device__ __forceinline__ void cluster_push_range(const ClusterPartition& p, int c,
                                                   const E* hbuf, const uint64_t* bar, int n0,
                                                   int n1, const PushSpan s, int pitch) {
  constexpr int eb = int(sizeof(E));
  const int peers = p.cluster - 1, rows = n1 - n0;
  const int w0 = s.w0, v0 = s.v0, v1 = s.v1, w1 = s.w1;
  if (rows <= 0 || w1 <= w0) return;
  const unsigned char* local = reinterpret_cast<const unsigned char*>(hbuf + p.unit_begin(c));
  const uint32_t base = smem_addr(local), bar_local = smem_addr(bar);
  const int row_bytes = pitch * eb;
  // Per (peer, row): the vectors, then the words before v0 and after v1.
  const int vecs = (v1 - v0) / 4, head = v0 - w0, items = vecs + head + (w1 - v1);
  const int item_bits = ceil_log2(items), peer_shift = item_bits + ceil_log2(rows);
  for (int i = threadIdx.x; i < peers << peer_shift; i += kThreads) {
    const int v = i & ((1 << item_bits) - 1);
    const int n = n0 + ((i & ((1 << peer_shift) - 1)) >> item_bits);
    if (v >= items || n >= n1) continue;
    int q = i >> peer_shift;
    q += q >= c;  // peers: every rank but c
    if (v < vecs) {
      const int off = n * row_bytes + (v0 + 4 * v) * 4;
      const uint4 val = *reinterpret_cast<const uint4*>(local + off);
      st_async_v4(mapa_shared(base + off, q), val, mapa_shared(bar_local, q));
    } else {
      const int k = v - vecs, word = k < head ? w0 + k : v1 + (k - head);
      const int off = n * row_bytes + word * 4;
      const uint32_t val = *reinterpret_cast<const uint32_t*>(local + off);
      st_async_b32(mapa_shared(base + off, q), val, mapa_shared(bar_local, q));
    }
  }
}

// Rows [0, rows) of all of CTA c's units (the push at a step's end).
template <typename E>
__device__ __forceinline__ void cluster_push(const ClusterPartition& p, int c, const E* hbuf,
                                             const uint64_t* bar, int rows, int pitch) {
  constexpr int eb = int(sizeof(E));
  cluster_push_range<E>(p, c, hbuf, bar, 0, rows, p.word_span(c, 0, p.push_words(c, eb), eb),
                        pitch);
}

}  // namespace persist
}  // namespace rnnfuse
