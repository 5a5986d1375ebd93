// CPU time loop of the GRU: per step, one BLAS GEMM for h_{t-1} @ W_hh^T
// into a reused buffer, then one parallel pass of the shared gate math.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include "../gate_math.h"
#include "../recurrence.h"
#include "cpu_common.h"

namespace rnnfuse {
namespace {

template <typename scalar_t>
void gru_forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hidden = f.h0.size(1);
  const int64_t batch = f.h0.size(0);
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  const at::Tensor w_t = f.w_hh.to(acc).t();
  at::Tensor rec = at::empty({batch, 3 * hidden}, f.x_proj.options().dtype(acc));
  const at::Tensor bias = f.b_hh.defined() ? f.b_hh.to(acc) : at::zeros({3 * hidden}, rec.options());

  const scalar_t* x = f.x_proj.data_ptr<scalar_t>();
  const scalar_t* h0 = f.h0.data_ptr<scalar_t>();
  scalar_t* y = f.y.data_ptr<scalar_t>();
  acc_t* ws = f.ws.defined() ? f.ws.data_ptr<acc_t>() : nullptr;

  for (const Step& st : steps) {
    recurrent_matmul(rec, f.y, f.h0, st, w_t);
    // r and z through ATen's vectorised sigmoid (scalar expf costs several
    // times the GEMM); n and the update are gate_math.h's.
    at::Tensor hh = rec.narrow(0, 0, st.bs);
    hh.add_(bias);
    const at::Tensor rz =
        (hh.narrow(1, 0, 2 * hidden) + f.x_proj.narrow(0, st.row0, st.bs).narrow(1, 0, 2 * hidden))
            .sigmoid_()
            .contiguous();
    const acc_t* r = rec.data_ptr<acc_t>();
    const acc_t* gates = rz.data_ptr<acc_t>();
    for_each_unit(st.bs, hidden, [&](int64_t b, int64_t j) {
      const scalar_t* xr = x + (st.row0 + b) * 3 * hidden;
      const acc_t* rr = r + b * 3 * hidden;
      const acc_t* g = gates + b * 2 * hidden;
      const auto a = gru_cell_update<acc_t>(g[j], g[hidden + j], acc_t(xr[2 * hidden + j]),
                                            rr[2 * hidden + j]);
      const acc_t h_prev = b < st.carry ? acc_t(y[(st.prev_row0 + b) * hidden + j])
                                        : acc_t(h0[b * hidden + j]);
      y[(st.row0 + b) * hidden + j] = scalar_t(gru_hidden(a, h_prev));
      if (ws) {
        acc_t* w = ws + (st.row0 + b) * 4 * hidden + j;
        w[0] = a.r, w[hidden] = a.z, w[2 * hidden] = a.n, w[3 * hidden] = a.hn;
      }
    });
  }
}

template <typename scalar_t>
void gru_backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t hidden = g.h0.size(1);
  const int64_t batch = g.h0.size(0);
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  const at::Tensor w = g.w_hh.to(acc);
  at::Tensor rec = at::empty({batch, hidden}, g.dh_state.options());

  const scalar_t* grad_y = g.grad_y.data_ptr<scalar_t>();
  const scalar_t* y = g.y.data_ptr<scalar_t>();
  const scalar_t* h0 = g.h0.data_ptr<scalar_t>();
  const acc_t* ws = g.ws.data_ptr<acc_t>();
  acc_t* dh_state = g.dh_state.data_ptr<acc_t>();
  scalar_t* dx = g.dx.data_ptr<scalar_t>();
  scalar_t* dhh = g.dhh.data_ptr<scalar_t>();

  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& st = *it;
    if (st.carry_next > 0) {
      mm_into(rec.narrow(0, 0, st.carry_next),
                 g.dhh.narrow(0, st.next_row0, st.carry_next).to(acc), w);
    }
    const acc_t* r = rec.data_ptr<acc_t>();
    for_each_unit(st.bs, hidden, [&](int64_t b, int64_t j) {
      acc_t dh = acc_t(grad_y[(st.row0 + b) * hidden + j]) + dh_state[b * hidden + j];
      if (b < st.carry_next) dh += r[b * hidden + j];
      const acc_t* a = ws + (st.row0 + b) * 4 * hidden + j;
      const GruActs<acc_t> acts{a[0], a[hidden], a[2 * hidden], a[3 * hidden]};
      const acc_t h_prev = b < st.carry ? acc_t(y[(st.prev_row0 + b) * hidden + j])
                                        : acc_t(h0[b * hidden + j]);
      const auto d = gru_cell_backward(acts, h_prev, dh);
      dh_state[b * hidden + j] = d.dh_prev;
      scalar_t* dxr = dx + (st.row0 + b) * 3 * hidden + j;
      scalar_t* dhr = dhh + (st.row0 + b) * 3 * hidden + j;
      dxr[0] = dhr[0] = scalar_t(d.dr);
      dxr[hidden] = dhr[hidden] = scalar_t(d.dz);
      dxr[2 * hidden] = scalar_t(d.dn);
      dhr[2 * hidden] = scalar_t(d.dhn);
    });
  }
}

void forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "rnnfuse_gru_fwd_cpu",
                                  [&] { gru_forward_loop<scalar_t>(f, steps); });
}

void backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "rnnfuse_gru_bwd_cpu",
                                  [&] { gru_backward_loop<scalar_t>(g, steps); });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training) {
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training, &forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_bwd_cpu(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      &backward_loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("gru_fwd", &rnnfuse::gru_fwd_cpu);
  m.impl("gru_bwd", &rnnfuse::gru_bwd_cpu);
}
