// CPU implementation of the bidirectional layer ops (both directions of one
// layer per call; driver_lstm.cpp / driver_gru.cpp hold the op bodies): the
// drivers run the CPU time loops of lstm_cpu.cpp / gru_cpu.cpp on each
// direction's column blocks, one direction after the other, each on all of
// ATen's threads. (Side by side, one thread each, was measured on two cores
// and gained nothing: benchmarks/results/cpu-2core_2026-11-28_bidir.)
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../recurrence.h"
#include "loops.h"

namespace rnnfuse {
namespace {

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& batch_sizes, bool training) {
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes,
                            training, &lstm_forward_loop_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_bwd_cpu(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
                   const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0,
                   const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
                   const OptTensor& batch_sizes) {
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0,
                             y, workspace, batch_sizes, &lstm_backward_loop_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& b_hh, const OptTensor& b_hh_rev, const at::Tensor& h0,
    const OptTensor& batch_sizes, bool training) {
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           &gru_forward_loop_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_bwd_cpu(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                  const at::Tensor& w_hh_rev, const OptTensor& b_hh, const OptTensor& b_hh_rev,
                  const at::Tensor& h0, const at::Tensor& y, const at::Tensor& workspace,
                  const OptTensor& batch_sizes) {
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes, &gru_backward_loop_cpu);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_bidir_fwd", &rnnfuse::lstm_bidir_fwd_cpu);
  m.impl("lstm_bidir_bwd", &rnnfuse::lstm_bidir_bwd_cpu);
  m.impl("gru_bidir_fwd", &rnnfuse::gru_bidir_fwd_cpu);
  m.impl("gru_bidir_bwd", &rnnfuse::gru_bidir_bwd_cpu);
}
