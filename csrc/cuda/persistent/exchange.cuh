// The per-step exchange of the grid tier, shared by the forward kernel and
// the exchange microbenchmark: wait for the replica's flags (acquire, with a
// watchdog), gather h rows through L2 into shared memory, publish (release).
#pragma once

#include "../../persistent/layout.h"
#include "args.h"
#include "ptx.cuh"

#include <cstring>

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
// `want` steps (its flag a.flag_stride words from the last); then the whole
// CTA passes a barrier. Args: the forward or
// backward kernel's parameters of one direction (part, flags, watchdog_ns).
template <typename Args>
__device__ __forceinline__ void wait_for_replica(const Args& a, int r, uint32_t want) {
  const int tid = threadIdx.x;
  if (tid < a.part.ctas) {
    wait_flag(a.flags + a.part.cta_index(r, tid) * a.flag_stride, want, a.watchdog_ns);
  }
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

// ---- The exchange with the flag in the data (ll_layout.h GridLl; the
// forward kernel with PersistArgs::ll set): no flags, no fence, no acquire.

// 16-byte polls a thread keeps in flight (the exact-fp32 kernel's W maps
// leave registers for 4).
constexpr int kLlBatch = 8, kLlBatchFma = 4;

__device__ __forceinline__ uint32_t ll_tag_of(uint64_t w) { return uint32_t(w >> 32); }

// hbuf rows n = 0..n_carry-1 <- LL word rows of one step: `words` points at
// the first column's word of word row 0 (the rows' first), word rows
// `stride` words apart; per_row pairs of words (two columns each, `pairs`
// its divider) per word row; polled until they carry the tag `want`. All of
// a thread's 16-byte polls of a round are in flight at once, and so are its
// re-polls of the pairs not yet written: one round trip after the last word
// lands. A tag past `want` traps (the words were overwritten before this
// CTA read them: the protocol broken). 16-bit elements: a word holds rows 2m
// (low half) and 2m + 1 (high).
// A pair's word offset (below 2^31: ll_layout.h grid_ll_error) and shared
// memory index are computed once a round, stepping (word row, pair) by
// kThreads with a carry (one division a call, one a round): the re-poll
// loop, which runs until the producers' words land, and the stores after
// it, which are on the step's path once they have, only add them to a base
// (with a division per pair, as before, the compiler recomputed every stale
// pair's address in each re-poll, about 20 instructions a pair).
template <typename E, int BATCH>
__device__ __forceinline__ void poll_ll_rows(const uint64_t* words, int stride,
                                             const Divider& pairs, int per_row, int n_carry,
                                             uint32_t want, uint64_t watchdog_ns, E* hbuf,
                                             int pitch) {
  constexpr int kRpw = Elem<E>::kBytes == 2 ? 2 : 1;
  const int total = ((n_carry + kRpw - 1) / kRpw) * per_row;
  const int step_m = pairs.quotient(kThreads), step_v = kThreads - step_m * per_row;
  for (int i0 = threadIdx.x; i0 < total; i0 += BATCH * kThreads) {
    uint32_t off[BATCH];  // pair u: its first word, from `words`
    int dst[BATCH];       // pair u: hbuf index of its row 2m (kRpw 2) or m, column 2v
    uint32_t stale = 0;   // bit u: pair u still to be read with the awaited tag
    uint32_t second = 0;  // bit u: kRpw 2 and row 2m + 1 carried too
    {
      int m = pairs.quotient(i0), v = i0 - m * per_row;
#pragma unroll
      for (int u = 0; u < BATCH; ++u) {
        off[u] = uint32_t(m) * uint32_t(stride) + 2u * uint32_t(v);
        dst[u] = kRpw * m * pitch + 2 * v;
        if (i0 + u * kThreads < total) stale |= 1u << u;
        if (kRpw == 2 && 2 * m + 1 < n_carry) second |= 1u << u;
        v += step_v;
        m += step_m;
        if (v >= per_row) {
          v -= per_row;
          ++m;
        }
      }
    }
    const uint32_t round = stale;
    uint64_t lo[BATCH] = {}, hi[BATCH] = {};  // zeros: never read unloaded
#pragma unroll
    for (int u = 0; u < BATCH; ++u) {
      if ((round >> u & 1u) != 0) ll_load16(words + off[u], lo[u], hi[u]);
    }
    // Every stale pair of the round polled again at once: one round trip
    // after the producers' words land, not one per pair in turn.
    // The checks are predicated, not branches: one trap test a spin.
    const uint64_t t0 = stale != 0 ? globaltimer_ns() : 0;
    for (uint32_t spin = 1;; ++spin) {
      bool overrun = false;  // a tag past `want`: the words overwritten before this read
#pragma unroll
      for (int u = 0; u < BATCH; ++u) {
        const uint32_t lo_tag = ll_tag_of(lo[u]), hi_tag = ll_tag_of(hi[u]);
        const bool polled = (stale >> u & 1u) != 0;
        overrun |= polled && (int32_t(lo_tag - want) > 0 || int32_t(hi_tag - want) > 0);
        if (polled && lo_tag == want && hi_tag == want) stale &= ~(1u << u);
      }
      if (overrun) __trap();
      if (stale == 0) break;
#pragma unroll
      for (int u = 0; u < BATCH; ++u) {
        if ((stale >> u & 1u) != 0) ll_load16(words + off[u], lo[u], hi[u]);
      }
      if ((spin & 1023u) == 0 && watchdog_ns != 0 && globaltimer_ns() - t0 > watchdog_ns) {
        __trap();
      }
    }
#pragma unroll
    for (int u = 0; u < BATCH; ++u) {
      if ((round >> u & 1u) == 0) break;
      const uint32_t d0 = uint32_t(lo[u]), d1 = uint32_t(hi[u]);
      uint32_t* row = reinterpret_cast<uint32_t*>(hbuf + dst[u]);
      if constexpr (kRpw == 2) {
        // Words of columns 2v, 2v + 1: rows 2m (low halves) and 2m + 1 (high).
        row[0] = (d0 & 0xFFFFu) | (d1 << 16);
        if ((second >> u & 1u) != 0) {
          reinterpret_cast<uint32_t*>(hbuf + dst[u] + pitch)[0] = (d0 >> 16) | (d1 & 0xFFFF0000u);
        }
      } else {
        row[0] = d0;
        row[1] = d1;
      }
    }
  }
}

// hbuf rows n = 0..rows-1 <- replica r's local rows g0 + n of h_{t-1}:
// those carried from the step before (local rows below replica_rows(r,
// carry)) from its LL words (poll_ll_rows); the others from h0, or zeros
// (gather_rows). g0 is a multiple of 8, so a gather starts at a word row.
template <typename E, int BATCH>
__device__ __forceinline__ void gather_ll(const PersistArgs& a, int r, const StepInfo& st, int g0,
                                          int rows, E* hbuf) {
  const Partition& p = a.part;
  const GridLl& x = a.ll_layout;
  const int pitch = p.h_pitch(Elem<E>::kBytes), H = p.hidden;
  const int n_carry = min(max(x.replica_rows(r, st.carry) - g0, 0), rows);
  if (n_carry < rows) {
    gather_rows<E>(p, H, static_cast<const E*>(a.y), a.ld_y, st.prev_row0,
                   static_cast<const E*>(a.h0), /*carry=*/0, r, g0 + n_carry, rows - n_carry,
                   a.vec16 != 0, hbuf + n_carry * pitch);
  }
  if (n_carry == 0) return;
  constexpr int kRpw = Elem<E>::kBytes == 2 ? 2 : 1;
  poll_ll_rows<E, BATCH>(a.ll + x.word((st.step - 1) & a.ll_parity_mask, r, g0 / kRpw, 0), H,
                         x.pairs, H / 2, n_carry, GridLl::tag(st.step - 1), a.watchdog_ns, hbuf,
                         pitch);
}

// The epilogue's store of one item's value into LL words: `words` points at
// the item's column's word of word row 0, word rows `stride` words apart;
// local row n = chunk row nn + the chunk's first, `valid` as the epilogue's
// condition, tag in the high 4 bytes. Called by every lane of the warp (a
// shuffle): with 16-bit elements the even row's lane takes its neighbour's
// value (row n + 1, the same column: items are row-minor) and stores both;
// a row past the chunk's n_rows leaves its half zero.
template <typename E>
__device__ __forceinline__ void store_ll_item(uint64_t* words, int64_t stride, uint32_t tag, int n,
                                              int nn, int n_rows, E h, bool valid) {
  uint32_t mine;
  if constexpr (Elem<E>::kBytes == 2) {
    unsigned short bits;
    memcpy(&bits, &h, 2);
    mine = bits;
  } else {
    memcpy(&mine, &h, 4);
  }
  const uint64_t high = uint64_t(tag) << 32;
  if constexpr (Elem<E>::kBytes == 2) {
    const uint32_t next = __shfl_down_sync(0xffffffffu, mine, 1);
    if (valid && (nn & 1) == 0) {
      const uint32_t pair = mine | (nn + 1 < n_rows ? next << 16 : 0u);
      ll_store8(words + int64_t(n / 2) * stride, high | pair);
    }
  } else {
    if (valid) ll_store8(words + int64_t(n) * stride, high | mine);
  }
}

// The forward epilogue's publication of one item's h (unit j of the
// replica's local row n) into the LL words of step st.step (store_ll_item).
template <typename E>
__device__ __forceinline__ void publish_ll(const PersistArgs& a, int r, const StepInfo& st, int n,
                                           int nn, int n_rows, int j, E h, bool valid) {
  store_ll_item<E>(a.ll + a.ll_layout.word(st.step & a.ll_parity_mask, r, 0, j),
                   a.ll_layout.hidden, GridLl::tag(st.step), n, nn, n_rows, h, valid);
}

}  // namespace persist
}  // namespace rnnfuse
