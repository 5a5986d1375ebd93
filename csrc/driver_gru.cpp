// GRU op bodies for every backend: checks, allocation, the backend's time
// loop, then the work that spans all timesteps (final states; one GEMM for
// dW_hh and one reduction for db_hh).
#include <ATen/ATen.h>

#include "driver_common.h"
#include "recurrence.h"

namespace rnnfuse {
namespace {

struct GruDims {
  int64_t rows, batch, hidden;  // N, B, H
};

GruDims check_gru(const at::Tensor& x_proj, const at::Tensor& w_hh,
                  const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0) {
  TORCH_CHECK(at::isFloatingType(x_proj.scalar_type()),
              "rnnfuse.gru: expected a floating-point x_proj, got ", x_proj.scalar_type());
  TORCH_CHECK(x_proj.dim() == 2, "rnnfuse.gru: x_proj must be 2-D (rows, 3*hidden), got ",
              x_proj.dim(), "-D");
  check_operand(h0, "h0", 2, x_proj);
  GruDims d{x_proj.size(0), h0.size(0), h0.size(1)};
  check_shape(x_proj, "x_proj", {d.rows, 3 * d.hidden});
  check_operand(w_hh, "w_hh", 2, x_proj);
  check_shape(w_hh, "w_hh", {3 * d.hidden, d.hidden});
  if (b_hh.has_value() && b_hh->defined()) {
    check_operand(*b_hh, "b_hh", 1, x_proj);
    check_shape(*b_hh, "b_hh", {3 * d.hidden});
  }
  return d;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, GruForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const GruDims d = check_gru(x_proj, w_hh, b_hh, h0);
  const auto steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  const auto acc = acc_dtype(x_proj.scalar_type());

  GruForward f;
  f.x_proj = x_proj.contiguous();
  f.w_hh = w_hh.contiguous();
  if (b_hh.has_value() && b_hh->defined()) f.b_hh = b_hh->contiguous();
  f.h0 = h0.contiguous();
  f.y = empty_rows({d.rows, d.hidden}, x_proj.options());
  f.ws = training ? empty_rows({d.rows, 4 * d.hidden}, x_proj.options().dtype(acc))
                  : at::Tensor();
  if (!steps.empty()) loop(f, steps);

  auto h_n = final_rows(f.y, h0, steps);
  auto workspace = training ? f.ws : at::empty({0}, x_proj.options().dtype(acc));
  return {f.y, h_n, workspace};
}

GruBackward gru_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                               const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
                               const at::Tensor& h0, const at::Tensor& y,
                               const at::Tensor& workspace,
                               const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                               GruBackwardLoop loop, std::vector<Step>& steps) {
  TORCH_CHECK(grad_y.dim() == 2, "rnnfuse.gru_bwd: grad_y must be 2-D, got ", grad_y.dim(), "-D");
  // Stands in for x_proj so the forward's checks apply; an expanded single
  // element, so checking allocates nothing of size N.
  const auto x_like = at::empty({1}, grad_y.options()).expand({grad_y.size(0), w_hh.size(0)});
  const GruDims d = check_gru(x_like, w_hh, b_hh, h0);
  check_shape(grad_y, "grad_y", {d.rows, d.hidden});
  check_operand(y, "y", 2, grad_y, "grad_y");
  check_shape(y, "y", {d.rows, d.hidden});
  check_operand(grad_h_n, "grad_h_n", 2, grad_y, "grad_y");
  check_shape(grad_h_n, "grad_h_n", {d.batch, d.hidden});
  check_workspace(workspace, grad_y, d.rows, 4 * d.hidden, "gru");
  const auto acc = acc_dtype(grad_y.scalar_type());
  steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  GruBackward b;
  b.grad_y = grad_y.contiguous();
  b.w_hh = w_hh.contiguous();
  b.h0 = h0.contiguous();
  b.y = y.contiguous();
  b.ws = workspace.contiguous();
  b.dh_state = grad_h_n.to(acc, false, true).contiguous();
  b.dx = empty_rows({d.rows, 3 * d.hidden}, grad_y.options());
  b.dhh = empty_rows({d.rows, 3 * d.hidden}, grad_y.options());
  if (!steps.empty()) loop(b, steps);
  return b;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    GruBackwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  std::vector<Step> steps;
  const GruBackward b = gru_backward_gates(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace,
                                          batch_sizes, reverse, loop, steps);
  const bool packed = batch_sizes.has_value() && batch_sizes->defined();
  const auto acc = acc_dtype(grad_y.scalar_type());

  auto h_prev = gather_h_prev(b.y, b.h0, steps, packed, reverse);
  auto grad_w_hh = rows_mm(b.dhh.t(), h_prev);
  at::Tensor grad_b_hh;
  if (b_hh.has_value() && b_hh->defined()) {
    grad_b_hh = b.dhh.sum(0, /*keepdim=*/false, acc).to(b_hh->scalar_type());
  } else {
    grad_b_hh = at::empty({0}, w_hh.options());
  }
  auto grad_h0 = finish_grad_h0(b.dh_state, b.dhh, b.w_hh, steps, h0.scalar_type());
  return {b.dx, grad_w_hh, grad_b_hh, grad_h0};
}

}  // namespace rnnfuse
