// The persistent backward kernel (grid tier): one cooperative launch walks a
// layer-direction's steps in reverse (or both directions', as the forward).
// CTA q = (replica r, CTA c) keeps W_hh^T for its J <= 64 units (MT m-tiles;
// K = G*H, or its part of K where K is split) as A fragments in registers; per step
// it waits for its replica's flags, gathers its columns of the gate
// gradients of the step processed before (LSTM dgates, GRU dhh: the
// exchange buffer), runs the MMAs, adds the warps' partial sums in order
// (with K split: and the other parts' sums, through global memory), applies
// gate_math.h's derivatives, writes the gate gradients, and publishes the
// step. With the LL exchange (plan.ll) there is no flag: the gate gradients
// and the partial sums travel as LL words (ll_layout.h make_grid_ll_bwd).
// BwdPartition, fragment maps, cursor and protocol are layout.h's (the CPU
// emulator emulate_bwd.cpp runs the same). dW_hh stays one GEMM after the
// loop (driver).
// Plain CUDA + gate_math.h, no ATen.
#pragma once

#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

// Warps 0..7's partial sums of item (unit jj, column nn), added in order;
// `rows`: the partition's rows() (MT x 16).
__device__ __forceinline__ float bwd_warp_sum(const float* red, int rows, int jj, int nn) {
  float t = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) t += red[red_index(w, jj, nn, rows)];
  return t;
}

// The other K-split parts' sums of a thread's items (other[s][sp]; its own
// part's and invalid items' stay 0) from their LL words (PersistBwdArgs
// ll_partials): word cta_off[sp] + item_off[s], where bit s * kMaxKSplit +
// sp of `needed` is set, polled until each carries the chunk's tag `want`.
// The polls are predicated loads (ll_load8_if), so a round's 8 go out back
// to back, all in flight before the first tag is checked, and so do the
// re-polls of the words not yet written: one round trip after the last word
// lands. A tag past `want` traps (a slot overwritten before it was read:
// the protocol broken).
__device__ __forceinline__ void poll_other_parts(const PersistBwdArgs& a, uint32_t want,
                                                 uint32_t needed, const int (&item_off)[kItemSlots],
                                                 const int64_t (&cta_off)[kMaxKSplit],
                                                 float (&other)[kItemSlots][kMaxKSplit]) {
  uint64_t w[kItemSlots][kMaxKSplit];
  const auto poll = [&](uint32_t which) {
#pragma unroll
    for (int s = 0; s < kItemSlots; ++s) {
#pragma unroll
      for (int sp = 0; sp < kMaxKSplit; ++sp) {
        ll_load8_if((which >> (s * kMaxKSplit + sp) & 1u) != 0,
                    a.ll_partials + cta_off[sp] + item_off[s], w[s][sp]);
      }
    }
  };
#pragma unroll
  for (int s = 0; s < kItemSlots; ++s) {
#pragma unroll
    for (int sp = 0; sp < kMaxKSplit; ++sp) w[s][sp] = 0;
  }
  poll(needed);
  uint32_t stale = needed;  // bit s * kMaxKSplit + sp: still to be read with the tag
  const uint64_t t0 = stale != 0 ? globaltimer_ns() : 0;
  for (uint32_t spin = 1;; ++spin) {
    bool overrun = false;  // a tag past `want` (as poll_ll_rows: predicated, one trap test)
#pragma unroll
    for (int s = 0; s < kItemSlots; ++s) {
#pragma unroll
      for (int sp = 0; sp < kMaxKSplit; ++sp) {
        const uint32_t bit = 1u << (s * kMaxKSplit + sp), tag = ll_tag_of(w[s][sp]);
        const bool polled = (stale & bit) != 0;
        overrun |= polled && int32_t(tag - want) > 0;
        if (polled && tag == want) stale &= ~bit;
      }
    }
    if (overrun) __trap();
    if (stale == 0) break;
    poll(stale);
    if ((spin & 1023u) == 0 && a.watchdog_ns != 0 && globaltimer_ns() - t0 > a.watchdog_ns) {
      __trap();
    }
  }
#pragma unroll
  for (int s = 0; s < kItemSlots; ++s) {
#pragma unroll
    for (int sp = 0; sp < kMaxKSplit; ++sp) {
      other[s][sp] = (needed >> (s * kMaxKSplit + sp) & 1u) != 0
                         ? __uint_as_float(uint32_t(w[s][sp]))
                         : 0.0f;
    }
  }
}

// The backward's 16-byte polls a thread keeps in flight (its registers are
// nearly all W^T's).
constexpr int kLlBwdBatch = 4;

// hbuf rows n = 0..rows-1 <- this part's columns [part_k0, part_k0 +
// part_width) of replica r's local rows g0 + n of the gate gradients of the
// step processed before: rows carried from it from its LL words
// (poll_ll_rows; col_pairs: part_width / 2), the others zeros (gather_rows
// with no source).
template <typename E>
__device__ __forceinline__ void gather_bwd_ll(const PersistBwdArgs& a, int r, int c,
                                              const StepInfo& st, int g0, int rows,
                                              const Divider& col_pairs, E* hbuf) {
  const BwdPartition& p = a.part;
  const GridLl& x = a.ll_layout;
  const int pitch = p.h_pitch(Elem<E>::kBytes), k0 = p.part_k0(c), width = p.part_width(c);
  const int n_carry = min(max(x.replica_rows(r, st.carry) - g0, 0), rows);
  if (n_carry < rows) {
    gather_rows<E>(p, width, static_cast<const E*>(nullptr), 0, 0, static_cast<const E*>(nullptr),
                   /*carry=*/0, r, g0 + n_carry, rows - n_carry, a.vec16 != 0,
                   hbuf + n_carry * pitch);
  }
  if (n_carry == 0) return;
  constexpr int kRpw = Elem<E>::kBytes == 2 ? 2 : 1;
  poll_ll_rows<E, kLlBwdBatch>(a.ll_xch + x.word((st.step - 1) & a.ll_parity_mask, r, g0 / kRpw, k0),
                               x.hidden, col_pairs, width / 2, n_carry, GridLl::tag(st.step - 1),
                               a.watchdog_ns, hbuf, pitch);
}

// FMA: exact fp32 (TF32 off) with layout.h's FMA maps; E is float then.
// LL: the gate gradients (ll_xch) and a K split's partial sums (ll_partials)
// through LL words: no step or chunk flag, release, acquire or fence.
template <typename E, Cell CELL, bool FMA, bool LL>
__device__ __forceinline__ void bwd_body(const PersistBwdArgs& a, int q) {
  static_assert(!FMA || sizeof(E) == 4, "the exact-FMA slice is fp32");
  using X = Elem<E>;
  constexpr int kk = X::kBytes == 2 ? 16 : 8;
  constexpr int kActs = CELL == Cell::LSTM ? 5 : 4;  // saved per (row, unit)
  RNNFUSE_DYNAMIC_SMEM(smem);
  const BwdPartition& p = a.part;
  float* red = reinterpret_cast<float*>(smem);
  E* hbuf = reinterpret_cast<E*>(smem + p.hbuf_offset());

  const int r = p.replica_of(q), c = p.cta_of(q);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int H = p.hidden, K = p.k_width();
  const int pitch = p.h_pitch(X::kBytes);
  const int n_ktiles = p.warp_ktiles(c, warp);
  const int MT = p.mtiles(), rows_mt = p.rows();
  const int n_frags = n_ktiles * MT;  // fragment f: local k-tile f / MT, m-tile f % MT
  const int kt0 = p.part_kt0(c), kpart = p.kpart_of(c);
  constexpr int kXchGates = CELL == Cell::LSTM ? 4 : 3;  // columns of xch per unit
  // LL: this part's columns of the gate gradients, two per 16-byte poll.
  const Divider col_pairs = make_divider(LL ? max(p.part_width(c) / 2, 1) : 1);

  // ---- W_hh^T for this CTA's units, once, into registers
  uint32_t wf[kRegFrags][4];
  {
    const E* w = static_cast<const E*>(a.w_hh);
#pragma unroll
    for (int f = 0; f < kRegFrags; ++f) {
#pragma unroll
      for (int i = 0; i < 4; ++i) wf[f][i] = 0u;
      if (FMA && f < n_frags) {  // unit fma_row(lane), k = kt * 8 + fma_k0(lane) + e
        const int kt = kt0 + p.warp_ktile(warp, f / MT);
        const int j = p.row_unit(c, (f % MT) * 16 + fma_row(lane));
#pragma unroll
        for (int e = 0; e < kFmaK; ++e) {
          const int kr = kt * 8 + fma_k0(lane) + e;
          const float* w = static_cast<const float*>(a.w_hh);
          wf[f][e] = j >= 0 && kr < K ? __float_as_uint(w[int64_t(kr) * H + j]) : 0u;
        }
      } else if (f < n_frags) {
        const int kt = kt0 + p.warp_ktile(warp, f / MT);
#pragma unroll
        for (int e = 0; e < (kk == 16 ? 8 : 4); ++e) {
          const Coord co = a_coord(kk, lane, e);
          const int j = p.row_unit(c, (f % MT) * 16 + co.row);
          const int kr = kt * kk + co.col;
          const uint32_t bits = j >= 0 && kr < K ? elem_bits(w[int64_t(kr) * H + j]) : 0u;
          if constexpr (kk == 16) {
            wf[f][e / 2] |= bits << (16 * (e & 1));
          } else {
            wf[f][e] = bits;
          }
        }
      }
    }
  }
  for (int i = tid; i < a.hbuf_rows * pitch; i += kThreads) hbuf[i] = X::from_float(0.0f);
  __syncthreads();

  const E* grad_y = static_cast<const E*>(a.grad_y);
  E* xch = static_cast<E*>(a.xch);
  const E* ws = static_cast<const E*>(a.ws);  // the forward's activations, in E
  // Per item slot, as loaded: grad_y, the saved activations, c_{t-1} or
  // h_{t-1} (in E until the epilogue converts them: converted where they
  // were loaded, a slot's conversion waited there for its load, and the
  // next slot's loads went out only then), the dh and dc state.
  E gv[kItemSlots], av[kItemSlots][kActs], pv[kItemSlots];
  float dhv[kItemSlots], dcv[kItemSlots];

  // n_rows: the chunk's, which packs its items (Partition::item_bits).
  auto load_operands = [&](const StepInfo& st, int row_base, int n_rows) {
    const int ib = Partition::item_bits(n_rows);
#pragma unroll
    for (int s = 0; s < kItemSlots; ++s) {
      const int e = p.part_item(c, tid, s, ib);
      const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
      const int j = p.first_unit(c) + jj;
      if (e >= 0 && nn < n_rows && j < H) {
        const int64_t b = p.replica_row(r, row_base + nn);
        const int64_t row = st.row0 + b;
        gv[s] = grad_y[row * a.ld_grad_y + j];
        dhv[s] = a.dh_state[b * H + j];
        const E* w = ws + row * kActs * H + j;
#pragma unroll
        for (int g = 0; g < kActs; ++g) av[s][g] = w[g * H];
        if constexpr (CELL == Cell::LSTM) {
          pv[s] = b < st.carry_next ? ws[(st.next_row0 + b) * 5 * H + 4 * H + j]
                                    : static_cast<const E*>(a.c0)[b * H + j];
          dcv[s] = a.dc_state[b * H + j];
        } else {
          pv[s] = b < st.carry_next ? static_cast<const E*>(a.y)[(st.next_row0 + b) * a.ld_y + j]
                                    : static_cast<const E*>(a.h0)[b * H + j];
        }
      }
    }
  };

  // The step trace (args.h BwdTracePhase): thread 0 of CTA a.trace_cta.
  const bool tracing = a.trace != nullptr && q == a.trace_cta && tid == 0;
  const auto stamp = [&](int step, int phase) {
    if (tracing) a.trace[kTraceHeader + int64_t(step) * kBwdTracePhases + phase] = cycle_count();
  };
  if (tracing) {
    a.trace[0] = static_cast<long long>(globaltimer_ns());
    a.trace[1] = cycle_count();
  }

  uint32_t chunk_no = 0;  // chunks finished, the count a K-split part publishes
  StepCursor cur;
  for (cur.begin(a.sched); cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int rows = p.replica_rows(r, st.bs);
    if (rows > 0) {
      stamp(st.step, kBwdTraceStart);
      load_operands(st, 0, Partition::first_chunk_rows(a.hbuf_rows, rows));
      if (!LL && needs_exchange(st, rows)) wait_for_replica(a, r, wait_value(st.step));
      stamp(st.step, kBwdTraceWaited);
      for (int g0 = 0; g0 < rows; g0 += a.hbuf_rows) {
        const int g_rows = min(a.hbuf_rows, rows - g0);
        if constexpr (LL) {
          gather_bwd_ll<E>(a, r, c, st, g0, g_rows, col_pairs, hbuf);
        } else {
          gather_rows<E>(p, p.part_width(c), xch + p.part_k0(c), a.ld_xch, st.prev_row0,
                         static_cast<const E*>(nullptr), st.carry, r, g0, g_rows, a.vec16 != 0,
                         hbuf);
        }
        __syncthreads();
        if (g0 == 0) stamp(st.step, kBwdTraceGathered);
        for (int q0 = 0; q0 < g_rows; q0 += kChunkRows) {
          const int n_rows = min(kChunkRows, g_rows - q0);
          if (g0 + q0 > 0) load_operands(st, g0 + q0, n_rows);
          const int n_tiles = ceil_div(n_rows, 8);
          const int ib = Partition::item_bits(n_rows);

          // All m-tiles at once (slice.cuh: one B fragment or h load for all).
          chunk_products<E, FMA, 1, 2, 3, 4>(wf, MT, n_ktiles, warp, lane, hbuf, pitch, q0,
                                             n_tiles, red, rows_mt);
          __syncthreads();
          if (g0 + q0 == 0) stamp(st.step, kBwdTraceMma);
          // LL: slots by chunk parity (ll_slots 2; 1 in a fiber test's fault).
          const int slot = LL ? int(chunk_no & uint32_t(a.ll_slots - 1)) : partial_slot(chunk_no);
          const uint32_t tag = partial_publish_value(chunk_no);
          if (LL && p.ksplit > 1) {
            // This part's sums, each with the chunk's tag in one 8-byte word:
            // no barrier, release or chunk flag (the readers poll the words).
            uint64_t* mine = a.ll_partials + int64_t(q) * p.partial_floats();
            for (int e = tid; e < p.chunk_items(ib); e += kThreads) {
              const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
              if (nn < n_rows && p.first_unit(c) + jj < H) {
                ll_store8(mine + p.partial_index(slot, jj, nn),
                          uint64_t(tag) << 32 | __float_as_uint(bwd_warp_sum(red, rows_mt, jj, nn)));
              }
            }
          } else if (p.ksplit > 1) {
            // This part's sums of every item of the chunk, for the other parts.
            float* mine = a.partials + int64_t(q) * p.partial_floats();
            for (int e = tid; e < p.chunk_items(ib); e += kThreads) {
              const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
              if (nn < n_rows && p.first_unit(c) + jj < H) {
                st_exchanged(mine + p.partial_index(slot, jj, nn),
                             bwd_warp_sum(red, rows_mt, jj, nn));
              }
            }
            __syncthreads();
            if (tid == 0) st_release_gpu(a.pflags + q, tag);
            if (tid < p.ksplit && tid != kpart) {
              wait_flag(a.pflags + p.cta_index(r, p.part_cta(c, tid)), tag, a.watchdog_ns);
            }
            __syncthreads();
          }
          if (g0 + q0 == 0) stamp(st.step, kBwdTraceParts);
          ++chunk_no;

          // The other parts' sums of this thread's items, every load issued
          // before the first add: with an add after each load in turn, an
          // item waited S - 1 dependent L2 round trips.
          float other[kItemSlots][kMaxKSplit];
          if constexpr (LL) {
            uint32_t needed = 0;
            int item_off[kItemSlots];
            int64_t cta_off[kMaxKSplit];
#pragma unroll
            for (int s = 0; s < kItemSlots; ++s) {
              const int e = p.part_item(c, tid, s, ib);
              const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
              const bool valid = e >= 0 && nn < n_rows && p.first_unit(c) + jj < H;
              item_off[s] = valid ? p.partial_index(slot, jj, nn) : 0;
#pragma unroll
              for (int sp = 0; sp < kMaxKSplit; ++sp) {
                if (valid && sp < p.ksplit && sp != kpart) needed |= 1u << (s * kMaxKSplit + sp);
              }
            }
#pragma unroll
            for (int sp = 0; sp < kMaxKSplit; ++sp) {
              cta_off[sp] = sp < p.ksplit ? int64_t(p.cta_index(r, p.part_cta(c, sp))) *
                                                p.partial_floats()
                                          : 0;
            }
            poll_other_parts(a, tag, needed, item_off, cta_off, other);
          } else {
#pragma unroll
            for (int s = 0; s < kItemSlots; ++s) {
              const int e = p.part_item(c, tid, s, ib);
              const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
              const bool valid = e >= 0 && nn < n_rows && p.first_unit(c) + jj < H;
#pragma unroll
              for (int sp = 0; sp < kMaxKSplit; ++sp) {
                other[s][sp] = valid && sp < p.ksplit && sp != kpart
                                   ? ld_cg(a.partials +
                                           int64_t(p.cta_index(r, p.part_cta(c, sp))) *
                                               p.partial_floats() +
                                           p.partial_index(slot, jj, nn))
                                   : 0.0f;
              }
            }
          }

#pragma unroll
          for (int s = 0; s < kItemSlots; ++s) {
            const int e = p.part_item(c, tid, s, ib);
            const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
            const int j = p.first_unit(c) + jj;
            const bool valid = e >= 0 && nn < n_rows && j < H;
            E xg[kXchGates];  // the exchanged gate gradients (LL: published below)
            if (valid) {
              const int64_t b = p.replica_row(r, g0 + q0 + nn);
              const int64_t row = st.row0 + b;
              // The parts' recurrent sums in order 0..S-1 (this part's from red).
              const float own = bwd_warp_sum(red, rows_mt, jj, nn);
              float rec = 0.0f;
#pragma unroll
              for (int sp = 0; sp < kMaxKSplit; ++sp) {
                if (sp < p.ksplit) {
                  const float v = sp == kpart ? own : other[s][sp];
                  rec = sp == 0 ? v : rec + v;
                }
              }
              const float dh = (X::to_float(gv[s]) + dhv[s]) + rec;
              E* xr = xch + row * a.ld_xch + j;
              if constexpr (CELL == Cell::LSTM) {
                a.dh_state[b * H + j] = 0.0f;
                const LstmGrads<float> d =
                    lstm_cell_backward(lstm_saved_acts(av[s]), X::to_float(pv[s]), dh, dcv[s]);
                a.dc_state[b * H + j] = d.dc_prev;
                xg[0] = X::from_float(d.di);
                xg[1] = X::from_float(d.df);
                xg[2] = X::from_float(d.dg);
                xg[3] = X::from_float(d.d_o);
              } else {
                const GruGrads<float> d =
                    gru_cell_backward(gru_saved_acts(av[s]), X::to_float(pv[s]), dh);
                a.dh_state[b * H + j] = d.dh_prev;
                E* dx = static_cast<E*>(a.dx) + row * a.ld_dx + j;
                dx[0] = X::from_float(d.dr);
                dx[H] = X::from_float(d.dz);
                dx[2 * H] = X::from_float(d.dn);
                xg[0] = X::from_float(d.dr);
                xg[1] = X::from_float(d.dz);
                xg[2] = X::from_float(d.dhn);
              }
              // Read by the replica's CTAs next step (flags), and by the
              // weight gradient's GEMM after the loop (both).
#pragma unroll
              for (int g = 0; g < kXchGates; ++g) st_exchanged(xr + g * H, xg[g]);
            }
            if constexpr (LL) {
              // Every lane (store_ll_item shuffles): the words of step st.step.
              uint64_t* words =
                  a.ll_xch + a.ll_layout.word(st.step & a.ll_parity_mask, r, 0, j);
#pragma unroll
              for (int g = 0; g < kXchGates; ++g) {
                store_ll_item<E>(words + g * H, a.ll_layout.hidden, GridLl::tag(st.step),
                                 g0 + q0 + nn, nn, n_rows, valid ? xg[g] : X::from_float(0.0f),
                                 valid);
              }
            }
          }
          __syncthreads();
        }
      }
      stamp(st.step, kBwdTraceEpilogue);
    }
    if (!LL && tid == 0) st_release_gpu(a.flags + q * a.flag_stride, publish_value(st.step));
    if (rows > 0) stamp(st.step, kBwdTracePublished);
  }
  if (tracing) {
    a.trace[2] = static_cast<long long>(globaltimer_ns());
    a.trace[3] = cycle_count();
  }
}

// As the forward: direction d = blockIdx.x / grid runs dir[d].
template <typename E, Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_bwd_kernel(const PersistBwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  bwd_body<E, CELL, false, false>(a.dir[d], int(blockIdx.x) - d * grid);
}

// fp32 with TF32 off: the same kernel with exact FMAs.
template <Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_bwd_fma_kernel(const PersistBwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  bwd_body<float, CELL, true, false>(a.dir[d], int(blockIdx.x) - d * grid);
}

// The exchanges through LL words (PersistBwdArgs ll_xch, ll_partials).
template <typename E, Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_bwd_ll_kernel(const PersistBwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  bwd_body<E, CELL, false, true>(a.dir[d], int(blockIdx.x) - d * grid);
}

template <Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_bwd_fma_ll_kernel(const PersistBwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  bwd_body<float, CELL, true, true>(a.dir[d], int(blockIdx.x) - d * grid);
}

#define RNNFUSE_PERSIST_BWD_ENTRY_POINTS(E, NAME)                                                 \
  cudaError_t launch_persist_bwd_##NAME(Cell cell, const PersistBwdLaunch& a, size_t smem,        \
                                        int sms, cudaStream_t stream) {                           \
    const bool lstm = cell == Cell::LSTM;                                                         \
    const auto kernel = a.dir[0].ll_xch != nullptr                                                \
                            ? (lstm ? persist_bwd_ll_kernel<E, Cell::LSTM>                        \
                                    : persist_bwd_ll_kernel<E, Cell::GRU>)                        \
                            : (lstm ? persist_bwd_kernel<E, Cell::LSTM>                           \
                                    : persist_bwd_kernel<E, Cell::GRU>);                          \
    return launch_cooperative(kernel, a, a.directions * a.dir[0].part.grid(), smem, sms, stream); \
  }                                                                                               \
  cudaError_t persist_bwd_blocks_per_sm_##NAME(Cell cell, size_t smem, int* blocks) {             \
    return blocks_per_sm(cell == Cell::LSTM ? persist_bwd_kernel<E, Cell::LSTM>                   \
                                            : persist_bwd_kernel<E, Cell::GRU>,                   \
                         smem, blocks);                                                           \
  }

#define RNNFUSE_PERSIST_BWD_FMA_ENTRY_POINTS()                                                    \
  cudaError_t launch_persist_bwd_fma(Cell cell, const PersistBwdLaunch& a, size_t smem, int sms,  \
                                     cudaStream_t stream) {                                       \
    const bool lstm = cell == Cell::LSTM;                                                         \
    const auto kernel = a.dir[0].ll_xch != nullptr                                                \
                            ? (lstm ? persist_bwd_fma_ll_kernel<Cell::LSTM>                       \
                                    : persist_bwd_fma_ll_kernel<Cell::GRU>)                       \
                            : (lstm ? persist_bwd_fma_kernel<Cell::LSTM>                          \
                                    : persist_bwd_fma_kernel<Cell::GRU>);                         \
    return launch_cooperative(kernel, a, a.directions * a.dir[0].part.grid(), smem, sms, stream); \
  }                                                                                               \
  cudaError_t persist_bwd_blocks_per_sm_fma(Cell cell, size_t smem, int* blocks) {                \
    return blocks_per_sm(cell == Cell::LSTM ? persist_bwd_fma_kernel<Cell::LSTM>                  \
                                            : persist_bwd_fma_kernel<Cell::GRU>,                  \
                         smem, blocks);                                                           \
  }

}  // namespace persist
}  // namespace rnnfuse
