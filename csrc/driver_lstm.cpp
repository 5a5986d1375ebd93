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

// The forward's buffers for one direction, writing into y and ws. x_proj and
// y may be column blocks of a bidirectional layer's buffers (rows strided,
// columns contiguous): the bidirectional ops' loops take those
// (driver_common.h, rows_of).
LstmForward forward_operands(const at::Tensor& x_proj, const at::Tensor& w_hh,
                             const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                             const at::Tensor& c0, const at::Tensor& y, const at::Tensor& ws) {
  LstmForward f;
  f.x_proj = x_proj;
  f.w_hh = w_hh.contiguous();
  f.w_hr = defined_or_undefined(w_hr);
  if (f.w_hr.defined()) f.w_hr = f.w_hr.contiguous();
  f.h0 = h0.contiguous();
  f.c_state = c0.to(acc_dtype(x_proj.scalar_type()), /*non_blocking=*/false, /*copy=*/true)
                  .contiguous();
  f.y = y;
  f.ws = ws;
  return f;
}

// The backward's checks and buffers for one direction; dgates receives the
// gradient of x_proj (undefined: allocated here). grad_y, y and dgates may be
// column blocks of a bidirectional layer's, as in forward_operands.
LstmBackward backward_operands(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                               const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                               const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                               const at::Tensor& c0, const at::Tensor& y,
                               const at::Tensor& workspace, const at::Tensor& dgates) {
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
  LstmBackward b;
  b.grad_y = grad_y;
  b.w_hh = w_hh.contiguous();
  b.w_hr = defined_or_undefined(w_hr);
  if (b.w_hr.defined()) b.w_hr = b.w_hr.contiguous();
  b.c0 = c0.contiguous();
  b.ws = workspace.contiguous();
  b.dh_state = grad_h_n.to(acc, false, true).contiguous();
  b.dc_state = grad_c_n.to(acc, false, true).contiguous();
  b.dgates = dgates.defined() ? dgates : empty_rows({d.rows, 4 * d.hidden}, grad_y.options());
  if (b.w_hr.defined()) b.dh_all = empty_rows({d.rows, d.out}, grad_y.options().dtype(acc));
  return b;
}

// Everything after the backward's time loop that spans all timesteps: one
// GEMM per weight gradient, and the gradients of h0 and c0.
struct LstmWeightGrads {
  at::Tensor w_hh, w_hr, h0, c0;
};

LstmWeightGrads finish_backward(const LstmBackward& b, const at::Tensor& y, const at::Tensor& h0,
                                const at::Tensor& c0, const at::Tensor& w_hh,
                                const std::vector<Step>& steps, bool packed, bool reverse) {
  const int64_t rows = b.grad_y.size(0), hidden = b.dc_state.size(1);
  LstmWeightGrads g;
  g.w_hh = weight_grad_rows(b.dgates, y, h0.contiguous(), steps, packed, reverse);
  if (b.w_hr.defined()) {
    // h before the projection, o * tanh(c), rebuilt from the saved gates (in
    // the accumulation dtype, as dh_all).
    const auto acc = b.dh_all.scalar_type();
    auto gates = b.ws.view({rows, 5, hidden});
    auto h_raw = gates.select(1, 3).to(acc) * at::tanh(gates.select(1, 4).to(acc));
    g.w_hr = at::mm(b.dh_all.t(), h_raw).to(w_hh.scalar_type());
  } else {
    g.w_hr = at::empty({0}, w_hh.options());
  }
  g.h0 = finish_grad_h0(b.dh_state, b.dgates, b.w_hh, steps, h0.scalar_type());
  g.c0 = as_dtype(b.dc_state, c0.scalar_type());
  return g;
}

bool is_packed(const c10::optional<at::Tensor>& batch_sizes) {
  return batch_sizes.has_value() && batch_sizes->defined();
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training, LstmForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  const LstmDims d = check_lstm(x_proj, w_hh, w_hr, h0, c0);
  const auto steps = make_schedule(d.rows, d.batch, batch_sizes, reverse);
  const auto y = empty_rows({d.rows, d.out}, x_proj.options());
  // The workspace (what the backward reads) in the input dtype: the kernels
  // round the fp32 activations once as they save them.
  const auto ws = training ? empty_rows({d.rows, 5 * d.hidden}, x_proj.options())
                           : at::empty({0}, x_proj.options());
  const LstmForward f = forward_operands(x_proj.contiguous(), w_hh, w_hr, h0, c0, y,
                                         training ? ws : at::Tensor());
  if (!steps.empty()) loop(f, steps);
  return {y, final_rows(y, h0, steps), as_dtype(f.c_state, c0.scalar_type()), ws};
}

LstmBackward lstm_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                                 const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                                 const at::Tensor& c0, const at::Tensor& y,
                                 const at::Tensor& workspace,
                                 const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                 LstmBackwardLoop loop, std::vector<Step>& steps) {
  LstmBackward b = backward_operands(grad_y.contiguous(), grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y,
                                     workspace, at::Tensor());
  steps = make_schedule(grad_y.size(0), c0.size(0), batch_sizes, reverse);
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
  const LstmWeightGrads g =
      finish_backward(b, y.contiguous(), h0, c0, w_hh, steps, is_packed(batch_sizes), reverse);
  return {b.dgates, g.w_hh, g.w_hr, g.h0, g.c0};
}

// ------------------------------------------------------------ bidirectional
// Both directions of a layer in one op: direction d reads columns
// [4H d, 4H (d + 1)) of x_proj (one input-projection GEMM for both) and
// writes columns [P d, P (d + 1)) of y (no concatenation afterwards); the
// backend runs the two time loops (side by side, or one launch per step for
// both).
namespace {

void check_bidir(const at::Tensor& rows, const char* rows_name,
                 const at::Tensor& h0, const at::Tensor& c0,
                 const char* op) {
  TORCH_CHECK(rows.dim() == 2, "rnnfuse.", op, ": ", rows_name, " must be 2-D, got ",
              rows.dim(), "-D");
  TORCH_CHECK(h0.dim() == 3 && h0.size(0) == 2, "rnnfuse.", op,
              ": h0 must be (2, batch, out), one state per direction, got shape ", h0.sizes());
  TORCH_CHECK(c0.dim() == 3 && c0.size(0) == 2, "rnnfuse.", op,
              ": c0 must be (2, batch, hidden), one state per direction, got shape ", c0.sizes());
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& w_hr, const c10::optional<at::Tensor>& w_hr_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, LstmBidirForwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_bidir(x_proj, "x_proj", h0, c0, "lstm_bidir_fwd");
  const int64_t hidden = c0.size(2);
  check_shape(x_proj, "x_proj", {x_proj.size(0), 8 * hidden});
  const at::Tensor w_hh_of[2] = {w_hh, w_hh_rev};
  const c10::optional<at::Tensor> w_hr_of[2] = {w_hr, w_hr_rev};
  LstmDims d[2];
  for (int dir = 0; dir < 2; ++dir) {
    d[dir] = check_lstm(x_proj.narrow(1, 4 * hidden * dir, 4 * hidden), w_hh_of[dir],
                        w_hr_of[dir], h0[dir], c0[dir]);
  }
  TORCH_CHECK(d[0].out == d[1].out, "rnnfuse.lstm_bidir_fwd: both directions must have one "
              "output size, got ", d[0].out, " and ", d[1].out);
  const int64_t rows = x_proj.size(0), out = d[0].out;
  const std::vector<Step> steps[2] = {make_schedule(rows, d[0].batch, batch_sizes, false),
                                      make_schedule(rows, d[0].batch, batch_sizes, true)};
  const auto y = empty_rows({rows, 2 * out}, x_proj.options());
  const auto ws = training ? empty_rows({2, rows, 5 * hidden}, x_proj.options())
                           : at::empty({0}, x_proj.options());
  const at::Tensor x_rows = rows_of(x_proj);
  LstmForward f[2];
  for (int dir = 0; dir < 2; ++dir) {
    f[dir] = forward_operands(x_rows.narrow(1, 4 * hidden * dir, 4 * hidden), w_hh_of[dir],
                              w_hr_of[dir], h0[dir], c0[dir], y.narrow(1, out * dir, out),
                              training ? ws[dir] : at::Tensor());
  }
  if (!steps[0].empty()) loop(f, steps);
  const auto h_n = at::stack({final_rows(f[0].y, h0[0], steps[0]),
                              final_rows(f[1].y, h0[1], steps[1])});
  const auto c_n = as_dtype(at::stack({f[0].c_state, f[1].c_state}), c0.scalar_type());
  return {y, h_n, c_n, ws};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_backward(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                    const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& w_hr_rev, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
                    const c10::optional<at::Tensor>& batch_sizes,
                    LstmBidirBackwardLoop loop) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_bidir(grad_y, "grad_y", h0, c0, "lstm_bidir_bwd");
  TORCH_CHECK(grad_y.size(1) % 2 == 0 && y.dim() == 2 && y.sizes() == grad_y.sizes(),
              "rnnfuse.lstm_bidir_bwd: grad_y and y must be (rows, 2 * out), got ",
              grad_y.sizes(), " and ", y.sizes());
  TORCH_CHECK(grad_h_n.dim() == 3 && grad_h_n.size(0) == 2 && grad_c_n.dim() == 3 &&
                  grad_c_n.size(0) == 2,
              "rnnfuse.lstm_bidir_bwd: grad_h_n and grad_c_n must hold one state per direction, "
              "got shapes ", grad_h_n.sizes(), " and ", grad_c_n.sizes());
  const int64_t rows = grad_y.size(0), out = grad_y.size(1) / 2, hidden = c0.size(2);
  TORCH_CHECK(workspace.dim() == 3 && workspace.size(0) == 2,
              "rnnfuse.lstm_bidir_bwd: workspace does not match; run lstm_bidir_fwd with "
              "training=True");
  const at::Tensor w_hh_of[2] = {w_hh, w_hh_rev};
  const c10::optional<at::Tensor> w_hr_of[2] = {w_hr, w_hr_rev};
  const auto grad_x = empty_rows({rows, 8 * hidden}, grad_y.options());
  const at::Tensor grad_y_rows = rows_of(grad_y), y_rows = rows_of(y);
  LstmBackward b[2];
  for (int dir = 0; dir < 2; ++dir) {
    b[dir] = backward_operands(grad_y_rows.narrow(1, out * dir, out), grad_h_n[dir],
                               grad_c_n[dir], w_hh_of[dir], w_hr_of[dir], h0[dir], c0[dir],
                               y_rows.narrow(1, out * dir, out), workspace[dir],
                               grad_x.narrow(1, 4 * hidden * dir, 4 * hidden));
  }
  const std::vector<Step> steps[2] = {make_schedule(rows, c0.size(1), batch_sizes, false),
                                      make_schedule(rows, c0.size(1), batch_sizes, true)};
  if (!steps[0].empty()) loop(b, steps);
  LstmWeightGrads g[2];
  for (int dir = 0; dir < 2; ++dir) {
    g[dir] = finish_backward(b[dir], y_rows.narrow(1, out * dir, out), h0[dir], c0[dir],
                             w_hh_of[dir], steps[dir], is_packed(batch_sizes), dir == 1);
  }
  return {grad_x, g[0].w_hh, g[1].w_hh, g[0].w_hr, g[1].w_hr,
          at::stack({g[0].h0, g[1].h0}), at::stack({g[0].c0, g[1].c0})};
}

}  // namespace rnnfuse
