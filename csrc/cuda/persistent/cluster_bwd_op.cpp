// The cluster tier's backward kernel launched on the GPU with a given
// partition (rnnfuse::persistent_cuda_cluster_{lstm,gru}_bwd): the CUDA
// counterpart of the fiber runs (simt_cluster_bwd_run.cpp), for the GPU
// tests and the GPU check's sanitizer cases, so a GPU can prove the kernel
// bit for bit against its emulator at any partition, not only the one the
// planner picks for the driver's backward (loops_persistent.cpp). The
// backward drivers run with the kernel as their time loop, on the caller's
// stream and device. A partition the device cannot co-schedule now is a
// clear error, never a fallback: this op exists to run this kernel.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../../recurrence.h"
#include "args.h"
#include "operands.h"

namespace rnnfuse {
namespace persist {
namespace {

void launch(Cell cell, int64_t units, int64_t replicas, int64_t elem_bytes, const BwdOperands& o) {
  const BwdOperands* dirs[1] = {&o};
  const PersistClusterBwdLaunch args =
      cluster_backward_launch(cell, units, replicas, elem_bytes, dirs, 1);
  const ClusterBwdPartition& p = args.dir[0].part;
  const at::ScalarType t = o.grad_y.scalar_type();
  const ElemKind kind =
      t == at::kHalf ? ElemKind::F16 : t == at::kBFloat16 ? ElemKind::BF16 : ElemKind::TF32;
  const size_t smem = static_cast<size_t>(cluster_bwd_smem(p, int(elem_bytes), cell).total);
  const cudaError_t err = launch_persist_cluster_bwd(
      kind, cell, args, smem, c10::cuda::getCurrentCUDAStream().stream());
  if (err == cudaErrorNotSupported) {
    (void)cudaGetLastError();  // nothing was launched
    TORCH_CHECK(false, "rnnfuse: the device cannot run clusters of ", p.cluster(),
                " CTAs with ", smem, " bytes of shared memory each now (sm_90 needed; the "
                "occupancy API allows none)");
  }
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void check_cuda(const at::Tensor& t) {
  TORCH_CHECK(t.is_cuda(), "rnnfuse: the cluster backward launch takes CUDA tensors, got one on ",
              t.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> cuda_lstm_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes) {
  check_cuda(grad_y);
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, c10::nullopt, h0, c0, y, workspace,
                       batch_sizes, reverse,
                       [&](const LstmBackward& g, const std::vector<Step>& steps) {
                         launch(Cell::LSTM, units, replicas, elem_bytes, bwd_operands(g, steps));
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> cuda_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t elem_bytes) {
  check_cuda(grad_y);
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      [&](const GruBackward& g, const std::vector<Step>& steps) {
                        launch(Cell::GRU, units, replicas, elem_bytes, bwd_operands(g, steps));
                      });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CUDA, m) {
  m.impl("persistent_cuda_cluster_lstm_bwd", &rnnfuse::persist::cuda_lstm_bwd);
  m.impl("persistent_cuda_cluster_gru_bwd", &rnnfuse::persist::cuda_gru_bwd);
}
