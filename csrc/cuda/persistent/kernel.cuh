// The persistent forward kernel (grid tier): one cooperative launch runs a
// whole layer-direction, or both directions of a bidirectional layer (a
// second grid of CTAs with the reverse direction's operands). Decomposition,
// fragment maps, schedule and flag protocol are layout.h's (the CPU emulator
// runs the same functions):
//   - CTA q = (replica r, CTA c) keeps its rows() x H slice of W_hh (the G
//     gates of its J <= 16 units: 2 to 4 m-tiles) as mma.sync A fragments in
//     registers for the whole sequence (warp w: k-tiles w, w+8, ...);
//   - per step: wait for the replica's flags, gather h_{t-1} (L2) into
//     shared memory, per chunk of kChunkRows batch rows run the MMAs, add the
//     8 warps' partial sums in order, apply gate_math.h, store y / c / ws;
//     then publish the step (release).
// Plain CUDA + gate_math.h, no ATen.
#pragma once

#include "../../persistent/layout.h"
#include "args.h"
#include "exchange.cuh"
#include "ptx.cuh"
#include "slice.cuh"

namespace rnnfuse {
namespace persist {

static_assert(16 * kChunkRows <= kItemSlots * kThreads,
              "every epilogue item of a chunk of 16 units needs a thread slot");

// FMA: exact fp32 (TF32 off), layout.h's FMA maps instead of the MMAs; E is
// float then. LL: h exchanged through LL words (a.ll, exchange.cuh
// gather_ll / publish_ll) instead of y and the flags. Everything else
// (epilogue, decomposition) is shared.
template <typename E, Cell CELL, bool FMA, bool LL>
__device__ __forceinline__ void fwd_body(const PersistArgs& a, int q) {
  static_assert(!FMA || sizeof(E) == 4, "the exact-FMA slice is fp32");
  using X = Elem<E>;
  constexpr int G = CELL == Cell::LSTM ? 4 : 3;
  const Partition& p = a.part;
  RNNFUSE_DYNAMIC_SMEM(smem);
  float* red = reinterpret_cast<float*>(smem);
  float* bias = red + p.red_floats();
  E* hbuf = reinterpret_cast<E*>(smem + p.hbuf_offset());

  const int r = p.replica_of(q), c = p.cta_of(q);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int H = p.hidden, J = p.units;
  const int pitch = p.h_pitch(X::kBytes);
  const int n_ktiles = p.warp_ktiles(warp);
  const int MT = p.mtiles(), rows_mt = p.rows();
  const int n_frags = n_ktiles * MT;  // fragment f: k-tile f / MT, m-tile f % MT

  // ---- the W slice, once, into registers (layout.h's A-fragment map)
  uint32_t wf[kRegFrags][4];
  {
    const E* w = static_cast<const E*>(a.w_hh);
#pragma unroll
    for (int f = 0; f < kRegFrags; ++f) {
      if (f < n_frags) {
        if constexpr (FMA) {
          load_w_fma(p, w, c, p.warp_ktile(warp, f / MT), f % MT, lane, wf[f]);
        } else {
          load_a_frag(p, w, c, p.warp_ktile(warp, f / MT), f % MT, lane, wf[f]);
        }
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) wf[f][i] = 0u;
      }
    }
  }
  for (int i = tid; i < a.hbuf_rows * pitch; i += kThreads) hbuf[i] = X::from_float(0.0f);
  if constexpr (CELL == Cell::GRU) {
    const E* b_hh = static_cast<const E*>(a.b_hh);
    for (int rr = tid; rr < rows_mt; rr += kThreads) {
      const int64_t row = p.weight_row(c, rr);
      bias[rr] = b_hh != nullptr && row >= 0 ? X::to_float(b_hh[row]) : 0.0f;
    }
  }
  __syncthreads();

  const E* x_proj = static_cast<const E*>(a.x_proj);
  E* y = static_cast<E*>(a.y);
  // x_proj stays in its type until the epilogue: converted where it was
  // loaded, a slot's conversion waited there for its load, and the next
  // slot's loads went out only then (a global round trip per slot).
  E xv[kItemSlots][G];
  float cv[kItemSlots] = {};

  // Epilogue operands of one chunk that do not depend on the exchange
  // (x_proj, the cell state): loaded early so their latency overlaps it.
  // n_rows: the chunk's, which packs its items (Partition::item_bits).
  auto load_operands = [&](const StepInfo& st, int row_base, int n_rows) {
    const int ib = Partition::item_bits(n_rows);
#pragma unroll
    for (int s = 0; s < kItemSlots; ++s) {
      const int e = tid + s * kThreads;
      const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
      const int j = p.first_unit(c) + jj;
      if (e < p.chunk_items(ib) && nn < n_rows && j < H) {
        const int64_t b = p.replica_row(r, row_base + nn);
        const E* xr = x_proj + (st.row0 + b) * a.ld_x + j;
#pragma unroll
        for (int g = 0; g < G; ++g) xv[s][g] = xr[g * H];
        if constexpr (CELL == Cell::LSTM) cv[s] = a.c_state[b * H + j];
      }
    }
  };

  // The step trace (args.h kTraceHeader): thread 0 of CTA a.trace_cta.
  const bool tracing = a.trace != nullptr && q == a.trace_cta && tid == 0;
  const auto stamp = [&](int step, int phase) {
    if (tracing) a.trace[kTraceHeader + int64_t(step) * kTracePhases + phase] = cycle_count();
  };
  if (tracing) {
    a.trace[0] = static_cast<long long>(globaltimer_ns());
    a.trace[1] = cycle_count();
  }

  StepCursor cur;
  for (cur.begin(a.sched); cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int rows = p.replica_rows(r, st.bs);
    if (rows > 0) {
      stamp(st.step, kTraceStart);
      load_operands(st, 0, Partition::first_chunk_rows(a.hbuf_rows, rows));
      if (!LL && needs_exchange(st, rows)) wait_for_replica(a, r, wait_value(st.step));
      stamp(st.step, kTraceWaited);
      for (int g0 = 0; g0 < rows; g0 += a.hbuf_rows) {
        const int g_rows = min(a.hbuf_rows, rows - g0);
        if constexpr (LL) {
          gather_ll<E, FMA ? kLlBatchFma : kLlBatch>(a, r, st, g0, g_rows, hbuf);
        } else {
          gather_rows<E>(p, p.k_width(), static_cast<const E*>(a.y), a.ld_y, st.prev_row0,
                         static_cast<const E*>(a.h0), st.carry, r, g0, g_rows, a.vec16 != 0,
                         hbuf);
        }
        __syncthreads();
        if (g0 == 0) stamp(st.step, kTraceGathered);
        for (int q0 = 0; q0 < g_rows; q0 += kChunkRows) {
          const int n_rows = min(kChunkRows, g_rows - q0);
          if (g0 + q0 > 0) load_operands(st, g0 + q0, n_rows);
          const int n_tiles = ceil_div(n_rows, 8);

          // ---- this warp's k-tiles: MMAs (or FMAs) into its partial sums,
          // all m-tiles at once (one B fragment or h load for all of them).
          chunk_products<E, FMA, 2, 3, 4>(wf, MT, n_ktiles, warp, lane, hbuf, pitch, q0,
                                          n_tiles, red, rows_mt);
          __syncthreads();
          if (g0 + q0 == 0) stamp(st.step, kTraceMma);

          // ---- epilogue: partial sums over warps 0..7 in order, gate math
          const int ib = Partition::item_bits(n_rows);
#pragma unroll
          for (int s = 0; s < kItemSlots; ++s) {
            const int e = tid + s * kThreads;
            const int jj = Partition::item_unit(e, ib), nn = Partition::item_row(e, ib);
            const int j = p.first_unit(c) + jj;
            const bool valid = e < p.chunk_items(ib) && nn < n_rows && j < H;
            E h_out = X::from_float(0.0f);
            if (valid) {
              const int64_t b = p.replica_row(r, g0 + q0 + nn);
              const int64_t row = st.row0 + b;
              float sum[G];
              sum_partials<G>(red, rows_mt, J, jj, nn, kRedPitch, sum);
              E* w = a.ws != nullptr ? static_cast<E*>(a.ws) + row * (G + 1) * H + j : nullptr;
              float h_prev = 0.0f;
              if constexpr (CELL == Cell::GRU) h_prev = X::to_float(hbuf[(q0 + nn) * pitch + j]);
              float x[G];
#pragma unroll
              for (int g = 0; g < G; ++g) x[g] = X::to_float(xv[s][g]);
              const float h = cell_item<CELL, G>(x, sum, bias, J, jj, cv[s], h_prev, w, H);
              if constexpr (CELL == Cell::LSTM) a.c_state[b * H + j] = cv[s];
              h_out = X::from_float(h);
              st_exchanged(y + row * a.ld_y + j, h_out);  // read by the replica's CTAs (not LL)
            }
            if constexpr (LL) publish_ll<E>(a, r, st, g0 + q0 + nn, nn, n_rows, j, h_out, valid);
          }
          __syncthreads();
        }
      }
      stamp(st.step, kTraceEpilogue);
    }
    if (!LL && tid == 0) st_release_gpu(a.flags + q * a.flag_stride, publish_value(st.step));
    if (rows > 0) stamp(st.step, kTracePublished);
  }
  if (tracing) {
    a.trace[2] = static_cast<long long>(globaltimer_ns());
    a.trace[3] = cycle_count();
  }
}

// CTA blockIdx.x of a launch: direction d = blockIdx.x / grid runs dir[d]
// as CTA q = blockIdx.x - d * grid of its partition.
template <typename E, Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_fwd_kernel(const PersistFwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  fwd_body<E, CELL, false, false>(a.dir[d], int(blockIdx.x) - d * grid);
}

// fp32 with TF32 off: the same kernel with exact FMAs.
template <Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_fwd_fma_kernel(const PersistFwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  fwd_body<float, CELL, true, false>(a.dir[d], int(blockIdx.x) - d * grid);
}

// The same two with the LL exchange (PersistArgs::ll set: plan.ll).
template <typename E, Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_fwd_ll_kernel(const PersistFwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  fwd_body<E, CELL, false, true>(a.dir[d], int(blockIdx.x) - d * grid);
}

template <Cell CELL>
__global__ void __launch_bounds__(kThreads, 1) persist_fwd_fma_ll_kernel(const PersistFwdLaunch a) {
  const int grid = a.dir[0].part.grid(), d = int(blockIdx.x) >= grid ? 1 : 0;
  fwd_body<float, CELL, true, true>(a.dir[d], int(blockIdx.x) - d * grid);
}

// A cooperative launch of `kernel` (one of the persistent grid kernels) on
// `stream`, or cudaErrorCooperativeLaunchTooLarge (nothing launched) when its
// grid cannot be co-resident on `sms` SMs at this shared-memory size. Through
// cudaLaunchKernelEx with the cooperative attribute, which the runtime
// documents as valid for graph nodes: under stream capture it records a
// cooperative kernel node.
template <typename Args>
cudaError_t launch_cooperative(void (*kernel)(const Args), const Args& a, int grid, size_t smem,
                               int sms, cudaStream_t stream) {
  cudaError_t err = allow_optin_smem(kernel);
  if (err != cudaSuccess) return err;
  int per_sm = 0;
  err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem);
  if (err != cudaSuccess) return err;
  if (per_sm < 1 || grid > per_sm * sms) return cudaErrorCooperativeLaunchTooLarge;
  cudaLaunchAttribute attr;
  attr.id = cudaLaunchAttributeCooperative;
  attr.val.cooperative = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(static_cast<unsigned>(grid));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kernel, a);
}

template <typename Args>
cudaError_t blocks_per_sm(void (*kernel)(const Args), size_t smem, int* blocks) {
  const cudaError_t err = allow_optin_smem(kernel);
  if (err != cudaSuccess) return err;
  return cudaOccupancyMaxActiveBlocksPerMultiprocessor(blocks, kernel, kThreads, smem);
}

// One operand type's entry points (instantiated in persist_<type>.cu).
#define RNNFUSE_PERSIST_ENTRY_POINTS(E, NAME)                                                  \
  cudaError_t launch_persist_fwd_##NAME(Cell cell, const PersistFwdLaunch& a, size_t smem,      \
                                        int sms, cudaStream_t stream) {                        \
    const bool lstm = cell == Cell::LSTM;                                                      \
    const auto kernel = a.dir[0].ll != nullptr                                                 \
                            ? (lstm ? persist_fwd_ll_kernel<E, Cell::LSTM>                     \
                                    : persist_fwd_ll_kernel<E, Cell::GRU>)                     \
                            : (lstm ? persist_fwd_kernel<E, Cell::LSTM>                        \
                                    : persist_fwd_kernel<E, Cell::GRU>);                       \
    return launch_cooperative(kernel, a, a.directions * a.dir[0].part.grid(), smem, sms,       \
                              stream);                                                         \
  }                                                                                            \
  cudaError_t persist_fwd_blocks_per_sm_##NAME(Cell cell, size_t smem, int* blocks) {          \
    return blocks_per_sm(cell == Cell::LSTM ? persist_fwd_kernel<E, Cell::LSTM>                \
                                            : persist_fwd_kernel<E, Cell::GRU>,                \
                         smem, blocks);                                                        \
  }

// The exact-fp32 kernels' entry points (persist_fma.cu).
#define RNNFUSE_PERSIST_FMA_ENTRY_POINTS()                                                      \
  cudaError_t launch_persist_fwd_fma(Cell cell, const PersistFwdLaunch& a, size_t smem, int sms, \
                                     cudaStream_t stream) {                                     \
    const bool lstm = cell == Cell::LSTM;                                                       \
    const auto kernel = a.dir[0].ll != nullptr                                                  \
                            ? (lstm ? persist_fwd_fma_ll_kernel<Cell::LSTM>                     \
                                    : persist_fwd_fma_ll_kernel<Cell::GRU>)                     \
                            : (lstm ? persist_fwd_fma_kernel<Cell::LSTM>                        \
                                    : persist_fwd_fma_kernel<Cell::GRU>);                       \
    return launch_cooperative(kernel, a, a.directions * a.dir[0].part.grid(), smem, sms,        \
                              stream);                                                          \
  }                                                                                             \
  cudaError_t persist_fwd_blocks_per_sm_fma(Cell cell, size_t smem, int* blocks) {              \
    return blocks_per_sm(cell == Cell::LSTM ? persist_fwd_fma_kernel<Cell::LSTM>                \
                                            : persist_fwd_fma_kernel<Cell::GRU>,                \
                         smem, blocks);                                                         \
  }

}  // namespace persist
}  // namespace rnnfuse
