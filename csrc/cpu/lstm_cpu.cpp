// CPU time loop of the LSTM. Per step, one parallel pass in which each thread
// takes a range of hidden-unit blocks and, for every row, computes the
// block's four gate pre-activations (recurrent GEMM from weights laid out once
// per call), applies gate_math.h's cell update lane-wise and writes h, c and
// the workspace (kernels.h). This is the executable spec of the CUDA kernels:
// same schedule, same per-unit arithmetic.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "../recurrence.h"
#include "buffer_cache.h"
#include "cpu_common.h"
#include "kernels.h"
#include "loops.h"

namespace rnnfuse {
namespace {

template <typename scalar_t>
void lstm_forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  using acc_t = cpu::acc_type<scalar_t>;
  // fp32/fp64 read the previous step's h from y in place; fp16/bf16 keep it,
  // rounded as stored, in an acc_t buffer per step parity.
  constexpr bool kInPlace = std::is_same<scalar_t, acc_t>::value;
  const auto& kern = cpu::cpu_kernels<scalar_t>();
  const int64_t hidden = f.c_state.size(1);
  const int64_t batch = f.h0.size(0);
  const int64_t out = f.y.size(1);
  const int64_t ld_y = f.y.stride(0);  // > out for one direction of a bidirectional layer
  const bool project = f.w_hr.defined();
  const auto acc_opts = f.c_state.options();
  const bool packed = pack_forward_weights(f.x_proj.size(0), batch);
  const int64_t n_blocks = kern.blocks(hidden);

  at::Tensor w_packed, w_pairs;
  const scalar_t* w = f.w_hh.data_ptr<scalar_t>();
  if (packed && kern.pairs) {
    w_pairs = cached_empty_cpu({kern.fwd_pairs_size(4, hidden, out)}, f.w_hh.options());
    scalar_t* dst = w_pairs.data_ptr<scalar_t>();
    parallel_blocks(n_blocks, 4 * hidden * out, [&](int64_t b0, int64_t b1) {
      kern.pack_fwd_pairs(w, 4, hidden, out, dst, b0, b1);
    });
  } else if (packed) {
    w_packed = cached_empty_cpu({kern.fwd_packed_size(4, hidden, out)}, acc_opts);
    acc_t* dst = w_packed.data_ptr<acc_t>();
    parallel_blocks(n_blocks, 4 * hidden * out, [&](int64_t b0, int64_t b1) {
      kern.pack_fwd(w, 4, hidden, out, dst, b0, b1);
    });
  }
  const at::Tensor h0 = kInPlace ? f.h0 : f.h0.to(acc_opts.dtype());
  const at::Tensor h_buf = kInPlace ? at::Tensor() : at::empty({2, batch, out}, acc_opts);
  at::Tensor h_raw, w_hr_t;
  if (project) {
    h_raw = at::empty({batch, hidden}, acc_opts);
    w_hr_t = f.w_hr.to(acc_opts.dtype()).t();
  }

  cpu::LstmFwdArgs<scalar_t> a{};
  a.hidden = hidden;
  a.out = out;
  a.x_proj = f.x_proj.data_ptr<scalar_t>();
  a.ld_x = f.x_proj.stride(0);
  a.ld_y = ld_y;
  a.ld_prev = kInPlace ? ld_y : out;
  a.w_packed = w_packed.defined() ? w_packed.data_ptr<acc_t>() : nullptr;
  a.w_pairs = w_pairs.defined() ? w_pairs.data_ptr<scalar_t>() : nullptr;
  a.w = w;
  a.h0_s = f.h0.data_ptr<scalar_t>();
  a.h0 = h0.data_ptr<acc_t>();
  a.c_state = f.c_state.data_ptr<acc_t>();
  a.y = f.y.data_ptr<scalar_t>();
  a.h_raw = project ? h_raw.data_ptr<acc_t>() : nullptr;
  a.ws = f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr;

  for (size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    a.prev_s = a.y + st.prev_row0 * ld_y;
    // Buffer s & 1 receives this step's h; (s + 1) & 1 holds the previous one.
    if constexpr (kInPlace) {
      a.prev = as_acc<acc_t>(a.y) + st.prev_row0 * ld_y;
    } else {
      a.prev = h_buf.data_ptr<acc_t>() + ((s + 1) & 1) * batch * out;
      a.h_next = project ? nullptr : h_buf.data_ptr<acc_t>() + (s & 1) * batch * out;
    }
    parallel_blocks(n_blocks, st.bs * out * 4 * hidden, [&](int64_t b0, int64_t b1) {
      kern.lstm_fwd(a, st, b0, b1);
    });
    if (project) {
      auto y_rows = f.y.narrow(0, st.row0, st.bs);
      y_rows.copy_(at::mm(h_raw.narrow(0, 0, st.bs), w_hr_t));
      if constexpr (!kInPlace) h_buf[s & 1].narrow(0, 0, st.bs).copy_(y_rows);
    }
  }
}

template <typename scalar_t>
void lstm_backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  using acc_t = cpu::acc_type<scalar_t>;
  constexpr bool kInPlace = std::is_same<scalar_t, acc_t>::value;
  const auto& kern = cpu::cpu_kernels<scalar_t>();
  const int64_t hidden = g.dc_state.size(1);
  const int64_t batch = g.dc_state.size(0);
  const int64_t out = g.grad_y.size(1);
  const int64_t ld_dgates = g.dgates.stride(0);  // > 4H for one direction of a bidirectional layer
  const bool project = g.w_hr.defined();
  const auto acc_opts = g.dc_state.options();
  const int64_t n_panels = kern.panels(hidden);
  const bool recurrent = any_carry(steps);
  // With a projection the recurrent term lives in the projected space and is
  // combined with tensor ops (at::mm) before the kernel, which then gets dh.
  at::Tensor w_panels, w_pairs, rec, w_hr, w;
  if (project) {
    w = recurrent ? g.w_hh.to(acc_opts.dtype()) : at::Tensor();
    rec = at::empty({batch, out}, acc_opts);
    w_hr = g.w_hr.to(acc_opts.dtype());
  } else if (!recurrent) {
    // No recurrent GEMM: w_panels and w_pairs are never read.
  } else {
    std::tie(w_panels, w_pairs) = backward_weights(kern, g.w_hh, 4 * hidden, out, acc_opts);
  }
  const at::Tensor d_buf = kInPlace ? at::Tensor() : at::empty({2, batch, 4 * hidden}, acc_opts);

  cpu::LstmBwdArgs<scalar_t> a{};
  a.hidden = hidden;
  a.out = out;
  a.grad_y = g.grad_y.data_ptr<scalar_t>();
  a.ld_grad_y = g.grad_y.stride(0);
  a.ld_dgates = ld_dgates;
  a.ld_next = kInPlace ? ld_dgates : 4 * hidden;
  a.w_panels = w_panels.defined() ? w_panels.data_ptr<acc_t>() : nullptr;
  a.w_pairs = w_pairs.defined() ? w_pairs.data_ptr<scalar_t>() : nullptr;
  a.c0 = g.c0.data_ptr<scalar_t>();
  a.ws = g.ws.data_ptr<scalar_t>();
  a.dh_state = g.dh_state.data_ptr<acc_t>();
  a.dc_state = g.dc_state.data_ptr<acc_t>();
  a.dgates = g.dgates.data_ptr<scalar_t>();

  int64_t s = 0;  // position in processing order
  for (auto it = steps.rbegin(); it != steps.rend(); ++it, ++s) {
    const Step& st = *it;
    a.next_s = a.dgates + st.next_row0 * ld_dgates;
    if constexpr (kInPlace) {
      a.next = as_acc<acc_t>(static_cast<const scalar_t*>(a.dgates)) + st.next_row0 * ld_dgates;
    } else {
      a.next = d_buf.data_ptr<acc_t>() + ((s + 1) & 1) * batch * 4 * hidden;
      a.dgates_next = d_buf.data_ptr<acc_t>() + (s & 1) * batch * 4 * hidden;
    }
    at::Tensor dh_unit;
    if (project) {
      if (st.carry_next > 0) {
        const auto next_rows = kInPlace ? g.dgates.narrow(0, st.next_row0, st.carry_next)
                                        : d_buf[(s + 1) & 1].narrow(0, 0, st.carry_next);
        mm_into(rec.narrow(0, 0, st.carry_next), next_rows, w);
      }
      // dh in the projected space: keep it for dW_hr, map it to the units.
      auto dh = g.grad_y.narrow(0, st.row0, st.bs).to(acc_opts.dtype()) +
                g.dh_state.narrow(0, 0, st.bs);
      if (st.carry_next > 0) dh.narrow(0, 0, st.carry_next).add_(rec.narrow(0, 0, st.carry_next));
      g.dh_all.narrow(0, st.row0, st.bs).copy_(dh);
      g.dh_state.narrow(0, 0, st.bs).zero_();
      dh_unit = at::mm(dh, w_hr);
      a.dh_unit = dh_unit.data_ptr<acc_t>();
    }
    parallel_blocks(n_panels, (st.carry_next * out + st.bs * kGateMacs) * 4 * hidden,
                    [&](int64_t p0, int64_t p1) { kern.lstm_bwd(a, st, p0, p1); });
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training) {
  return lstm_forward(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training,
                      &lstm_forward_loop_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bwd_cpu(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes,
                       reverse, &lstm_backward_loop_cpu);
}

}  // namespace

void lstm_forward_loop_cpu(const LstmForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "rnnfuse_lstm_fwd_cpu",
                                  [&] { lstm_forward_loop<scalar_t>(f, steps); });
}

void lstm_backward_loop_cpu(const LstmBackward& g, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "rnnfuse_lstm_bwd_cpu",
                                  [&] { lstm_backward_loop<scalar_t>(g, steps); });
}

}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_fwd", &rnnfuse::lstm_fwd_cpu);
  m.impl("lstm_bwd", &rnnfuse::lstm_bwd_cpu);
}
