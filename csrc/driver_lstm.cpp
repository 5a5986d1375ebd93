// LSTM op bodies for every backend: checks, allocation, then the backend's
// time loop, then the work that spans all timesteps (final states, and in the
// backward one GEMM each for dW_hh and dW_hr).
#include <ATen/ATen.h>

#include "driver_common.h"
#include "recurrence.h"

namespace rnnfuse {
namespace {

struct LstmDims {
  int64_t rows, batch, hidden, out;  // N, B, H, P
};

LstmDims check_lstm(const at::Tensor& x_proj, const at::Tensor& w_hh,
                    const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                    const at::Tensor& c0) {
  TORCH_CHECK(at::isFloatingType(x_proj.scalar_type()),
              "rnnfuse.lstm: expected a floating-point x_proj, got ", x_proj.scalar_type());
  TORCH_CHECK(x_proj.dim() == 2, "rnnfuse.lstm: x_proj must be 2-D (rows, 4*hidden), got ",
              x_proj.dim(), "-D");
  check_operand(c0, "c0", 2, x_proj);
  LstmDims d{x_proj.size(0), c0.size(0), c0.size(1), c0.size(1)};
  check_shape(x_proj, "x_proj", {d.rows, 4 * d.hidden});
  if (w_hr.has_value() && w_hr->defined()) {
    check_operand(*w_hr, "w_hr", 2, x_proj);
    d.out = w_hr->size(0);
    check_shape(*w_hr, "w_hr", {d.out, d.hidden});
  }
  check_operand(w_hh, "w_hh", 2, x_proj);
  check_shape(w_hh, "w_hh", {4 * d.hidden, d.out});
  check_operand(h0, "h0", 2, x_proj);
  check_shape(h0, "h0", {d.batch, d.out});
  return d;
}

at::Tensor defined_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? *t : at::Tensor();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training, LstmForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const LstmDims d = check_lstm(x_proj, w_hh, w_hr, h0, c0);
  const auto steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  const auto acc = acc_dtype(x_proj.scalar_type());

  LstmForward f;
  f.x_proj = x_proj.contiguous();
  f.w_hh = w_hh.contiguous();
  f.w_hr = defined_or_undefined(w_hr);
  if (f.w_hr.defined()) f.w_hr = f.w_hr.contiguous();
  f.h0 = h0.contiguous();
  f.c_state = c0.to(acc, /*non_blocking=*/false, /*copy=*/true).contiguous();
  f.y = empty_rows({d.rows, d.out}, x_proj.options());
  f.ws = training ? empty_rows({d.rows, 5 * d.hidden}, x_proj.options().dtype(acc))
                  : at::Tensor();
  if (!steps.empty()) loop(f, steps);

  auto h_n = final_rows(f.y, h0, steps);
  auto c_n = as_dtype(f.c_state, c0.scalar_type());
  auto workspace = training ? f.ws : at::empty({0}, x_proj.options().dtype(acc));
  return {f.y, h_n, c_n, workspace};
}

LstmBackward lstm_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                                 const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                                 const at::Tensor& c0, const at::Tensor& y,
                                 const at::Tensor& workspace,
                                 const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                 LstmBackwardLoop loop, std::vector<Step>& steps) {
  TORCH_CHECK(grad_y.dim() == 2, "rnnfuse.lstm_bwd: grad_y must be 2-D, got ", grad_y.dim(), "-D");
  // Stands in for x_proj so the forward's checks apply; an expanded single
  // element, so checking allocates nothing of size N.
  const auto x_like = at::empty({1}, grad_y.options()).expand({grad_y.size(0), w_hh.size(0)});
  const LstmDims d = check_lstm(x_like, w_hh, w_hr, h0, c0);
  check_shape(grad_y, "grad_y", {d.rows, d.out});
  check_operand(y, "y", 2, grad_y, "grad_y");
  check_shape(y, "y", {d.rows, d.out});
  check_operand(grad_h_n, "grad_h_n", 2, grad_y, "grad_y");
  check_shape(grad_h_n, "grad_h_n", {d.batch, d.out});
  check_operand(grad_c_n, "grad_c_n", 2, grad_y, "grad_y");
  check_shape(grad_c_n, "grad_c_n", {d.batch, d.hidden});
  check_workspace(workspace, grad_y, d.rows, 5 * d.hidden, "lstm");
  const auto acc = acc_dtype(grad_y.scalar_type());
  steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  LstmBackward b;
  b.grad_y = grad_y.contiguous();
  b.w_hh = w_hh.contiguous();
  b.w_hr = defined_or_undefined(w_hr);
  if (b.w_hr.defined()) b.w_hr = b.w_hr.contiguous();
  b.c0 = c0.contiguous();
  b.ws = workspace.contiguous();
  b.dh_state = grad_h_n.to(acc, false, true).contiguous();
  b.dc_state = grad_c_n.to(acc, false, true).contiguous();
  b.dgates = empty_rows({d.rows, 4 * d.hidden}, grad_y.options());
  if (b.w_hr.defined()) b.dh_all = empty_rows({d.rows, d.out}, grad_y.options().dtype(acc));
  if (!steps.empty()) loop(b, steps);
  return b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, LstmBackwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  std::vector<Step> steps;
  const LstmBackward b = lstm_backward_gates(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y,
                                             workspace, batch_sizes, reverse, loop, steps);
  const bool packed = batch_sizes.has_value() && batch_sizes->defined();
  const LstmDims d{grad_y.size(0), c0.size(0), c0.size(1), grad_y.size(1)};

  // Everything that spans all timesteps: one GEMM per weight gradient.
  auto h_prev = gather_h_prev(y.contiguous(), h0.contiguous(), steps, packed, reverse);
  auto grad_w_hh = rows_mm(b.dgates.t(), h_prev);
  at::Tensor grad_w_hr;
  if (b.w_hr.defined()) {
    // h before the projection, o * tanh(c), rebuilt from the saved gates.
    auto gates = b.ws.view({d.rows, 5, d.hidden});
    auto h_raw = gates.select(1, 3) * at::tanh(gates.select(1, 4));
    grad_w_hr = at::mm(b.dh_all.t(), h_raw).to(w_hh.scalar_type());
  } else {
    grad_w_hr = at::empty({0}, w_hh.options());
  }
  auto grad_h0 = finish_grad_h0(b.dh_state, b.dgates, b.w_hh, steps, h0.scalar_type());
  auto grad_c0 = as_dtype(b.dc_state, c0.scalar_type());
  return {b.dgates, grad_w_hh, grad_w_hr, grad_h0, grad_c0};
}

}  // namespace rnnfuse
