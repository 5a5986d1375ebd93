// Fused LSTM steps. Forward: h_{t-1} @ W_hh^T for every gate of a block's
// hidden units, then the gate math and the c/h update, without the gate
// pre-activations ever leaving the chip (only the activations are saved, and
// only when training). Backward: dgates_{t+1} @ W_hh for the block's units,
// then the gate derivatives of step t. A launch may carry two directions of a
// layer (StepGroup, grid.z): each block works for the one its z names.
#pragma once

#include "../gate_math.h"
#include "step_common.cuh"

namespace rnnfuse {
namespace cuda {

// Each kernel is its block's GEMM operands, the GEMM, and an epilogue per
// (row, unit) element e < BM * J. step_rows, step_k, step_operands and
// step_epilogue are overloaded on the step's arguments and are host
// functions too, so step_emulate.cu runs them on the CPU with the launches'
// own arguments.

// A step's active rows (its batch) and its GEMM's reduction length (0: none).
__host__ __device__ __forceinline__ int step_rows(const LstmFwdStepArgs& a) {
  return a.h_prev.rows;
}
__host__ __device__ __forceinline__ int step_k(const LstmFwdStepArgs& a) {
  return a.k;
}

template <typename scalar_t>
__host__ __device__ __forceinline__ TileOperands<scalar_t> step_operands(
    const LstmFwdStepArgs& a, int j0, int m0) {
  return {a.h_prev, static_cast<const scalar_t*>(a.w_hh), a.k, a.hidden, a.hidden, j0, m0};
}

// C: the block's GEMM tile, ldc apart; columns g * J + jj are gate g of unit j0 + jj.
template <typename scalar_t, int J>
__host__ __device__ __forceinline__ void step_epilogue(
    const LstmFwdStepArgs& a, int j0, int m0, const at::opmath_type<scalar_t>* C, int ldc, int e) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto [m, jj, j, b, active] = epilogue_element<J>(a, j0, m0, e);
  if (!active) return;
  const int H = a.hidden;
  const scalar_t* xr = static_cast<const scalar_t*>(a.x) + b * a.ld_x;
  auto* c_state = static_cast<acc_t*>(a.c_state);
  const acc_t* cr = C + m * ldc;
  const auto act = lstm_cell_forward<acc_t>(
      static_cast<acc_t>(xr[j]) + cr[jj], static_cast<acc_t>(xr[H + j]) + cr[J + jj],
      static_cast<acc_t>(xr[2 * H + j]) + cr[2 * J + jj],
      static_cast<acc_t>(xr[3 * H + j]) + cr[3 * J + jj], c_state[b * H + j]);
  c_state[b * H + j] = act.c;
  static_cast<scalar_t*>(a.h_out)[b * a.ld_out + j] = static_cast<scalar_t>(lstm_hidden(act));
  if (a.ws != nullptr) {
    scalar_t* w = static_cast<scalar_t*>(a.ws) + b * 5 * H + j;  // rounded once, here
    w[0] = static_cast<scalar_t>(act.i);
    w[H] = static_cast<scalar_t>(act.f);
    w[2 * H] = static_cast<scalar_t>(act.g);
    w[3 * H] = static_cast<scalar_t>(act.o);
    w[4 * H] = static_cast<scalar_t>(act.c);
  }
}

template <typename scalar_t, typename Gemm, int J>
__global__ void __launch_bounds__(Gemm::kThreads, kStepMinBlocks) lstm_fwd_step_kernel(
    const __grid_constant__ StepGroup<LstmFwdStepArgs> group) {
  using acc_t = at::opmath_type<scalar_t>;
  const LstmFwdStepArgs& a = group.dir[blockIdx.z];
  extern __shared__ __align__(128) unsigned char smem[];
  const int j0 = blockIdx.x * J, m0 = blockIdx.y * Gemm::BM;
  if (m0 >= step_rows(a)) return;  // the other direction's batch is larger (whole block)
  const acc_t* C = Gemm::template run<J, acc_t>(step_operands<scalar_t>(a, j0, m0), smem);
  for (int e = threadIdx.x; e < Gemm::BM * J; e += Gemm::kThreads) {
    step_epilogue<scalar_t, J>(a, j0, m0, C, Gemm::LDC, e);
  }
}

// A step's active rows (its batch) and its GEMM's reduction length (0: none).
__host__ __device__ __forceinline__ int step_rows(const LstmBwdStepArgs& a) {
  return a.dgates_next.rows;
}
__host__ __device__ __forceinline__ int step_k(const LstmBwdStepArgs& a) {
  return a.k;
}

template <typename scalar_t>
__host__ __device__ __forceinline__ TileOperands<scalar_t> step_operands(
    const LstmBwdStepArgs& a, int j0, int m0) {
  return {a.dgates_next, static_cast<const scalar_t*>(a.w_hh_t), a.k, a.hidden, 0, j0, m0};
}

// C: the block's GEMM tile (dgates_{t+1} @ W_hh for units j0 + jj), ldc apart.
template <typename scalar_t, int J>
__host__ __device__ __forceinline__ void step_epilogue(
    const LstmBwdStepArgs& a, int j0, int m0, const at::opmath_type<scalar_t>* C, int ldc, int e) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto [m, jj, j, b, active] = epilogue_element<J>(a, j0, m0, e);
  if (!active) return;
  const int H = a.hidden;
  auto* dh_state = static_cast<acc_t*>(a.dh_state);
  auto* dc_state = static_cast<acc_t*>(a.dc_state);
  acc_t dh;
  if (a.dh_direct != nullptr) {
    dh = static_cast<const acc_t*>(a.dh_direct)[b * H + j];
  } else {
    dh = static_cast<acc_t>(static_cast<const scalar_t*>(a.grad_y)[b * a.ld_grad_y + j]) +
         dh_state[b * H + j] + C[m * ldc + jj];
    dh_state[b * H + j] = acc_t(0);
  }
  const scalar_t* w = static_cast<const scalar_t*>(a.ws) + b * 5 * H + j;
  const LstmActs<acc_t> act{static_cast<acc_t>(w[0]), static_cast<acc_t>(w[H]),
                            static_cast<acc_t>(w[2 * H]), static_cast<acc_t>(w[3 * H]),
                            static_cast<acc_t>(w[4 * H])};
  const acc_t c_prev = static_cast<acc_t>(
      b < a.carry ? static_cast<const scalar_t*>(a.ws_prev)[b * 5 * H + 4 * H + j]
                  : static_cast<const scalar_t*>(a.c0)[b * H + j]);
  const auto d = lstm_cell_backward(act, c_prev, dh, dc_state[b * H + j]);
  dc_state[b * H + j] = d.dc_prev;
  scalar_t* dg = static_cast<scalar_t*>(a.dgates) + b * a.ld_dgates + j;
  dg[0] = static_cast<scalar_t>(d.di);
  dg[H] = static_cast<scalar_t>(d.df);
  dg[2 * H] = static_cast<scalar_t>(d.dg);
  dg[3 * H] = static_cast<scalar_t>(d.d_o);
}

template <typename scalar_t, typename Gemm, int J>
__global__ void __launch_bounds__(Gemm::kThreads, kStepMinBlocks) lstm_bwd_step_kernel(
    const __grid_constant__ StepGroup<LstmBwdStepArgs> group) {
  using acc_t = at::opmath_type<scalar_t>;
  const LstmBwdStepArgs& a = group.dir[blockIdx.z];
  extern __shared__ __align__(128) unsigned char smem[];
  const int j0 = blockIdx.x * J, m0 = blockIdx.y * Gemm::BM;
  if (m0 >= step_rows(a)) return;  // the other direction's batch is larger (whole block)
  const acc_t* C = Gemm::template run<J, acc_t>(step_operands<scalar_t>(a, j0, m0), smem);
  for (int e = threadIdx.x; e < Gemm::BM * J; e += Gemm::kThreads) {
    step_epilogue<scalar_t, J>(a, j0, m0, C, Gemm::LDC, e);
  }
}

// Tile choices of lstm_fwd_step_kernel (launched through run_step).
template <typename scalar_t>
struct LstmFwdTiles {
  using acc_t = at::opmath_type<scalar_t>;
  using elem_t = typename MmaElement<scalar_t>::type;
  using MmaSmall = Tile<MmaGemm<scalar_t, 16, 32, chunk<elem_t>(128), 4>, 8>;
  using MmaLarge = Tile<MmaGemm<scalar_t, 64, 64, chunk<elem_t>(64), 4>, 16>;
  using MmaSmallDeep = Tile<MmaGemm<scalar_t, 16, 32, chunk<elem_t>(256), 4>, 8>;
  using MmaLargeDeep = Tile<MmaGemm<scalar_t, 64, 64, chunk<elem_t>(128), 4>, 16>;
  using SimtSmall = Tile<SimtGemm<16, 32, chunk<acc_t>(256), 2, 2>, 8>;
  using SimtLarge = Tile<SimtGemm<64, 64, chunk<acc_t>(128), 4, 4>, 16>;

  template <typename T>
  static auto kernel() {
    return lstm_fwd_step_kernel<scalar_t, typename T::Gemm, T::J>;
  }
  template <typename T>
  static void launch(const StepGroup<LstmFwdStepArgs>& a, int rows, cudaStream_t stream) {
    launch_step<typename T::Gemm, acc_t>(kernel<T>(), a, a.dir[0].hidden, T::J, rows, stream);
  }
};

// Tile choices of lstm_bwd_step_kernel (launched through run_step).
template <typename scalar_t>
struct LstmBwdTiles : BackwardTileTable<scalar_t> {
  using acc_t = at::opmath_type<scalar_t>;

  template <typename T>
  static auto kernel() {
    return lstm_bwd_step_kernel<scalar_t, typename T::Gemm, T::J>;
  }
  template <typename T>
  static void launch(const StepGroup<LstmBwdStepArgs>& a, int rows, cudaStream_t stream) {
    launch_step<typename T::Gemm, acc_t>(kernel<T>(), a, a.dir[0].hidden, T::J, rows, stream);
  }
};

template <typename scalar_t>
void lstm_fwd_step_impl(const StepGroup<LstmFwdStepArgs>& a, const StepConfig& cfg) {
  run_step<scalar_t, LstmFwdTiles<scalar_t>>(a, cfg);
}

template <typename scalar_t>
void lstm_bwd_step_impl(const StepGroup<LstmBwdStepArgs>& a, const StepConfig& cfg) {
  run_step<scalar_t, LstmBwdTiles<scalar_t>>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
