// The cells' backward on the CPU: the layer's backward time loop for the one
// step (lstm_backward_gates / gru_backward_gates, the CPU loop), then the four
// GEMMs a cell's gradients need (dx = dgates @ w_ih, dh0 = dgates @ w_hh,
// dW_ih = dgates^T @ x, dW_hh = dgates^T @ h0) side by side in one parallel
// region (gemm_group.h). Each is too small to occupy the threads alone, and
// they are independent; the composite body (driver_cell.cpp) runs them one
// after another, two of them inside the layer op. Same values as that body up
// to the GEMMs' summation order.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../driver_cell.h"
#include "../driver_common.h"
#include "../recurrence.h"
#include "gemm_group.h"
#include "loops.h"

namespace rnnfuse {
namespace {

struct CellGrads {
  at::Tensor x, w_ih, w_hh;
};

// The gradients of x, w_ih and w_hh from the step's pre-activation gradients,
// d_in (B, G*H) on the input side and d_rec on the recurrent side (one tensor
// for the LSTM), and d_rec @ w_hh, written to rec_into (or, with accumulate,
// added to it).
CellGrads cell_gemms(const at::Tensor& d_in, const at::Tensor& d_rec, const at::Tensor& x,
                     const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& h0,
                     const at::Tensor& rec_into, bool accumulate) {
  CellGrads g;
  g.x = empty_rows({x.size(0), x.size(1)}, x.options());
  g.w_ih = empty_rows({w_ih.size(0), w_ih.size(1)}, w_ih.options());
  g.w_hh = empty_rows({w_hh.size(0), w_hh.size(1)}, w_hh.options());
  gemm_group({{d_in, w_ih, g.x},
              {d_rec, w_hh, rec_into, accumulate},
              {d_in.t(), x, g.w_ih},
              {d_rec.t(), h0, g.w_hh}});
  return g;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_cell_bwd_cpu(const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& x,
                  const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& h0,
                  const at::Tensor& c0, const at::Tensor& h, const at::Tensor& workspace,
                  bool bias) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_bwd_inputs(grad_h, x, w_ih, w_hh);
  // One step: the gradient of h enters as that of y, nothing as that of h_n.
  std::vector<Step> steps;
  const LstmBackward b =
      lstm_backward_gates(grad_h, at::zeros_like(grad_h), grad_c, w_hh, c10::nullopt, h0, c0, h,
                          workspace, c10::nullopt, false, &lstm_backward_loop_cpu, steps);
  // The loop leaves dh_state zero: h0's gradient is the recurrent term alone.
  auto grad_h0 = at::empty({h0.size(0), h0.size(1)}, h0.options());
  const auto g = cell_gemms(b.dgates, b.dgates, x, w_ih, b.w_hh, h0.contiguous(), grad_h0, false);
  auto grad_bias = bias ? b.dgates.sum(0) : at::empty({0}, b.dgates.options());
  return {g.x, g.w_ih, g.w_hh, grad_bias, grad_h0, as_dtype(b.dc_state, c0.scalar_type())};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_cell_bwd_cpu(const at::Tensor& grad_h, const at::Tensor& x, const at::Tensor& w_ih,
                 const at::Tensor& w_hh, const OptTensor& b_hh, const at::Tensor& h0,
                 const at::Tensor& h, const at::Tensor& workspace) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_bwd_inputs(grad_h, x, w_ih, w_hh);
  std::vector<Step> steps;
  const GruBackward b =
      gru_backward_gates(grad_h, at::zeros_like(grad_h), w_hh, b_hh, h0, h, workspace,
                         c10::nullopt, false, &gru_backward_loop_cpu, steps);
  // h0's gradient: the loop's direct term (dh_state, in the accumulation
  // dtype) plus dhh @ w_hh, added in place where the dtypes agree.
  const bool in_place = b.dh_state.scalar_type() == b.dhh.scalar_type();
  const auto rec = in_place ? b.dh_state : at::empty({h0.size(0), h0.size(1)}, h0.options());
  const auto g = cell_gemms(b.dx, b.dhh, x, w_ih, b.w_hh, b.h0, rec, in_place);
  if (!in_place) b.dh_state.add_(rec.to(b.dh_state.scalar_type()));
  at::Tensor grad_b_ih, grad_b_hh;
  if (defined(b_hh)) {
    grad_b_ih = b.dx.sum(0);
    grad_b_hh = b.dhh.sum(0, /*keepdim=*/false, b.dh_state.scalar_type()).to(b_hh->scalar_type());
  } else {
    grad_b_ih = at::empty({0}, b.dx.options());
    grad_b_hh = at::empty({0}, w_hh.options());
  }
  return {g.x, g.w_ih, g.w_hh, grad_b_ih, grad_b_hh, as_dtype(b.dh_state, h0.scalar_type())};
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_cell_bwd", &rnnfuse::lstm_cell_bwd_cpu);
  m.impl("gru_cell_bwd", &rnnfuse::gru_cell_bwd_cpu);
}
