// The cluster tier's backward kernel (cluster_bwd_kernel.cuh: the CUDA
// source itself) executed on the CPU by simt.h's fibers, for the tests:
// rnnfuse::persistent_simt_cluster_{lstm,gru}_bwd take the cluster backward
// emulator's arguments and run the backward drivers with the kernel as the
// time loop (parameters from operands.h's cluster_backward_args). The
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

void backward(Cell cell, int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed,
              const BwdOperands& o) {
  const PersistClusterBwdLaunch launch =
      cluster_backward_launch(cell, units, replicas, elem_bytes, o);
  const ClusterBwdPartition& p = launch.dir[0].part;
  const at::ScalarType t = o.grad_y.scalar_type();
  const auto kernel = t == at::kHalf ? cluster_bwd_kernel_for<__half>(cell, p.mstride)
                      : t == at::kBFloat16 ? cluster_bwd_kernel_for<__nv_bfloat16>(cell, p.mstride)
                                           : cluster_bwd_kernel_for<float>(cell, p.mstride);
  TORCH_CHECK(kernel != nullptr, "simt: no cluster backward kernel for ", p.mstride,
              " m-tile slots");
  simt::run_grid(p.cluster_grid(), kThreads,
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
                         backward(Cell::LSTM, units, replicas, elem_bytes, seed,
                                  bwd_operands(g, steps));
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes, int64_t seed) {
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      [&](const GruBackward& g, const std::vector<Step>& steps) {
                        backward(Cell::GRU, units, replicas, elem_bytes, seed,
                                 bwd_operands(g, steps));
                      });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_simt_cluster_lstm_bwd", &rnnfuse::persist::simt_lstm_bwd);
  m.impl("persistent_simt_cluster_gru_bwd", &rnnfuse::persist::simt_gru_bwd);
}
