// The cluster tier's backward kernel (cluster_bwd_kernel.cuh: the CUDA
// source itself) executed on the CPU by simt.h's fibers, for the tests:
// rnnfuse::persistent_simt_cluster_{lstm,gru}_bwd (and _bidir_bwd: both
// directions in one launch) take the cluster backward emulator's arguments
// and run the backward drivers with the kernel as the time loop (parameters
// from operands.h's cluster_backward_launch). The
// runtime models the clusters, their barrier, the mbarriers and st.async
// bytes in flight until a random later round (simt.h).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <torch/library.h>

#include "cluster_bwd_kernel.cuh"
#include "operands.h"

namespace rnnfuse {
namespace persist {
namespace {

// One launch of `n` directions (1, or 2 of a bidirectional layer: clusters
// [d * R, (d + 1) * R) run direction d).
void backward(Cell cell, int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed,
              const BwdOperands* const* dirs, int n) {
  const PersistClusterBwdLaunch launch =
      cluster_backward_launch(cell, units, replicas, elem_bytes, dirs, n);
  const ClusterBwdPartition& p = launch.dir[0].part;
  const at::ScalarType t = dirs[0]->grad_y.scalar_type();
  const auto kernel = t == at::kHalf ? cluster_bwd_kernel_for<__half>(cell, p.mstride)
                      : t == at::kBFloat16 ? cluster_bwd_kernel_for<__nv_bfloat16>(cell, p.mstride)
                                           : cluster_bwd_kernel_for<float>(cell, p.mstride);
  TORCH_CHECK(kernel != nullptr, "simt: no cluster backward kernel for ", p.mstride,
              " m-tile slots");
  simt::run_grid(n * p.cluster_grid(), kThreads,
                 static_cast<size_t>(cluster_bwd_smem(p, int(elem_bytes), cell).total), seed,
                 simt::idle_step_ns(launch.dir[0].watchdog_ns), [&] { kernel(launch); },
                 p.cluster());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_lstm_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed) {
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, c10::nullopt, h0, c0, y, workspace,
                       batch_sizes, reverse,
                       [&](const LstmBackward& g, const std::vector<Step>& steps) {
                         const BwdOperands o = bwd_operands(g, steps);
                         const BwdOperands* dirs[1] = {&o};
                         backward(Cell::LSTM, units, replicas, elem_bytes, seed, dirs, 1);
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed) {
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      [&](const GruBackward& g, const std::vector<Step>& steps) {
                        const BwdOperands o = bwd_operands(g, steps);
                        const BwdOperands* dirs[1] = {&o};
                        backward(Cell::GRU, units, replicas, elem_bytes, seed, dirs, 1);
                      });
}

// Both directions of a bidirectional layer's backward in one launch (their
// column blocks of grad_y, y and the gradients, through row strides).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
simt_lstm_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
                    const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
                    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes,
                    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed) {
  return lstm_bidir_backward(
      grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, c10::nullopt, c10::nullopt, h0, c0, y,
      workspace, batch_sizes,
      [&](const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
        const BwdOperands o[2] = {bwd_operands(g[0], steps[0]), bwd_operands(g[1], steps[1])};
        const BwdOperands* dirs[2] = {&o[0], &o[1]};
        backward(Cell::LSTM, units, replicas, elem_bytes, seed, dirs, 2);
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
simt_gru_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                   const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                   const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                   const at::Tensor& y, const at::Tensor& workspace,
                   const c10::optional<at::Tensor>& batch_sizes, int64_t units, int64_t replicas,
                   int64_t elem_bytes, int64_t seed) {
  return gru_bidir_backward(
      grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace, batch_sizes,
      [&](const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
        const BwdOperands o[2] = {bwd_operands(g[0], steps[0]), bwd_operands(g[1], steps[1])};
        const BwdOperands* dirs[2] = {&o[0], &o[1]};
        backward(Cell::GRU, units, replicas, elem_bytes, seed, dirs, 2);
      });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_simt_cluster_lstm_bwd", &rnnfuse::persist::simt_lstm_bwd);
  m.impl("persistent_simt_cluster_gru_bwd", &rnnfuse::persist::simt_gru_bwd);
  m.impl("persistent_simt_cluster_lstm_bidir_bwd", &rnnfuse::persist::simt_lstm_bidir_bwd);
  m.impl("persistent_simt_cluster_gru_bidir_bwd", &rnnfuse::persist::simt_gru_bidir_bwd);
}
