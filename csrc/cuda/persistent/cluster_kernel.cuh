// The persistent forward kernel, cluster tier (sm_90): one launch runs a
// layer-direction; one thread-block cluster per batch replica holds all of
// W_hh and exchanges h through distributed shared memory (no global
// memory, no grid-wide flag, no cooperative launch: the hardware
// co-schedules a cluster's CTAs, and replicas never wait on each other).
// Decomposition and protocol: cluster_layout.h (the CPU emulator,
// emulate_cluster.cpp, runs the same functions). Per step, per CTA:
//   1. stage x_proj of the NEXT step into shared memory (cp.async);
//   2. rows that join at this step (reverse packed) take h0;
//   3. thread 0 declares the peers' bytes and waits on mbarrier s & 1;
//   4. per chunk of batch rows, group by group (part.group slices, each in
//      its own accumulator slots): the grid kernel's MMAs (slice.cuh's
//      fragments and order), then the previous group's reduction and gate
//      math from the other partial-sum tile, then the MMAs' sums stored into
//      this group's tile (one barrier per group); h goes to y and into this
//      CTA's own next buffer;
//   5. push this CTA's units of the continuing rows to every peer: group by
//      group, each in the bracket after the one that computed it (so the
//      stores fly while later groups compute), the last group's words of
//      every chunk at the step's end; or all at the step's end
//      (part.slice_push = 0). Either way a peer's phase completes only with
//      bytes sent after this CTA's last read of its current buffer.
// The cell state stays in shared memory for the whole sequence. On sm_80
// the kernel is a trapping stub (never launched there). RNNFUSE_SIMT builds
// run it on the CPU (simt.h, simt_cluster_run.cpp).
#pragma once

#include <type_traits>

#include "../../persistent/cluster_layout.h"
#include "args.h"
#include "cluster_exchange.cuh"
#include "cluster_ptx.cuh"
#include "ptx.cuh"
#include "slice.cuh"

namespace rnnfuse {
namespace persist {

static_assert(kChunkRows <= 4 * 8, "the epilogue's col / chunk by comparisons: quotients up to 3");

// The shared-memory pairs [i_begin, end) of group b's MMAs (mma_group), a
// k-tile step of all GS slices at a time so that each slice's chain
// advances in turn; NT: at most that many n-tiles.
template <typename E, int GS, int NT>
__device__ __forceinline__ void mma_smem_pairs(SliceAcc& acc, const uint4* wsm,
                                               const ClusterPartition& p, int warp, int lane,
                                               const E* hbuf, int pitch, int q0, int n_tiles,
                                               int base, int i_begin, int end, int glen) {
  // One k-tile step per iteration: the kernel has no registers to spare.
#pragma unroll 1
  for (int i0 = i_begin; i0 < end; i0 += GS) {
    const int kt = p.warp_ktile(warp, (i0 - base) / GS);
#pragma unroll
    for (int d = 0; d < GS; ++d) {
      if (d < glen) {
        const uint4 f0 = wsm[p.w_smem_index(warp, i0 + d, 0) + lane];
        const uint4 f1 = wsm[p.w_smem_index(warp, i0 + d, 1) + lane];
        const uint32_t a0[4] = {f0.x, f0.y, f0.z, f0.w};
        const uint32_t a1[4] = {f1.x, f1.y, f1.z, f1.w};
        pair_mma<E, GS, NT>(acc, d, a0, a1, hbuf, pitch, q0, kt, n_tiles, lane);
      }
    }
  }
}

// The register pairs of group b's MMAs (mma_group; compile-time indices);
// NT: at most that many n-tiles.
template <typename E, int GS, int NT>
__device__ __forceinline__ void mma_reg_pairs(SliceAcc& acc, const uint32_t (&wf)[kRegFrags][4],
                                              const ClusterPartition& p, int warp, int lane,
                                              const E* hbuf, int pitch, int q0, int n_tiles,
                                              int base, int end, int glen) {
#pragma unroll
  for (int i = 0; i < kRegPairs; ++i) {
    if (i >= base && i < end && i % GS < glen) {
      pair_mma<E, GS, NT>(acc, i % GS, wf[2 * i], wf[2 * i + 1], hbuf, pitch, q0,
                          p.warp_ktile(warp, (i - base) / GS), n_tiles, lane);
    }
  }
}

// Group b's MMAs (GS slices, glen of them real): its pairs are the run
// [base, base + GS * n_kt) of the warp's pairs, pair i holding slice i % GS's
// k-tile step (i - base) / GS (cluster_layout.h's w_pair; base is a
// multiple of GS, and so is kRegPairs). Register pairs first, then the
// shared-memory ones; a chunk of one n-tile (8 rows per replica, as at the
// published point) takes code that issues only its MMAs, not the other
// slots' predicated ones.
template <typename E, int GS>
__device__ __forceinline__ void mma_group(SliceAcc& acc, const uint32_t (&wf)[kRegFrags][4],
                                          const uint4* wsm, const ClusterPartition& p, int warp,
                                          int lane, const E* hbuf, int pitch, int q0, int n_tiles,
                                          int b, int glen, int n_kt) {
  constexpr int kSlots = kChunkNTiles / GS;
  const int base = b * GS * n_kt, end = base + GS * n_kt;
  const int i_begin = base > kRegPairs ? base : kRegPairs;
  if (kSlots > 1 && n_tiles == 1) {
    mma_reg_pairs<E, GS, 1>(acc, wf, p, warp, lane, hbuf, pitch, q0, n_tiles, base, end, glen);
    mma_smem_pairs<E, GS, 1>(acc, wsm, p, warp, lane, hbuf, pitch, q0, n_tiles, base, i_begin,
                             end, glen);
  } else {
    mma_reg_pairs<E, GS, kSlots>(acc, wf, p, warp, lane, hbuf, pitch, q0, n_tiles, base, end,
                                 glen);
    mma_smem_pairs<E, GS, kSlots>(acc, wsm, p, warp, lane, hbuf, pitch, q0, n_tiles, base,
                                  i_begin, end, glen);
  }
}

template <typename E, Cell CELL>
__global__ void __launch_bounds__(kThreads, 1)
    persist_cluster_kernel(const PersistClusterLaunch launch) {
#if RNNFUSE_CLUSTER_ARCH
  using X = Elem<E>;
  constexpr int eb = X::kBytes;
  constexpr int G = CELL == Cell::LSTM ? 4 : 3;
  RNNFUSE_DYNAMIC_SMEM(smem);
  const int cid = int(cluster_id_x());
  const PersistClusterArgs& a = launch.dir[launch.dir[0].part.cluster_direction(cid)];
  const ClusterPartition& p = a.part;
  const ClusterSmem L = cluster_smem(p, eb, CELL);
  uint4* wsm = reinterpret_cast<uint4*>(smem + L.wsm);
  float* red = reinterpret_cast<float*>(smem + L.red);
  E* hb = reinterpret_cast<E*>(smem + L.hbuf);
  E* xs = reinterpret_cast<E*>(smem + L.xs);
  float* cst = reinterpret_cast<float*>(smem + L.cst);
  float* bias = reinterpret_cast<float*>(smem + L.bias);
  PushSpan* spans = reinterpret_cast<PushSpan*>(smem + L.push);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L.mbar);

  const int c = int(cluster_ctarank()), r = p.cluster_replica(cid);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int H = p.hidden, J = p.units, NG = p.cta_slices(c);
  const int u0 = p.unit_begin(c), span = p.span(c), cpitch = p.slices * p.units;
  const int pitch = p.h_pitch(eb), xp = p.x_pitch(eb), rp = p.red_pitch();
  const int n_kt = p.warp_ktiles(warp);
  const int hb_elems = p.hb_rows * pitch, xs_elems = p.hb_rows * G * xp;
  const int red_floats = kWarps * kRows * rp;
  const E* w = static_cast<const E*>(a.w_hh);
  const E* x_proj = static_cast<const E*>(a.x_proj);
  const E* h0 = static_cast<const E*>(a.h0);
  E* y = static_cast<E*>(a.y);

  // ---- W: this warp's pairs in w_pair's order (group, k-tile, slice); the
  // first kRegPairs in registers, the rest in shared memory; a short last
  // group's holes stay unused (cluster_layout.h).
  const int NB = p.groups(c), n_pairs = NB * p.group * n_kt;
  uint32_t wf[kRegFrags][4];
#pragma unroll
  for (int i = 0; i < kRegPairs; ++i) {
    const int g = p.pair_slice(warp, i);
    if (i < n_pairs && g < NG) {
      const int kt = p.warp_ktile(warp, p.pair_ks(warp, i));
      load_a_frag(p, w, p.slice_of(c, g), kt, 0, lane, wf[2 * i]);
      load_a_frag(p, w, p.slice_of(c, g), kt, 1, lane, wf[2 * i + 1]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) wf[2 * i][k] = wf[2 * i + 1][k] = 0u;
    }
  }
  for (int i = kRegPairs; i < n_pairs; ++i) {
    const int g = p.pair_slice(warp, i), kt = p.warp_ktile(warp, p.pair_ks(warp, i));
    if (g >= NG) continue;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      uint32_t f[4];
      load_a_frag(p, w, p.slice_of(c, g), kt, mt, lane, f);
      wsm[p.w_smem_index(warp, i, mt) + lane] = make_uint4(f[0], f[1], f[2], f[3]);
    }
  }
  for (int i = tid; i < 2 * hb_elems; i += kThreads) hb[i] = X::from_float(0.0f);
  if constexpr (CELL == Cell::GRU) {
    const E* b_hh = static_cast<const E*>(a.b_hh);
    for (int i = tid; i < NG * kRows; i += kThreads) {
      const int64_t row = p.weight_row(p.slice_of(c, i / kRows), i % kRows);
      bias[i] = b_hh != nullptr && row >= 0 ? X::to_float(b_hh[row]) : 0.0f;
    }
  } else {
    for (int i = tid; i < p.hb_rows * span; i += kThreads) {
      const int n = i / span, u = i % span;
      const int64_t b = p.replica_row(r, n);
      cst[n * cpitch + u] = b < p.batch ? a.c_state[b * H + u0 + u] : 0.0f;
    }
  }
  if (tid < NB) spans[tid] = p.push_span(c, tid, eb);
  if (tid == 0) mbarrier_init_cluster(bars, 2);
  cluster_sync_all();  // every peer's mbarriers exist before any st.async

  // x_proj rows [row0 + b] of this CTA's units, for `rows` replica rows, into
  // staging buffer `dst` ([hb_rows][G][xp]); cp.async when rows are whole
  // aligned words, else plain loads.
  auto stage_x = [&](int64_t row0, int rows, E* dst) {
    if (a.x_async) {
      // Words per row padded to a power of two (the padding's indices do
      // nothing), so the split takes a mask and a shift, not a division by
      // the runtime word count, ahead of every step's wait.
      constexpr int kPer = 4 / eb;
      const int wpr = span / kPer, word_bits = ceil_log2(wpr);
      const int total = (rows * G) << word_bits;
      for (int i = tid; i < total; i += kThreads) {
        const int v = i & ((1 << word_bits) - 1), t = i >> word_bits, g = t % G, n = t / G;
        if (v >= wpr) continue;
        const int64_t b = p.replica_row(r, n);
        cp_async_4(dst + (n * G + g) * xp + v * kPer,
                   x_proj + (row0 + b) * a.ld_x + g * H + u0 + v * kPer);
      }
    } else {
      const int total = rows * G * span;
      for (int i = tid; i < total; i += kThreads) {
        const int u = i % span, t = i / span, g = t % G, n = t / G;
        const int64_t b = p.replica_row(r, n);
        dst[(n * G + g) * xp + u] = x_proj[(row0 + b) * a.ld_x + g * H + u0 + u];
      }
    }
  };

  StepCursor cur;
  cur.begin(a.sched);
  if (cur.valid(a.sched)) stage_x(cur.cur.row0, p.replica_rows(r, cur.cur.bs), xs);
  cp_async_commit();
  uint32_t parity = 0;
  for (; cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int buf = cluster_buffer(st.step), nxt = buf ^ 1;
    if (st.bs_next > 0) stage_x(st.next_row0, p.replica_rows(r, st.bs_next), xs + nxt * xs_elems);
    cp_async_commit();  // one group per step, possibly empty
    const int rows = p.replica_rows(r, st.bs);
    if (rows == 0) continue;  // the whole replica idles: no peer sends
    const int carry_rows = p.replica_rows(r, st.carry);
    // Before the wait: after it, its division ran on every step's path.
    const int next_rows = p.replica_rows(r, st.carry_next);
    E* hcur = hb + buf * hb_elems;
    E* hnext = hb + nxt * hb_elems;
    // Rows that start here take h0 (zeros without one): every unit, locally.
    for (int i = tid; i < (rows - carry_rows) * H; i += kThreads) {
      const int n = carry_rows + i / H, k = i % H;
      const int64_t b = p.replica_row(r, n);
      hcur[n * pitch + k] = h0 != nullptr ? h0[b * H + k] : X::from_float(0.0f);
    }
    if (cluster_waits(st, carry_rows)) {
      cluster_wait_step(bars, buf, parity, p.expect_bytes(c, carry_rows, eb), a.watchdog_ns);
    }
    cp_async_wait_prior();  // this step's x_proj (the next step's may still fly)
    __syncthreads();
    const E* xcur = xs + buf * xs_elems;

    for (int q0 = 0; q0 < rows; q0 += p.chunk) {
      const int n_rows = min(p.chunk, rows - q0);
      const int n_tiles = ceil_div(n_rows, 8);
      // This chunk's continuing rows of group b's words, to every peer.
      auto push_group = [&](int b) {
        cluster_push_range<E>(p, c, hnext, bars + nxt, q0, min(q0 + n_rows, next_rows), spans[b],
                              pitch);
      };
      // Bracket b: group b's MMAs (its slices' chains interleaved, each in
      // its own accumulator slots), then group b-1's epilogue from the other
      // tile, then group b's sums into tile b & 1; one barrier between
      // brackets. Group b-2's h is visible to every thread since the last
      // barrier: it leaves first. The sums are stored last, after the
      // epilogue: a warp issues in order, and a store right after the MMAs
      // would hold the epilogue back until the last MMA's result is in.
      // Tile b & 1 was last read by group b-2's epilogue, before the
      // previous barrier. The sums stay live across the epilogue: its slot
      // loop is not unrolled, and GRU unrolls 4 of the 8 partial loads, so
      // that every cluster kernel fits 255 registers without spilling.
      for (int b = 0; b <= NB; ++b) {
        if (p.slice_push && b >= 2) push_group(b - 2);
        SliceAcc acc;
        if (b < NB) {
          zero_acc(acc);
          const int glen = p.group_len(c, b);
          with_constant<4, 2, 1>(p.group, [&](auto gs) {  // 1, 2 or 4: cluster_partition_error
            mma_group<E, decltype(gs)::value>(acc, wf, wsm, p, warp, lane, hcur, pitch, q0,
                                              n_tiles, b, glen, n_kt);
          });
        }
        if (b > 0) {
          // Item e: unit jj of slice d of group b-1, batch row nn of the chunk
          // (tile column d * chunk + nn).
          const float* tile = red + ((b - 1) & 1) * red_floats;
          const int glen = p.group_len(c, b - 1);
#pragma unroll 1
          for (int s = 0; s < kItemSlots; ++s) {
            const int e = tid + s * kThreads;
            const int jj = p.epilogue_unit(e), col = p.epilogue_col(e);
            // col / chunk by comparisons (chunk >= 8, col < kChunkRows = 32: at
            // most 3); a division here sat on every bracket's epilogue path.
            const int d = (col >= p.chunk) + (col >= 2 * p.chunk) + (col >= 3 * p.chunk);
            const int nn = col - d * p.chunk;
            const int gs = (b - 1) * p.group + d;
            const int ju = gs * J + jj, j = u0 + ju;  // = first_unit(slice_of(c, gs)) + jj
            if (e < p.epilogue_items() && d < glen && nn < n_rows && j < H) {
              const int n = q0 + nn;
              const int64_t row = st.row0 + p.replica_row(r, n);
              float sum[G], x[G];
              sum_partials<G, CELL == Cell::GRU ? 4 : kWarps>(tile, kRows, J, jj, col, rp, sum);
#pragma unroll
              for (int k = 0; k < G; ++k) x[k] = X::to_float(xcur[(n * G + k) * xp + ju]);
              E* ws = a.ws != nullptr ? static_cast<E*>(a.ws) + row * (G + 1) * H + j : nullptr;
              float cell = 0.0f, h_prev = 0.0f;
              if constexpr (CELL == Cell::LSTM) cell = cst[n * cpitch + ju];
              if constexpr (CELL == Cell::GRU) h_prev = X::to_float(hcur[n * pitch + j]);
              const float h = cell_item<CELL, G>(x, sum, bias + gs * kRows, J, jj, cell, h_prev,
                                                 ws, H);
              if constexpr (CELL == Cell::LSTM) cst[n * cpitch + ju] = cell;
              const E hv = X::from_float(h);
              y[row * a.ld_y + j] = hv;
              hnext[n * pitch + j] = hv;
            }
          }
        }
        if (b < NB) {
          float* tile = red + (b & 1) * red_floats;
          const int glen = p.group_len(c, b);
          with_constant<4, 2, 1>(p.group, [&](auto gs) {  // 1, 2 or 4: cluster_partition_error
            store_group<decltype(gs)::value>(acc, tile, warp, lane, n_tiles, glen, p.chunk, rp);
          });
        }
        __syncthreads();
      }
    }
    // The last group's words leave only now, after the step's last read of
    // hcur (a later chunk still reads it after an earlier chunk's groups
    // are done): they complete the peers' phase, so no peer can go on to
    // write into hcur (its next-but-one step's buffer) while it is read.
    // (With slice_push = 0: all of this CTA's words.)
    cluster_push_range<E>(p, c, hnext, bars + nxt, 0, next_rows, spans[NB - 1], pitch);
  }
  if constexpr (CELL == Cell::LSTM) {
    for (int i = tid; i < p.hb_rows * span; i += kThreads) {
      const int n = i / span, u = i % span;
      const int64_t b = p.replica_row(r, n);
      if (b < p.batch) a.c_state[b * H + u0 + u] = cst[n * cpitch + u];
    }
  }
  cluster_sync_all();  // no CTA leaves while a peer might still address it
#else
  __trap();  // sm_80 and older: never launched (see launch_persist_cluster)
#endif
}

template <typename E, Cell CELL>
cudaError_t cluster_launch(const PersistClusterLaunch& a, size_t smem, cudaStream_t stream) {
  return launch_clusters(persist_cluster_kernel<E, CELL>, a, a.dir[0].part.cluster,
                         a.directions * a.dir[0].part.cluster_grid(), smem, stream);
}

template <typename E, Cell CELL>
cudaError_t cluster_max_active(int cluster, size_t smem, int* active) {
  cudaLaunchConfig_t cfg;
  cudaLaunchAttribute attr;
  return prepare_cluster_launch(persist_cluster_kernel<E, CELL>, cluster, smem, cfg, attr,
                                active);
}

// One operand type's entry points (instantiated in persist_cluster_<type>.cu).
#define RNNFUSE_PERSIST_CLUSTER_ENTRY_POINTS(E, NAME)                                        \
  cudaError_t launch_persist_cluster_##NAME(Cell cell, const PersistClusterLaunch& a,        \
                                            size_t smem, cudaStream_t stream) {              \
    return cell == Cell::LSTM ? cluster_launch<E, Cell::LSTM>(a, smem, stream)               \
                              : cluster_launch<E, Cell::GRU>(a, smem, stream);               \
  }                                                                                           \
  cudaError_t persist_cluster_max_active_##NAME(Cell cell, int cluster, size_t smem,         \
                                                int* active) {                               \
    return cell == Cell::LSTM ? cluster_max_active<E, Cell::LSTM>(cluster, smem, active)     \
                              : cluster_max_active<E, Cell::GRU>(cluster, smem, active);     \
  }

}  // namespace persist
}  // namespace rnnfuse
