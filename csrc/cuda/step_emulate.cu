// CPU emulation of the per-step CUDA launches, for the tests: the step
// loops' own arguments (step_loops.h), the kernels' own operand maps and
// epilogues (lstm_step.cuh, gru_step.cuh) and launch grid (step_grid), and
// the GEMM's own staging (tile_gemm.cuh: every thread's loads of each
// k-chunk, 16-byte vectors where aligned, into shared-memory tiles laid out
// as the kernel's), with a plain sum over each staged chunk in place of the
// tensor cores' or the FMA threads' order; blocks one after another (a
// launch's blocks are independent). Registered for CPU tensors as
// rnnfuse::step_emulate_{lstm,gru}_bidir_{fwd,bwd}: the bidirectional
// drivers on these loops, compared with the CPU ops
// (tests/test_step_emulator.py). What it cannot see: the MMA fragments, the
// barriers and the overlap of one chunk's loads with the last one's math,
// which only a GPU runs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "../recurrence.h"
#include "gru_step.cuh"
#include "lstm_step.cuh"
#include "step_loops.h"

namespace rnnfuse {
namespace {

using namespace cuda;

// Whether a tile's traits stage their operands in an element type (the
// tensor-core tiles). C++17's detection idiom, not a requires-expression:
// torch 2.11 (the GPU machine's) builds extensions as C++17.
template <typename Gemm, typename = void>
struct stages_elements : std::false_type {};
template <typename Gemm>
struct stages_elements<Gemm, std::void_t<typename Gemm::elem_t>> : std::true_type {};

// Block (j0, m0)'s GEMM tile C [BM][BN] (row stride BN), built from the
// kernel's staging: per k-chunk, each of the block's threads in turn loads
// and stores its part of the chunk into tiles with the kernel's layout; the
// chunk's products are then summed in the accumulation type.
template <typename Gemm, int J, typename scalar_t>
void emulate_tile(const TileOperands<scalar_t>& op, std::vector<at::opmath_type<scalar_t>>& C) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int BM = Gemm::BM, BN = Gemm::BN, BK = Gemm::BK;
  std::fill(C.begin(), C.end(), acc_t(0));
  if constexpr (stages_elements<Gemm>::value) {
    using elem_t = typename Gemm::elem_t;
    constexpr int LDS = Gemm::LDS, MK = Gemm::Traits::K;
    // 16-byte aligned, as the kernel's shared memory; elem_t has scalar_t's bits.
    std::vector<uint4> a_tile(BM * LDS * sizeof(elem_t) / 16);
    std::vector<uint4> b_tile(BN * LDS * sizeof(elem_t) / 16);
    auto* As = reinterpret_cast<elem_t*>(a_tile.data());
    auto* Bs = reinterpret_cast<elem_t*>(b_tile.data());
    const auto a_row = [&](int m) { return Gemm::a_row_elems(op, m); };
    const auto w_row = [&](int c) { return Gemm::template w_row_elems<J>(op, c); };
    const auto at = [](int r, int kk) { return Gemm::smem_index(r, kk); };
    for (int k0 = 0; k0 < op.k; k0 += BK) {
      const int k_len = std::min(BK, op.k - k0);
      const int k_mma = (k_len + MK - 1) / MK * MK;  // the MMAs run over the zero fill
      for (int tid = 0; tid < Gemm::kThreads; ++tid) {
        typename Gemm::AStage a;
        typename Gemm::BStage b;
        a.load(a_row, k0, k_len, tid);
        b.load(w_row, k0, k_len, tid);
        a.store(As, at, tid);
        b.store(Bs, at, tid);
      }
      const auto* A = reinterpret_cast<const scalar_t*>(As);
      const auto* B = reinterpret_cast<const scalar_t*>(Bs);
      for (int m = 0; m < BM; ++m)
        for (int c = 0; c < BN; ++c)
          for (int kk = 0; kk < k_mma; ++kk)
            C[m * BN + c] +=
                static_cast<acc_t>(A[m * LDS + kk]) * static_cast<acc_t>(B[c * LDS + kk]);
    }
  } else {
    std::vector<acc_t> As(BK * (BM + 1)), Bs(BK * (BN + 1));
    const auto a_row = [&](int m) { return op.a_row(m); };
    const auto w_row = [&](int c) { return op.template w_row<J>(c); };
    const auto to_acc = [](scalar_t x) { return static_cast<acc_t>(x); };
    const auto a_at = [](int m, int kk) { return Gemm::a_index(m, kk); };
    const auto b_at = [](int c, int kk) { return Gemm::b_index(c, kk); };
    for (int k0 = 0; k0 < op.k; k0 += BK) {
      const int k_len = std::min(BK, op.k - k0);
      for (int tid = 0; tid < Gemm::kThreads; ++tid) {
        typename Gemm::template AStage<acc_t> a;
        typename Gemm::template BStage<acc_t> b;
        a.load(a_row, to_acc, acc_t(0), k0, k_len, tid);
        b.load(w_row, to_acc, acc_t(0), k0, k_len, tid);
        a.store(As.data(), a_at, tid);
        b.store(Bs.data(), b_at, tid);
      }
      for (int m = 0; m < BM; ++m)
        for (int c = 0; c < BN; ++c)
          for (int kk = 0; kk < k_len; ++kk)
            C[m * BN + c] += As[Gemm::a_index(m, kk)] * Bs[Gemm::b_index(c, kk)];
    }
  }
}

// One launch of Tiles' kernel on tile T.
template <typename scalar_t, typename Tiles, typename T, typename Args>
void emulate_launch(const StepGroup<Args>& group) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int BM = T::Gemm::BM, BN = T::Gemm::BN, J = T::J;
  const dim3 grid = step_grid(group.dir[0].hidden, J, group_rows(group), BM, group.count);
  std::vector<acc_t> tile(BM * BN);
  for (unsigned z = 0; z < grid.z; ++z) {
    const Args& a = group.dir[z];
    for (unsigned y = 0; y < grid.y; ++y) {
      const int m0 = static_cast<int>(y) * BM;
      if (m0 >= step_rows(a)) continue;  // as the kernels return
      for (unsigned x = 0; x < grid.x; ++x) {
        const int j0 = static_cast<int>(x) * J;
        emulate_tile<typename T::Gemm, J>(step_operands<scalar_t>(a, j0, m0), tile);
        for (int e = 0; e < BM * J; ++e) {
          step_epilogue<scalar_t, J>(a, j0, m0, tile.data(), BN, e);
        }
      }
    }
  }
}

// The loops' launch: tile 0..5 = tensor-core small, large, FMA small, large,
// tensor-core small and large with the deep k-chunk.
template <typename scalar_t>
struct EmulatedLaunch {
  int tile;

  template <typename Tiles, typename Args>
  void run(const StepGroup<Args>& g) const {
    if constexpr (kHasTensorCores<scalar_t>) {
      if (tile == 0) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaSmall>(g);
      if (tile == 1) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaLarge>(g);
      if (tile == 4) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaSmallDeep>(g);
      if (tile == 5) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaLargeDeep>(g);
    }
    if (tile == 2) return emulate_launch<scalar_t, Tiles, typename Tiles::SimtSmall>(g);
    if (tile == 3) return emulate_launch<scalar_t, Tiles, typename Tiles::SimtLarge>(g);
    TORCH_CHECK(false, "rnnfuse step emulator: tile ", tile, " does not exist for this dtype");
  }
  void operator()(const StepGroup<LstmFwdStepArgs>& g) const { run<LstmFwdTiles<scalar_t>>(g); }
  void operator()(const StepGroup<LstmBwdStepArgs>& g) const { run<LstmBwdTiles<scalar_t>>(g); }
  void operator()(const StepGroup<GruFwdStepArgs>& g) const { run<GruFwdTiles<scalar_t>>(g); }
  void operator()(const StepGroup<GruBwdStepArgs>& g) const { run<GruBwdTiles<scalar_t>>(g); }
};

int tile_index(int64_t tile) {
  TORCH_CHECK(tile >= 0 && tile <= 5, "rnnfuse step emulator: tile must be 0..5, got ", tile);
  return static_cast<int>(tile);
}

#define RNNFUSE_EMULATE_DISPATCH(dtype, ...)                                          \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, "rnnfuse_step_emulate", \
                                  __VA_ARGS__)

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_fwd_emulated(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& batch_sizes, bool training, int64_t tile) {
  const auto loop = [&](const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
    RNNFUSE_EMULATE_DISPATCH(f[0].x_proj.scalar_type(), [&] {
      step_loops::lstm_forward_steps(f, steps, 2, EmulatedLaunch<scalar_t>{tile_index(tile)});
    });
  };
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes,
                            training, loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_bwd_emulated(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                        const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                        const at::Tensor& w_hh_rev, const OptTensor& w_hr,
                        const OptTensor& w_hr_rev, const at::Tensor& h0, const at::Tensor& c0,
                        const at::Tensor& y, const at::Tensor& workspace,
                        const OptTensor& batch_sizes, int64_t tile) {
  const auto loop = [&](const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
    RNNFUSE_EMULATE_DISPATCH(g[0].grad_y.scalar_type(), [&] {
      step_loops::lstm_backward_steps(g, steps, 2, EmulatedLaunch<scalar_t>{tile_index(tile)});
    });
  };
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0,
                             y, workspace, batch_sizes, loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_fwd_emulated(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& b_hh, const OptTensor& b_hh_rev, const at::Tensor& h0,
    const OptTensor& batch_sizes, bool training, int64_t tile) {
  const auto loop = [&](const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
    RNNFUSE_EMULATE_DISPATCH(f[0].x_proj.scalar_type(), [&] {
      step_loops::gru_forward_steps(f, steps, 2, EmulatedLaunch<scalar_t>{tile_index(tile)});
    });
  };
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_bwd_emulated(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                       const at::Tensor& w_hh, const at::Tensor& w_hh_rev, const OptTensor& b_hh,
                       const OptTensor& b_hh_rev, const at::Tensor& h0, const at::Tensor& y,
                       const at::Tensor& workspace, const OptTensor& batch_sizes, int64_t tile) {
  const auto loop = [&](const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
    RNNFUSE_EMULATE_DISPATCH(g[0].grad_y.scalar_type(), [&] {
      step_loops::gru_backward_steps(g, steps, 2, EmulatedLaunch<scalar_t>{tile_index(tile)});
    });
  };
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes, loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("step_emulate_lstm_bidir_fwd", &rnnfuse::lstm_bidir_fwd_emulated);
  m.impl("step_emulate_lstm_bidir_bwd", &rnnfuse::lstm_bidir_bwd_emulated);
  m.impl("step_emulate_gru_bidir_fwd", &rnnfuse::gru_bidir_fwd_emulated);
  m.impl("step_emulate_gru_bidir_bwd", &rnnfuse::gru_bidir_bwd_emulated);
}
