// CPU time loop of the LSTM: per step, one BLAS GEMM for h_{t-1} @ W_hh^T
// into a reused buffer, then one parallel pass of the shared gate math. This is
// the executable spec of the CUDA kernels (same schedule, same arithmetic).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../gate_math.h"
#include "../recurrence.h"
#include "cpu_common.h"

namespace rnnfuse {
namespace {

template <typename scalar_t>
void lstm_forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hidden = f.c_state.size(1);
  const int64_t batch = f.h0.size(0);
  const bool project = f.w_hr.defined();
  const auto acc_opts = f.c_state.options();
  const at::Tensor w_t = f.w_hh.to(acc_opts.dtype()).t();
  at::Tensor rec = at::empty({batch, 4 * hidden}, acc_opts);
  at::Tensor h_raw, w_hr_t;
  if (project) {
    h_raw = at::empty({batch, hidden}, acc_opts);
    w_hr_t = f.w_hr.to(acc_opts.dtype()).t();
  }
  scalar_t* y = f.y.data_ptr<scalar_t>();
  acc_t* c_state = f.c_state.data_ptr<acc_t>();
  acc_t* ws = f.ws.defined() ? f.ws.data_ptr<acc_t>() : nullptr;
  const int64_t out = f.y.size(1);

  for (const Step& st : steps) {
    recurrent_matmul(rec, f.y, f.h0, st, w_t);
    // Gate activations through ATen's vectorised kernels (scalar expf/tanhf
    // here cost several times the GEMM); the cell update is gate_math.h's.
    at::Tensor gates = rec.narrow(0, 0, st.bs);
    gates.add_(f.x_proj.narrow(0, st.row0, st.bs));
    gates.narrow(1, 0, 2 * hidden).sigmoid_();
    gates.narrow(1, 2 * hidden, hidden).tanh_();
    gates.narrow(1, 3 * hidden, hidden).sigmoid_();
    const acc_t* r = rec.data_ptr<acc_t>();
    acc_t* hr = project ? h_raw.data_ptr<acc_t>() : nullptr;
    for_each_unit(st.bs, hidden, [&](int64_t b, int64_t j) {
      const acc_t* g = r + b * 4 * hidden + j;
      const auto a = lstm_cell_update<acc_t>(g[0], g[hidden], g[2 * hidden], g[3 * hidden],
                                             c_state[b * hidden + j]);
      c_state[b * hidden + j] = a.c;
      const acc_t h = lstm_hidden(a);
      if (project) {
        hr[b * hidden + j] = h;
      } else {
        y[(st.row0 + b) * out + j] = scalar_t(h);
      }
      if (ws) {
        acc_t* w = ws + (st.row0 + b) * 5 * hidden + j;
        w[0] = a.i, w[hidden] = a.f, w[2 * hidden] = a.g, w[3 * hidden] = a.o, w[4 * hidden] = a.c;
      }
    });
    if (project) {
      f.y.narrow(0, st.row0, st.bs).copy_(at::mm(h_raw.narrow(0, 0, st.bs), w_hr_t));
    }
  }
}

template <typename scalar_t>
void lstm_backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hidden = g.dc_state.size(1);
  const int64_t batch = g.dc_state.size(0);
  const int64_t out = g.grad_y.size(1);
  const bool project = g.w_hr.defined();
  const auto acc_opts = g.dc_state.options();
  const at::Tensor w = g.w_hh.to(acc_opts.dtype());
  const auto w_hr = project ? g.w_hr.to(acc_opts.dtype()) : at::Tensor();
  at::Tensor rec = at::empty({batch, out}, acc_opts);

  const scalar_t* grad_y = g.grad_y.data_ptr<scalar_t>();
  const scalar_t* c0 = g.c0.data_ptr<scalar_t>();
  const acc_t* ws = g.ws.data_ptr<acc_t>();
  acc_t* dh_state = g.dh_state.data_ptr<acc_t>();
  acc_t* dc_state = g.dc_state.data_ptr<acc_t>();
  scalar_t* dgates = g.dgates.data_ptr<scalar_t>();

  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& st = *it;
    if (st.carry_next > 0) {
      mm_into(rec.narrow(0, 0, st.carry_next),
                 g.dgates.narrow(0, st.next_row0, st.carry_next).to(acc_opts.dtype()), w);
    }
    // With a projection, dh lives in the projected space: assemble it as a
    // tensor, keep it for dW_hr, and map it back to the cell's units.
    at::Tensor dh_unit;
    if (project) {
      auto dh = g.grad_y.narrow(0, st.row0, st.bs).to(acc_opts.dtype()) +
                g.dh_state.narrow(0, 0, st.bs);
      if (st.carry_next > 0) dh.narrow(0, 0, st.carry_next).add_(rec.narrow(0, 0, st.carry_next));
      g.dh_all.narrow(0, st.row0, st.bs).copy_(dh);
      g.dh_state.narrow(0, 0, st.bs).zero_();
      dh_unit = at::mm(dh, w_hr);
    }
    const acc_t* r = rec.data_ptr<acc_t>();
    const acc_t* du = project ? dh_unit.data_ptr<acc_t>() : nullptr;
    for_each_unit(st.bs, hidden, [&](int64_t b, int64_t j) {
      acc_t dh;
      if (project) {
        dh = du[b * hidden + j];
      } else {
        dh = acc_t(grad_y[(st.row0 + b) * out + j]) + dh_state[b * out + j];
        if (b < st.carry_next) dh += r[b * out + j];
        dh_state[b * out + j] = acc_t(0);
      }
      const acc_t* a = ws + (st.row0 + b) * 5 * hidden + j;
      const LstmActs<acc_t> acts{a[0], a[hidden], a[2 * hidden], a[3 * hidden], a[4 * hidden]};
      const acc_t c_prev = b < st.carry ? ws[(st.prev_row0 + b) * 5 * hidden + 4 * hidden + j]
                                        : acc_t(c0[b * hidden + j]);
      const auto d = lstm_cell_backward(acts, c_prev, dh, dc_state[b * hidden + j]);
      dc_state[b * hidden + j] = d.dc_prev;
      scalar_t* dg = dgates + (st.row0 + b) * 4 * hidden + j;
      dg[0] = scalar_t(d.di), dg[hidden] = scalar_t(d.df), dg[2 * hidden] = scalar_t(d.dg),
      dg[3 * hidden] = scalar_t(d.d_o);
    });
  }
}

void forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "rnnfuse_lstm_fwd_cpu",
                                  [&] { lstm_forward_loop<scalar_t>(f, steps); });
}

void backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "rnnfuse_lstm_bwd_cpu",
                                  [&] { lstm_backward_loop<scalar_t>(g, steps); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training) {
  return lstm_forward(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training, &forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bwd_cpu(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes,
                       reverse, &backward_loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_fwd", &rnnfuse::lstm_fwd_cpu);
  m.impl("lstm_bwd", &rnnfuse::lstm_bwd_cpu);
}
