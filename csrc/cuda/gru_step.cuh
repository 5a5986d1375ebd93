// Fused GRU steps. Forward: h_{t-1} @ W_hh^T (+ b_hh) for the r, z, n gates
// of a block's hidden units, then the gate math and h update in the same
// kernel. Backward: dhh_{t+1} @ W_hh for the block's units, then the gate
// derivatives of step t (the n gate's recurrent term is scaled by r, so the
// gradients of x_proj and of the recurrent term differ there and both are
// written). A launch may carry two directions of a layer (StepGroup,
// grid.z): each block works for the one its z names.
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
__host__ __device__ __forceinline__ int step_rows(const GruFwdStepArgs& a) {
  return a.h_prev.rows;
}
__host__ __device__ __forceinline__ int step_k(const GruFwdStepArgs& a) {
  return a.hidden;
}

template <typename scalar_t>
__host__ __device__ __forceinline__ TileOperands<scalar_t> step_operands(
    const GruFwdStepArgs& a, int j0, int m0) {
  return {a.h_prev, static_cast<const scalar_t*>(a.w_hh), a.hidden, a.hidden, a.hidden, j0, m0};
}

// C: the block's GEMM tile, ldc apart; columns g * J + jj are gate g of unit j0 + jj.
template <typename scalar_t, int J>
__host__ __device__ __forceinline__ void step_epilogue(
    const GruFwdStepArgs& a, int j0, int m0, const at::opmath_type<scalar_t>* C, int ldc, int e) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto [m, jj, j, b, active] = epilogue_element<J>(a, j0, m0, e);
  if (!active) return;
  const int H = a.hidden;
  const scalar_t* xr = static_cast<const scalar_t*>(a.x) + b * a.ld_x;
  const auto* bias = static_cast<const scalar_t*>(a.b_hh);
  const acc_t* cr = C + m * ldc;
  acc_t hr = cr[jj], hz = cr[J + jj], hn = cr[2 * J + jj];
  if (bias != nullptr) {
    hr += static_cast<acc_t>(bias[j]);
    hz += static_cast<acc_t>(bias[H + j]);
    hn += static_cast<acc_t>(bias[2 * H + j]);
  }
  const auto act = gru_cell_forward<acc_t>(static_cast<acc_t>(xr[j]),
                                           static_cast<acc_t>(xr[H + j]),
                                           static_cast<acc_t>(xr[2 * H + j]), hr, hz, hn);
  const auto* h_carry = static_cast<const scalar_t*>(a.h_prev.a_carry);
  const auto* h_start = static_cast<const scalar_t*>(a.h_prev.a_start);
  const acc_t h_prev = b < a.h_prev.carry
                           ? static_cast<acc_t>(h_carry[b * a.h_prev.lda_carry + j])
                           : static_cast<acc_t>(h_start[b * a.h_prev.lda_start + j]);
  static_cast<scalar_t*>(a.y)[b * a.ld_y + j] = static_cast<scalar_t>(gru_hidden(act, h_prev));
  if (a.ws != nullptr) {
    scalar_t* w = static_cast<scalar_t*>(a.ws) + b * 4 * H + j;  // rounded once, here
    w[0] = static_cast<scalar_t>(act.r);
    w[H] = static_cast<scalar_t>(act.z);
    w[2 * H] = static_cast<scalar_t>(act.n);
    w[3 * H] = static_cast<scalar_t>(act.hn);
  }
}

template <typename scalar_t, typename Gemm, int J>
__global__ void __launch_bounds__(Gemm::kThreads, kStepMinBlocks) gru_fwd_step_kernel(
    const __grid_constant__ StepGroup<GruFwdStepArgs> group) {
  using acc_t = at::opmath_type<scalar_t>;
  const GruFwdStepArgs& a = group.dir[blockIdx.z];
  extern __shared__ __align__(128) unsigned char smem[];
  const int j0 = blockIdx.x * J, m0 = blockIdx.y * Gemm::BM;
  if (m0 >= step_rows(a)) return;  // the other direction's batch is larger (whole block)
  const acc_t* C = Gemm::template run<J, acc_t>(step_operands<scalar_t>(a, j0, m0), smem);
  for (int e = threadIdx.x; e < Gemm::BM * J; e += Gemm::kThreads) {
    step_epilogue<scalar_t, J>(a, j0, m0, C, Gemm::LDC, e);
  }
}

// A step's active rows (its batch) and its GEMM's reduction length (0: none).
__host__ __device__ __forceinline__ int step_rows(const GruBwdStepArgs& a) {
  return a.dhh_next.rows;
}
__host__ __device__ __forceinline__ int step_k(const GruBwdStepArgs& a) {
  return 3 * a.hidden;
}

template <typename scalar_t>
__host__ __device__ __forceinline__ TileOperands<scalar_t> step_operands(
    const GruBwdStepArgs& a, int j0, int m0) {
  return {a.dhh_next, static_cast<const scalar_t*>(a.w_hh_t), 3 * a.hidden, a.hidden, 0, j0, m0};
}

// C: the block's GEMM tile (dhh_{t+1} @ W_hh for units j0 + jj), ldc apart.
template <typename scalar_t, int J>
__host__ __device__ __forceinline__ void step_epilogue(
    const GruBwdStepArgs& a, int j0, int m0, const at::opmath_type<scalar_t>* C, int ldc, int e) {
  using acc_t = at::opmath_type<scalar_t>;
  const auto [m, jj, j, b, active] = epilogue_element<J>(a, j0, m0, e);
  if (!active) return;
  const int H = a.hidden;
  auto* dh_state = static_cast<acc_t*>(a.dh_state);
  const acc_t dh =
      static_cast<acc_t>(static_cast<const scalar_t*>(a.grad_y)[b * a.ld_grad_y + j]) +
      dh_state[b * H + j] + C[m * ldc + jj];
  const scalar_t* w = static_cast<const scalar_t*>(a.ws) + b * 4 * H + j;
  const GruActs<acc_t> act{static_cast<acc_t>(w[0]), static_cast<acc_t>(w[H]),
                           static_cast<acc_t>(w[2 * H]), static_cast<acc_t>(w[3 * H])};
  const acc_t h_prev =
      b < a.carry
          ? static_cast<acc_t>(static_cast<const scalar_t*>(a.h_prev_rows)[b * a.ld_h_prev + j])
          : static_cast<acc_t>(static_cast<const scalar_t*>(a.h0)[b * H + j]);
  const auto d = gru_cell_backward(act, h_prev, dh);
  dh_state[b * H + j] = d.dh_prev;
  scalar_t* dxr = static_cast<scalar_t*>(a.dx) + b * a.ld_dx + j;
  scalar_t* dhr = static_cast<scalar_t*>(a.dhh) + b * a.dhh_next.lda_carry + j;
  dxr[0] = dhr[0] = static_cast<scalar_t>(d.dr);
  dxr[H] = dhr[H] = static_cast<scalar_t>(d.dz);
  dxr[2 * H] = static_cast<scalar_t>(d.dn);
  dhr[2 * H] = static_cast<scalar_t>(d.dhn);
}

template <typename scalar_t, typename Gemm, int J>
__global__ void __launch_bounds__(Gemm::kThreads, kStepMinBlocks) gru_bwd_step_kernel(
    const __grid_constant__ StepGroup<GruBwdStepArgs> group) {
  using acc_t = at::opmath_type<scalar_t>;
  const GruBwdStepArgs& a = group.dir[blockIdx.z];
  extern __shared__ __align__(128) unsigned char smem[];
  const int j0 = blockIdx.x * J, m0 = blockIdx.y * Gemm::BM;
  if (m0 >= step_rows(a)) return;  // the other direction's batch is larger (whole block)
  const acc_t* C = Gemm::template run<J, acc_t>(step_operands<scalar_t>(a, j0, m0), smem);
  for (int e = threadIdx.x; e < Gemm::BM * J; e += Gemm::kThreads) {
    step_epilogue<scalar_t, J>(a, j0, m0, C, Gemm::LDC, e);
  }
}

// Tile choices of gru_fwd_step_kernel (launched through run_step).
template <typename scalar_t>
struct GruFwdTiles {
  using acc_t = at::opmath_type<scalar_t>;
  using elem_t = typename MmaElement<scalar_t>::type;
  using MmaSmall = Tile<MmaGemm<scalar_t, 16, 48, chunk<elem_t>(128), 6>, 16>;
  using MmaLarge = Tile<MmaGemm<scalar_t, 64, 48, chunk<elem_t>(64), 4>, 16>;
  using MmaSmallDeep = Tile<MmaGemm<scalar_t, 16, 48, chunk<elem_t>(256), 6>, 16>;
  using MmaLargeDeep = Tile<MmaGemm<scalar_t, 64, 48, chunk<elem_t>(128), 4>, 16>;
  using SimtSmall = Tile<SimtGemm<16, 24, chunk<acc_t>(256), 2, 2>, 8>;
  using SimtLarge = Tile<SimtGemm<64, 48, chunk<acc_t>(128), 4, 4>, 16>;

  template <typename T>
  static auto kernel() {
    return gru_fwd_step_kernel<scalar_t, typename T::Gemm, T::J>;
  }
  template <typename T>
  static void launch(const StepGroup<GruFwdStepArgs>& a, int rows, cudaStream_t stream) {
    launch_step<typename T::Gemm, acc_t>(kernel<T>(), a, a.dir[0].hidden, T::J, rows, stream);
  }
};

// Tile choices of gru_bwd_step_kernel (launched through run_step).
template <typename scalar_t>
struct GruBwdTiles : BackwardTileTable<scalar_t> {
  using acc_t = at::opmath_type<scalar_t>;

  template <typename T>
  static auto kernel() {
    return gru_bwd_step_kernel<scalar_t, typename T::Gemm, T::J>;
  }
  template <typename T>
  static void launch(const StepGroup<GruBwdStepArgs>& a, int rows, cudaStream_t stream) {
    launch_step<typename T::Gemm, acc_t>(kernel<T>(), a, a.dir[0].hidden, T::J, rows, stream);
  }
};

template <typename scalar_t>
void gru_fwd_step_impl(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg) {
  run_step<scalar_t, GruFwdTiles<scalar_t>>(a, cfg);
}

template <typename scalar_t>
void gru_bwd_step_impl(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg) {
  run_step<scalar_t, GruBwdTiles<scalar_t>>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
