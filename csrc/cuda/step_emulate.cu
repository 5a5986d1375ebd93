// CPU emulation of the per-step CUDA launches, for the tests: the step
// loops' own arguments (step_loops.h), the kernels' own operand maps and
// epilogues (lstm_step.cuh, gru_step.cuh) and launch grid (step_grid), with
// a plain GEMM over each block's tile in place of the tensor cores, blocks
// one after another (a launch's blocks are independent). Registered for CPU
// tensors as rnnfuse::step_emulate_{lstm,gru}_bidir_{fwd,bwd}: the
// bidirectional drivers on these loops, compared with the CPU ops
// (tests/test_step_emulator.py). What it cannot see: the GEMM's staging and
// shared-memory layout, which only a GPU runs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "../recurrence.h"
#include "gru_step.cuh"
#include "lstm_step.cuh"
#include "step_loops.h"

namespace rnnfuse {
namespace {

using namespace cuda;

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
        const TileOperands<scalar_t> op = step_operands<scalar_t>(a, j0, m0);
        for (int m = 0; m < BM; ++m) {
          const scalar_t* a_row = op.a_row(m);
          for (int c = 0; c < BN; ++c) {
            const scalar_t* w_row = op.template w_row<J>(c);
            acc_t sum = 0;
            if (a_row != nullptr && w_row != nullptr) {
              for (int k = 0; k < op.k; ++k) {
                sum += static_cast<acc_t>(a_row[k]) * static_cast<acc_t>(w_row[k]);
              }
            }
            tile[m * BN + c] = sum;
          }
        }
        for (int e = 0; e < BM * J; ++e) {
          step_epilogue<scalar_t, J>(a, j0, m0, tile.data(), BN, e);
        }
      }
    }
  }
}

// The loops' launch: tile 0..3 = tensor-core small, large, FMA small, large.
template <typename scalar_t>
struct EmulatedLaunch {
  int tile;

  template <typename Tiles, typename Args>
  void run(const StepGroup<Args>& g) const {
    if constexpr (kHasTensorCores<scalar_t>) {
      if (tile == 0) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaSmall>(g);
      if (tile == 1) return emulate_launch<scalar_t, Tiles, typename Tiles::MmaLarge>(g);
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
  TORCH_CHECK(tile >= 0 && tile <= 3, "rnnfuse step emulator: tile must be 0..3, got ", tile);
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
