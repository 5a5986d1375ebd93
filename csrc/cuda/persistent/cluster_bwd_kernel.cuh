// The persistent backward kernel, cluster tier (sm_90): one launch walks a
// layer-direction's steps in reverse; one thread-block cluster per batch
// replica. cluster_bwd_layout.h's reduce-scatter (its CPU emulator,
// emulate_cluster_bwd.cpp, runs the same decomposition): CTA c makes its
// own units' gate gradients, multiplies them by their W_hh rows for every
// output unit, and pushes the fp32 partial dh to each unit's owner (itself
// included) with st.async. Per step, per CTA:
//   1. thread 0 declares the bytes of the step's partial sums and waits on
//      mbarrier s & 1 (rows that continue from the step before);
//   2. the reduction: per owned (row, unit), dh = grad_y + the carried dh +
//      the P sources' sums in source order, then gate_math.h's derivatives
//      (a thread's first 4 items' operands, grad_y, the saved activations
//      and the carried state, are loaded before the wait of 1., which hides
//      their latency behind it; later items' loads fly a round of the
//      reduction ahead); the gate gradients go to global memory (dW_hh
//      and dx GEMMs) and into this CTA's B operand;
//   3. per pass of continuing rows: every warp's m-tile chains (k-tile by
//      k-tile, its M slots interleaved; registers first, then shared
//      memory), then each sum pushed to its unit's owner.
// M (the layout's mstride) is a template parameter, so a register
// fragment's accumulator slot is known at compile time. On sm_80 the
// kernel is a trapping stub. RNNFUSE_SIMT builds run it on the CPU (simt.h,
// simt_cluster_bwd_run.cpp).
#pragma once

#include "../../gate_math.h"
#include "../../persistent/cluster_bwd_layout.h"
#include "args.h"
#include "cluster_exchange.cuh"
#include "cluster_ptx.cuh"
#include "ptx.cuh"
#include "slice.cuh"

namespace rnnfuse {
namespace persist {

// n-tiles per pass for M m-tile slots: the accumulators fill kBwdAccFloats
// (cluster_bwd_layout.h make_cluster_bwd_partition).
template <int M>
constexpr int bwd_pass_ntiles() {
  constexpr int n = kBwdAccFloats / (M * kCElems);
  return n < 1 ? 1 : n > kChunkNTiles ? kChunkNTiles : n;
}

// Warp fragment (k-tile kt, m-tile mt) of CTA c: A[row][col] =
// W_hh[own_weight_row(c, kt * kk + col)][mt * 16 + row], zero past H.
template <typename E>
__device__ __forceinline__ void load_bwd_a_frag(const ClusterBwdPartition& p, const E* w, int c,
                                                int kt, int mt, int lane, uint32_t (&f)[4]) {
  constexpr int kk = Elem<E>::kBytes == 2 ? 16 : 8;
  const int H = p.hidden;
  pack_a_frag<E>(lane, f, [&](int r, int col) {
    const int j = mt * 16 + r;
    const int64_t row = p.own_weight_row(c, kt * kk + col);
    return row >= 0 && j < H ? elem_bits(w[row * H + j]) : 0u;
  });
}

template <typename E, Cell CELL, int M>
__global__ void __launch_bounds__(kThreads, 1)
    persist_cluster_bwd_kernel(const PersistClusterBwdLaunch launch) {
#if RNNFUSE_CLUSTER_ARCH
  using X = Elem<E>;
  constexpr int eb = X::kBytes;
  constexpr int G = CELL == Cell::LSTM ? 4 : 3;
  constexpr int kActs = CELL == Cell::LSTM ? 5 : 4;  // saved per (row, unit)
  constexpr int NT = bwd_pass_ntiles<M>();
  RNNFUSE_DYNAMIC_SMEM(smem);
  const int cid = int(cluster_id_x());
  const PersistClusterBwdArgs& a = launch.dir[launch.dir[0].part.cluster_direction(cid)];
  const ClusterBwdPartition& p = a.part;
  const ClusterBwdSmem L = cluster_bwd_smem(p, eb, CELL);
  uint4* wsm = reinterpret_cast<uint4*>(smem + L.wsm);
  float* recv = reinterpret_cast<float*>(smem + L.recv);
  E* dg = reinterpret_cast<E*>(smem + L.dg);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + L.mbar);

  const int c = int(cluster_ctarank()), r = p.cluster_replica(cid);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int H = p.hidden, J = p.units, u0 = p.unit_begin(c), span = p.span(c);
  const int dgp = p.dg_pitch(eb), n_frags = p.warp_frags();
  const E* w = static_cast<const E*>(a.w_hh);

  // ---- W_hh rows of this CTA's gates for the warp's m-tiles: fragment f
  // (k-tile f / M, slot f % M); the first kRegFrags in registers, the rest
  // in shared memory; holes (slots past the last m-tile) stay zero.
  uint32_t wf[kRegFrags][4];
#pragma unroll
  for (int f = 0; f < kRegFrags; ++f) {
    if (f < n_frags && p.real_mslot(warp, f % M)) {
      load_bwd_a_frag(p, w, c, f / M, p.warp_mtile(warp, f % M), lane, wf[f]);
    } else {
#pragma unroll
      for (int k = 0; k < 4; ++k) wf[f][k] = 0u;
    }
  }
  for (int f = kRegFrags; f < n_frags; ++f) {
    if (!p.real_mslot(warp, f % M)) continue;
    uint32_t v[4];
    load_bwd_a_frag(p, w, c, f / M, p.warp_mtile(warp, f % M), lane, v);
    wsm[p.w_smem_index(warp, f) + lane] = make_uint4(v[0], v[1], v[2], v[3]);
  }
  for (int i = tid; i < p.hb_rows * dgp; i += kThreads) dg[i] = X::from_float(0.0f);
  if (tid == 0) mbarrier_init_cluster(bars, 2);
  cluster_sync_all();  // every peer's mbarriers exist before any st.async

  const E* grad_y = static_cast<const E*>(a.grad_y);
  const E* ws = static_cast<const E*>(a.ws);
  E* xch = static_cast<E*>(a.xch);
  const uint32_t recv_base = smem_addr(recv), bar_base = smem_addr(bars);
  uint32_t parity = 0;
  // A (unit, row) item's operands that no other CTA writes: grad_y, the
  // saved activations, c_prev (LSTM) or h_prev (GRU), and the carried dh
  // (and dc) state, which only this thread writes (the item's thread is the
  // same every step). The 16-bit ones stay in their type until the
  // reduction uses them: converted where they were loaded, each item's
  // conversion waited there for its load, and the next item's loads went
  // out only then (a global round trip per item ahead of the step's wait).
  constexpr int kPrev = kActs + 1;  // e[]: grad_y, the activations, c_prev or h_prev
  struct ItemOperands {
    E e[kActs + 2];
    float dh, dc;
  };
  const auto load_item = [&](const StepInfo& st, int n, int j, ItemOperands& in) {
    const int64_t b = p.replica_row(r, n), row = st.row0 + b;
    in.e[0] = grad_y[row * a.ld_grad_y + j];
#pragma unroll
    for (int g = 0; g < kActs; ++g) in.e[1 + g] = ws[row * kActs * H + g * H + j];
    in.dh = a.dh_state[b * H + j];
    in.dc = CELL == Cell::LSTM ? a.dc_state[b * H + j] : 0.0f;
    if constexpr (CELL == Cell::LSTM) {
      in.e[kPrev] = b < st.carry_next ? ws[(st.next_row0 + b) * 5 * H + 4 * H + j]
                                      : static_cast<const E*>(a.c0)[b * H + j];
    } else {
      in.e[kPrev] = b < st.carry_next ? static_cast<const E*>(a.y)[(st.next_row0 + b) * a.ld_y + j]
                                      : static_cast<const E*>(a.h0)[b * H + j];
    }
  };
  StepCursor cur;
  for (cur.begin(a.sched); cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int rows = p.replica_rows(r, st.bs);
    if (rows == 0) continue;  // the whole replica idles: no peer sends
    const int carry_rows = p.replica_rows(r, st.carry);
    // Before the wait, like rows and carry_rows (replica_rows divides by R).
    const int next_rows = p.replica_rows(r, st.carry_next);
    const int buf = cluster_buffer(st.step), nxt = buf ^ 1;
    // A thread's items are slots k = 0, 1, ... (item tid + k * kThreads).
    // Slots [k0, k0 + kWindow) sit in win[]: the first kWindow are loaded
    // before the wait, so their global-memory latency overlaps it (every
    // item, up to rows * J = kWindow * kThreads); the reduction takes
    // kItemSlots slots a round and then loads the slots kWindow further on,
    // which fly while the next round reduces. (An item loaded only when its
    // turn came was one dependent round trip each: 2 a step at H = 512,
    // B = 256 in 16 bits, a quick-preset point.)
    constexpr int kWindow = 2 * kItemSlots;
    const int slots = ceil_div(rows * J, kThreads);
    const auto load_slot = [&](int k, ItemOperands& in) {
      const int e = tid + k * kThreads, n = p.item_row(e), jj = e - n * J;
      if (n < rows && jj < span) load_item(st, n, u0 + jj, in);
    };
    ItemOperands win[kWindow];
#pragma unroll
    for (int k = 0; k < kWindow; ++k) load_slot(k, win[k]);
    if (cluster_waits(st, carry_rows)) {
      cluster_wait_step(bars, buf, parity, p.expect_bytes(c, carry_rows), a.watchdog_ns);
    }
    // Thread 0's acquire reaches every thread; the step before's MMAs are
    // done with the B operand this step overwrites.
    __syncthreads();

    // ---- the reduction and the derivatives (item e = n * J + jj)
    const float* rb = recv + buf * p.recv_floats();
    const auto reduce_item = [&](int n, int jj, const ItemOperands& in) {
      const int j = u0 + jj;
      const int64_t b = p.replica_row(r, n);
      const int64_t row = st.row0 + b;
      float rec = 0.0f;
      if (n < carry_rows) {
        for (int src = 0; src < p.ctas; ++src) {
          const float v = rb[p.recv_index(src, n, jj)];
          rec = src == 0 ? v : rec + v;
        }
      }
      const float dh = X::to_float(in.e[0]) + in.dh + rec;
      float out[G];
      if constexpr (CELL == Cell::LSTM) {
        a.dh_state[b * H + j] = 0.0f;
        const LstmGrads<float> d =
            lstm_cell_backward(lstm_saved_acts(in.e + 1), X::to_float(in.e[kPrev]), dh, in.dc);
        a.dc_state[b * H + j] = d.dc_prev;
        out[0] = d.di;
        out[1] = d.df;
        out[2] = d.dg;
        out[3] = d.d_o;
      } else {
        const GruGrads<float> d =
            gru_cell_backward(gru_saved_acts(in.e + 1), X::to_float(in.e[kPrev]), dh);
        a.dh_state[b * H + j] = d.dh_prev;
        E* dx = static_cast<E*>(a.dx) + row * a.ld_dx + j;
        dx[0] = X::from_float(d.dr);
        dx[H] = X::from_float(d.dz);
        dx[2 * H] = X::from_float(d.dn);
        out[0] = d.dr;
        out[1] = d.dz;
        out[2] = d.dhn;
      }
#pragma unroll
      for (int g = 0; g < G; ++g) {
        const E v = X::from_float(out[g]);
        xch[row * a.ld_xch + g * H + j] = v;
        dg[n * dgp + g * J + jj] = v;
      }
    };
    for (int k0 = 0; k0 < slots; k0 += kItemSlots) {
#pragma unroll
      for (int k = 0; k < kItemSlots; ++k) {
        const int e = tid + (k0 + k) * kThreads, n = p.item_row(e), jj = e - n * J;
        if (n < rows && jj < span) reduce_item(n, jj, win[k]);
      }
#pragma unroll
      for (int k = 0; k < kWindow - kItemSlots; ++k) win[k] = win[k + kItemSlots];
      if (k0 + kWindow < slots) {
#pragma unroll
        for (int k = kWindow - kItemSlots; k < kWindow; ++k) load_slot(k0 + kItemSlots + k, win[k]);
      }
    }
    __syncthreads();  // the B operand is complete

    // ---- the MMA passes over the rows that continue into the next step
    for (int q0 = 0; q0 < next_rows; q0 += p.chunk) {
      const int n_rows = min(p.chunk, next_rows - q0), n_tiles = ceil_div(n_rows, 8);
      float acc[M][NT][4];
#pragma unroll
      for (int i = 0; i < M; ++i)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
          for (int k = 0; k < 4; ++k) acc[i][nt][k] = 0.0f;
      // Register fragments: f = kt * M + i, both compile-time.
#pragma unroll
      for (int f = 0; f < kRegFrags; ++f) {
        if (f < n_frags && p.real_mslot(warp, f % M)) {
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
            if (nt < n_tiles) {
              uint32_t bf[2];
              load_b_frag(dg, dgp, q0 + nt * 8, f / M, lane, bf);
              mma<E>(acc[f % M][nt], wf[f], bf[0], bf[1]);
            }
          }
        }
      }
      // Shared-memory fragments, a k-tile of all M slots at a time (the
      // first k-tile may have begun in the registers).
      for (int kt = kRegFrags / M; kt < p.own_ktiles; ++kt) {
        uint32_t bf[NT][2] = {};
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          if (nt < n_tiles) load_b_frag(dg, dgp, q0 + nt * 8, kt, lane, bf[nt]);
        }
#pragma unroll
        for (int i = 0; i < M; ++i) {
          const int f = kt * M + i;
          if (f >= kRegFrags && p.real_mslot(warp, i)) {
            const uint4 v = wsm[p.w_smem_index(warp, f) + lane];
            const uint32_t af[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int nt = 0; nt < NT; ++nt) {
              if (nt < n_tiles) mma<E>(acc[i][nt], af, bf[nt][0], bf[nt][1]);
            }
          }
        }
      }
      // Each sum to its unit's owner: recv[nxt][c][n][jj] there (C map:
      // element k of a lane is row lane / 4 + 8 * (k / 2), column
      // 2 * (lane % 4) + k % 2).
      // recv_index(c, q0, 0) in buffer nxt of every owner
      const int pass_base = nxt * p.recv_floats() + p.recv_index(c, q0, 0);
#pragma unroll
      for (int i = 0; i < M; ++i) {
        if (!p.real_mslot(warp, i)) continue;
        // Elements 2h and 2h + 1 of every n-tile are rows nn and nn + 1 of one
        // unit j: one owner, one remote barrier and one base offset per (i, h)
        // (per element, the index math was about 24 instructions a store).
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int j = p.warp_mtile(warp, i) * 16 + c_coord(lane, 2 * h).row;
          if (j >= H) continue;
          const int o = p.owner(j);
          const uint32_t bar = mapa_shared(bar_base + uint32_t(nxt) * 8u, o);
          const int base = pass_base + (j - o * J);  // + nn * J: row q0 + nn
#pragma unroll
          for (int nt = 0; nt < NT; ++nt) {
#pragma unroll
            for (int k = 2 * h; k < 2 * h + 2; ++k) {
              const int nn = nt * 8 + c_coord(lane, k).col;
              if (nt < n_tiles && nn < n_rows) {
                const uint32_t off = uint32_t(base + nn * J) * 4u;
                st_async_b32(mapa_shared(recv_base + off, o), __float_as_uint(acc[i][nt][k]), bar);
              }
            }
          }
        }
      }
    }
  }
  cluster_sync_all();  // no CTA leaves while a peer might still address it
#else
  __trap();  // sm_80 and older: never launched
#endif
}

// The kernel of a launch's cell and m-tile stride (cluster_bwd_partition_error
// admits M = 1, 2, 4 and 6); null for any other M.
template <typename E, Cell CELL>
__host__ auto cluster_bwd_kernel_for(int M) -> void (*)(const PersistClusterBwdLaunch) {
  switch (M) {
    case 1: return persist_cluster_bwd_kernel<E, CELL, 1>;
    case 2: return persist_cluster_bwd_kernel<E, CELL, 2>;
    case 4: return persist_cluster_bwd_kernel<E, CELL, 4>;
    case 6: return persist_cluster_bwd_kernel<E, CELL, 6>;
    default: return nullptr;
  }
}

template <typename E>
__host__ auto cluster_bwd_kernel_for(Cell cell, int M) -> void (*)(const PersistClusterBwdLaunch) {
  return cell == Cell::LSTM ? cluster_bwd_kernel_for<E, Cell::LSTM>(M)
                            : cluster_bwd_kernel_for<E, Cell::GRU>(M);
}

// One operand type's entry points (persist_cluster_bwd_<type>.cu): the
// launch (directions x cluster_grid() CTAs in clusters of P; as
// launch_clusters, cudaErrorNotSupported where this build has no sm_90 code
// or the occupancy API allows no such cluster now) and the occupancy query.
#define RNNFUSE_PERSIST_CLUSTER_BWD_ENTRY_POINTS(E, NAME)                                     \
  cudaError_t launch_persist_cluster_bwd_##NAME(Cell cell, const PersistClusterBwdLaunch& a,  \
                                                size_t smem, cudaStream_t stream) {           \
    const ClusterBwdPartition& p = a.dir[0].part;                                             \
    const auto kernel = cluster_bwd_kernel_for<E>(cell, p.mstride);                           \
    if (kernel == nullptr) return cudaErrorInvalidValue;                                      \
    return launch_clusters(kernel, a, p.cluster(), a.directions * p.cluster_grid(), smem,     \
                           stream);                                                           \
  }                                                                                           \
  cudaError_t persist_cluster_bwd_max_active_##NAME(Cell cell, int M, int cluster,            \
                                                    size_t smem, int* active) {               \
    const auto kernel = cluster_bwd_kernel_for<E>(cell, M);                                   \
    if (kernel == nullptr) return cudaErrorInvalidValue;                                      \
    cudaLaunchConfig_t cfg;                                                                   \
    cudaLaunchAttribute attr;                                                                 \
    return prepare_cluster_launch(kernel, cluster, smem, cfg, attr, active);                  \
  }

}  // namespace persist
}  // namespace rnnfuse
