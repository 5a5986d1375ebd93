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

// The forward's buffers for one direction, as LSTM's forward_operands
// (driver_lstm.cpp): x_proj and y may be column blocks of a bidirectional
// layer's buffers.
GruForward forward_operands(const at::Tensor& x_proj, const at::Tensor& w_hh,
                            const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0,
                            const at::Tensor& y, const at::Tensor& ws) {
  GruForward f;
  f.x_proj = x_proj;
  f.w_hh = w_hh.contiguous();
  if (b_hh.has_value() && b_hh->defined()) f.b_hh = b_hh->contiguous();
  f.h0 = h0.contiguous();
  f.y = y;
  f.ws = ws;
  return f;
}

// The backward's checks and buffers for one direction; dx receives the
// gradient of x_proj (undefined: allocated here).
GruBackward backward_operands(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                              const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
                              const at::Tensor& h0, const at::Tensor& y,
                              const at::Tensor& workspace, const at::Tensor& dx) {
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
  GruBackward b;
  b.grad_y = grad_y;
  b.w_hh = w_hh.contiguous();
  b.h0 = h0.contiguous();
  b.y = y;
  b.ws = workspace.contiguous();
  b.dh_state = grad_h_n.to(acc, false, true).contiguous();
  b.dx = dx.defined() ? dx : empty_rows({d.rows, 3 * d.hidden}, grad_y.options());
  b.dhh = empty_rows({d.rows, 3 * d.hidden}, grad_y.options());
  return b;
}

// After the backward's time loop: dW_hh (one GEMM), db_hh (one reduction)
// and grad_h0.
std::tuple<at::Tensor, at::Tensor, at::Tensor> finish_backward(
    const GruBackward& b, const c10::optional<at::Tensor>& b_hh, const std::vector<Step>& steps,
    bool packed, bool reverse, at::ScalarType h0_dtype) {
  auto grad_w_hh = weight_grad_rows(b.dhh, b.y, b.h0, steps, packed, reverse);
  at::Tensor grad_b_hh;
  if (b_hh.has_value() && b_hh->defined()) {
    // In dhh's dtype: ATen accumulates a reduced-precision sum in fp32 and
    // rounds once, as asking for an fp32 result would, but on the CPU that
    // request first made an fp32 copy of all of dhh (12 H bytes per row in
    // bf16, the GRU backward's peak: benchmarks/results/memory-prep_2026-11-28).
    grad_b_hh = b.dhh.sum(0).to(b_hh->scalar_type());
  } else {
    grad_b_hh = at::empty({0}, b.w_hh.options());
  }
  auto grad_h0 = finish_grad_h0(b.dh_state, b.dhh, b.w_hh, steps, h0_dtype);
  return {grad_w_hh, grad_b_hh, grad_h0};
}

bool is_packed(const c10::optional<at::Tensor>& batch_sizes) {
  return batch_sizes.has_value() && batch_sizes->defined();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, GruForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const GruDims d = check_gru(x_proj, w_hh, b_hh, h0);
  const auto steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  const auto y = empty_rows({d.rows, d.hidden}, x_proj.options());
  // The workspace in the input dtype, as the LSTM's (driver_lstm.cpp).
  const auto ws = training ? empty_rows({d.rows, 4 * d.hidden}, x_proj.options())
                           : at::empty({0}, x_proj.options());
  const GruForward f =
      forward_operands(x_proj.contiguous(), w_hh, b_hh, h0, y, training ? ws : at::Tensor());
  if (!steps.empty()) loop(f, steps);
  return {y, final_rows(y, h0, steps), ws};
}

GruBackward gru_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                               const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
                               const at::Tensor& h0, const at::Tensor& y,
                               const at::Tensor& workspace,
                               const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                               GruBackwardLoop loop, std::vector<Step>& steps) {
  GruBackward b = backward_operands(grad_y.contiguous(), grad_h_n, w_hh, b_hh, h0,
                                    y.contiguous(), workspace, at::Tensor());
  steps = make_schedule(grad_y.size(0), h0.size(0), batch_sizes, reverse);
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
  auto [grad_w_hh, grad_b_hh, grad_h0] =
      finish_backward(b, b_hh, steps, is_packed(batch_sizes), reverse, h0.scalar_type());
  return {b.dx, grad_w_hh, grad_b_hh, grad_h0};
}

// ------------------------------------------------------------ bidirectional
// As lstm_bidir_forward / _backward (driver_lstm.cpp): one (N, 6H) projection,
// y (N, 2H), states (2, B, H).
namespace {

void check_bidir(const at::Tensor& rows, const char* rows_name,
                 const at::Tensor& h0, const char* op) {
  TORCH_CHECK(rows.dim() == 2, "rnnfuse.", op, ": ", rows_name, " must be 2-D, got ",
              rows.dim(), "-D");
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2, "rnnfuse.", op,
              ": h0 must be (2, batch, hidden), one state per direction, got shape ", h0.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    GruBidirForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_bidir(x_proj, "x_proj", h0, "gru_bidir_fwd");
  const int64_t hidden = h0.size(2), rows = x_proj.size(0);
  check_shape(x_proj, "x_proj", {rows, 6 * hidden});
  const at::Tensor w_hh_of[2] = {w_hh, w_hh_rev};
  const c10::optional<at::Tensor> b_hh_of[2] = {b_hh, b_hh_rev};
  for (int dir = 0; dir < 2; ++dir) {
    check_gru(x_proj.narrow(1, 3 * hidden * dir, 3 * hidden), w_hh_of[dir], b_hh_of[dir],
              h0[dir]);
  }
  const std::vector<Step> steps[2] = {make_schedule(rows, h0.size(1), batch_sizes, false),
                                      make_schedule(rows, h0.size(1), batch_sizes, true)};
  const auto y = empty_rows({rows, 2 * hidden}, x_proj.options());
  const auto ws = training ? empty_rows({2, rows, 4 * hidden}, x_proj.options())
                           : at::empty({0}, x_proj.options());
  const at::Tensor x_rows = rows_of(x_proj);
  GruForward f[2];
  for (int dir = 0; dir < 2; ++dir) {
    f[dir] = forward_operands(x_rows.narrow(1, 3 * hidden * dir, 3 * hidden), w_hh_of[dir],
                              b_hh_of[dir], h0[dir], y.narrow(1, hidden * dir, hidden),
                              training ? ws[dir] : at::Tensor());
  }
  if (!steps[0].empty()) loop(f, steps);
  const auto h_n = at::stack({final_rows(f[0].y, h0[0], steps[0]),
                              final_rows(f[1].y, h0[1], steps[1])});
  return {y, h_n, ws};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_backward(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                   const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                   const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                   const at::Tensor& y, const at::Tensor& workspace,
                   const c10::optional<at::Tensor>& batch_sizes, GruBidirBackwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_bidir(grad_y, "grad_y", h0, "gru_bidir_bwd");
  const int64_t hidden = h0.size(2), rows = grad_y.size(0);
  TORCH_CHECK(grad_y.size(1) == 2 * hidden && y.dim() == 2 && y.sizes() == grad_y.sizes(),
              "rnnfuse.gru_bidir_bwd: grad_y and y must be (rows, 2 * hidden), got ",
              grad_y.sizes(), " and ", y.sizes());
  TORCH_CHECK(grad_h_n.dim() == 3 && grad_h_n.size(0) == 2,
              "rnnfuse.gru_bidir_bwd: grad_h_n must hold one state per direction, got shape ",
              grad_h_n.sizes());
  TORCH_CHECK(workspace.dim() == 3 && workspace.size(0) == 2,
              "rnnfuse.gru_bidir_bwd: workspace does not match; run gru_bidir_fwd with "
              "training=True");
  const at::Tensor w_hh_of[2] = {w_hh, w_hh_rev};
  const c10::optional<at::Tensor> b_hh_of[2] = {b_hh, b_hh_rev};
  const auto grad_x = empty_rows({rows, 6 * hidden}, grad_y.options());
  const at::Tensor grad_y_rows = rows_of(grad_y), y_rows = rows_of(y);
  GruBackward b[2];
  for (int dir = 0; dir < 2; ++dir) {
    b[dir] = backward_operands(grad_y_rows.narrow(1, hidden * dir, hidden), grad_h_n[dir],
                               w_hh_of[dir], b_hh_of[dir], h0[dir],
                               y_rows.narrow(1, hidden * dir, hidden), workspace[dir],
                               grad_x.narrow(1, 3 * hidden * dir, 3 * hidden));
  }
  const std::vector<Step> steps[2] = {make_schedule(rows, h0.size(1), batch_sizes, false),
                                      make_schedule(rows, h0.size(1), batch_sizes, true)};
  if (!steps[0].empty()) loop(b, steps);
  at::Tensor grad_w[2], grad_b[2], grad_h0[2];
  for (int dir = 0; dir < 2; ++dir) {
    std::tie(grad_w[dir], grad_b[dir], grad_h0[dir]) = finish_backward(
        b[dir], b_hh_of[dir], steps[dir], is_packed(batch_sizes), dir == 1, h0.scalar_type());
  }
  return {grad_x, grad_w[0], grad_w[1], grad_b[0], grad_b[1], at::stack({grad_h0[0], grad_h0[1]})};
}

}  // namespace rnnfuse
