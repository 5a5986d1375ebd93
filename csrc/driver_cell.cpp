// The single-step cells (LSTMCell, GRUCell) as one op each: the input
// projection and the step in one call, so a cell call crosses the dispatcher
// and Python once instead of for a GEMM and then a layer op. Each is a
// device-independent composition of ATen GEMMs and the layer ops
// (rnnfuse::lstm_fwd / lstm_bwd / gru_fwd / gru_bwd, reached through the
// dispatcher so that each backend's own kernels run), registered once for
// every backend as CompositeExplicitAutograd. Autograd and the fake kernels
// come from rnnfuse/ops.py, as for the layer ops. Like every rnnfuse op they
// compute in their arguments' dtype: autocast's policy is applied by the
// caller (rnnfuse/_autocast.py), so it must not recast the GEMMs in here.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include "driver_cell.h"
#include "driver_common.h"

namespace rnnfuse {
namespace {

template <typename Sig>
c10::TypedOperatorHandle<Sig> layer_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using LstmFwdSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const OptTensor&, const at::Tensor&, const at::Tensor&,
    const OptTensor&, bool, bool);
using LstmBwdSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&,
    bool);
using GruFwdSig = std::tuple<at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const OptTensor&, const at::Tensor&, const OptTensor&,
    bool, bool);
using GruBwdSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptTensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&, const OptTensor&, bool);

}  // namespace

void check_cell_inputs(const char* cell, int64_t gates, const at::Tensor& x,
                       const at::Tensor& w_ih, const at::Tensor& h0, const OptTensor& b_ih,
                       const OptTensor& b_hh) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "rnnfuse.", cell,
              ": expected a floating-point x, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 2, "rnnfuse.", cell, ": x must be 2-D (batch, input_size), got ",
              x.dim(), "-D");
  check_operand(h0, "h0", 2, x, "x");
  check_operand(w_ih, "w_ih", 2, x, "x");
  check_shape(w_ih, "w_ih", {gates * h0.size(1), x.size(1)});
  check_shape(x, "x", {h0.size(0), x.size(1)});
  TORCH_CHECK(defined(b_ih) == defined(b_hh), "rnnfuse.", cell,
              ": b_ih and b_hh must both be given or both be None");
  for (const auto& [b, name] : {std::pair{&b_ih, "b_ih"}, std::pair{&b_hh, "b_hh"}}) {
    if (defined(*b)) {
      check_operand(**b, name, 1, x, "x");
      check_shape(**b, name, {gates * h0.size(1)});
    }
  }
}

void check_cell_bwd_inputs(const at::Tensor& grad_h, const at::Tensor& x, const at::Tensor& w_ih,
                           const at::Tensor& w_hh) {
  check_operand(x, "x", 2, grad_h, "grad_h");
  check_operand(w_ih, "w_ih", 2, grad_h, "grad_h");
  check_shape(w_ih, "w_ih", {w_hh.size(0), x.size(1)});
}

namespace {

// x @ w_ih^T (+ bias): the step's input projection, (B, G*H).
at::Tensor project(const at::Tensor& x, const at::Tensor& w_ih, const OptTensor& bias) {
  return defined(bias) ? at::addmm(*bias, x, w_ih.t()) : at::mm(x, w_ih.t());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_fwd_composite(
    const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const at::Tensor& h0, const at::Tensor& c0, bool training) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_inputs("lstm_cell", 4, x, w_ih, h0, b_ih, b_hh);
  // Both biases add to the same pre-activation: one bias for the projection.
  const OptTensor bias = defined(b_ih) ? OptTensor(*b_ih + *b_hh) : OptTensor();
  static const auto fwd = layer_op<LstmFwdSig>("rnnfuse::lstm_fwd");
  auto [h, h_n, c_n, ws] =
      fwd.call(project(x, w_ih, bias), w_hh, c10::nullopt, h0, c0, c10::nullopt, false, training);
  return {h, c_n, ws};  // one step: y is h_n
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_cell_bwd_composite(
    const at::Tensor& grad_h, const at::Tensor& grad_c, const at::Tensor& x,
    const at::Tensor& w_ih, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
    const at::Tensor& h, const at::Tensor& workspace, bool bias) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_bwd_inputs(grad_h, x, w_ih, w_hh);
  static const auto bwd = layer_op<LstmBwdSig>("rnnfuse::lstm_bwd");
  // One step: the gradient of h enters as that of y, nothing as that of h_n.
  auto [grad_pre, grad_w_hh, grad_w_hr, grad_h0, grad_c0] =
      bwd.call(grad_h, at::zeros_like(grad_h), grad_c, w_hh, c10::nullopt, h0, c0, h, workspace,
               c10::nullopt, false);
  auto grad_bias = bias ? grad_pre.sum(0) : at::empty({0}, grad_pre.options());
  return {at::mm(grad_pre, w_ih), rows_mm(grad_pre.t(), x), grad_w_hh, grad_bias, grad_h0,
          grad_c0};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> gru_cell_fwd_composite(
    const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const at::Tensor& h0, bool training) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_inputs("gru_cell", 3, x, w_ih, h0, b_ih, b_hh);
  static const auto fwd = layer_op<GruFwdSig>("rnnfuse::gru_fwd");
  auto [h, h_n, ws] =
      fwd.call(project(x, w_ih, b_ih), w_hh, b_hh, h0, c10::nullopt, false, training);
  return {h, ws};
}

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_cell_bwd_composite(
    const at::Tensor& grad_h, const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh,
    const OptTensor& b_hh, const at::Tensor& h0, const at::Tensor& h,
    const at::Tensor& workspace) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_bwd_inputs(grad_h, x, w_ih, w_hh);
  static const auto bwd = layer_op<GruBwdSig>("rnnfuse::gru_bwd");
  auto [grad_pre, grad_w_hh, grad_b_hh, grad_h0] = bwd.call(
      grad_h, at::zeros_like(grad_h), w_hh, b_hh, h0, h, workspace, c10::nullopt, false);
  auto grad_b_ih = defined(b_hh) ? grad_pre.sum(0) : at::empty({0}, grad_pre.options());
  return {at::mm(grad_pre, w_ih), rows_mm(grad_pre.t(), x), grad_w_hh, grad_b_ih, grad_b_hh,
          grad_h0};
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CompositeExplicitAutograd, m) {
  m.impl("lstm_cell_fwd", &rnnfuse::lstm_cell_fwd_composite);
  m.impl("lstm_cell_bwd", &rnnfuse::lstm_cell_bwd_composite);
  m.impl("gru_cell_fwd", &rnnfuse::gru_cell_fwd_composite);
  m.impl("gru_cell_bwd", &rnnfuse::gru_cell_bwd_composite);
}
