// CPU time loop of the GRU: per step, one parallel pass in which each thread
// takes a range of hidden-unit blocks and, for every row, computes the
// block's three recurrent gate terms (GEMM from weights laid out once per
// call), applies gate_math.h's GRU update lane-wise and writes h and the
// workspace (kernels.h).
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
void gru_forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  using acc_t = cpu::acc_type<scalar_t>;
  // fp32/fp64 read the previous step's h from y in place; fp16/bf16 keep it,
  // rounded as stored, in an acc_t buffer per step parity.
  constexpr bool kInPlace = std::is_same<scalar_t, acc_t>::value;
  const auto& kern = cpu::cpu_kernels<scalar_t>();
  const int64_t hidden = f.h0.size(1);
  const int64_t batch = f.h0.size(0);
  const int64_t ld_y = f.y.stride(0);  // > H for one direction of a bidirectional layer
  const auto acc_opts = f.x_proj.options().dtype(c10::CppTypeToScalarType<acc_t>::value);
  const bool packed = pack_forward_weights(f.x_proj.size(0), batch);
  const int64_t n_blocks = kern.blocks(hidden);

  at::Tensor w_packed, w_pairs;
  const scalar_t* w = f.w_hh.data_ptr<scalar_t>();
  if (packed && kern.pairs) {
    w_pairs = cached_empty_cpu({kern.fwd_pairs_size(3, hidden, hidden)}, f.w_hh.options());
    scalar_t* dst = w_pairs.data_ptr<scalar_t>();
    parallel_blocks(n_blocks, 3 * hidden * hidden, [&](int64_t b0, int64_t b1) {
      kern.pack_fwd_pairs(w, 3, hidden, hidden, dst, b0, b1);
    });
  } else if (packed) {
    w_packed = cached_empty_cpu({kern.fwd_packed_size(3, hidden, hidden)}, acc_opts);
    acc_t* dst = w_packed.data_ptr<acc_t>();
    parallel_blocks(n_blocks, 3 * hidden * hidden, [&](int64_t b0, int64_t b1) {
      kern.pack_fwd(w, 3, hidden, hidden, dst, b0, b1);
    });
  }
  const at::Tensor h0 = kInPlace ? f.h0 : f.h0.to(acc_opts.dtype());
  const at::Tensor b_hh = f.b_hh.defined() ? f.b_hh.to(acc_opts.dtype()) : at::Tensor();
  const at::Tensor h_buf = kInPlace ? at::Tensor() : at::empty({2, batch, hidden}, acc_opts);

  cpu::GruFwdArgs<scalar_t> a{};
  a.hidden = hidden;
  a.x_proj = f.x_proj.data_ptr<scalar_t>();
  a.ld_x = f.x_proj.stride(0);
  a.ld_y = ld_y;
  a.ld_prev = kInPlace ? ld_y : hidden;
  a.w_packed = w_packed.defined() ? w_packed.data_ptr<acc_t>() : nullptr;
  a.w_pairs = w_pairs.defined() ? w_pairs.data_ptr<scalar_t>() : nullptr;
  a.w = w;
  a.h0_s = f.h0.data_ptr<scalar_t>();
  a.b_hh = b_hh.defined() ? b_hh.data_ptr<acc_t>() : nullptr;
  a.h0 = h0.data_ptr<acc_t>();
  a.y = f.y.data_ptr<scalar_t>();
  a.ws = f.ws.defined() ? f.ws.data_ptr<scalar_t>() : nullptr;

  for (size_t s = 0; s < steps.size(); ++s) {
    const Step& st = steps[s];
    a.prev_s = a.y + st.prev_row0 * ld_y;
    // Buffer s & 1 receives this step's h; (s + 1) & 1 holds the previous one.
    if constexpr (kInPlace) {
      a.prev = as_acc<acc_t>(a.y) + st.prev_row0 * ld_y;
    } else {
      a.prev = h_buf.data_ptr<acc_t>() + ((s + 1) & 1) * batch * hidden;
      a.h_next = h_buf.data_ptr<acc_t>() + (s & 1) * batch * hidden;
    }
    parallel_blocks(n_blocks, st.bs * hidden * 3 * hidden, [&](int64_t b0, int64_t b1) {
      kern.gru_fwd(a, st, b0, b1);
    });
  }
}

template <typename scalar_t>
void gru_backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  using acc_t = cpu::acc_type<scalar_t>;
  constexpr bool kInPlace = std::is_same<scalar_t, acc_t>::value;
  const auto& kern = cpu::cpu_kernels<scalar_t>();
  const int64_t hidden = g.h0.size(1);
  const int64_t batch = g.h0.size(0);
  const auto acc_opts = g.dh_state.options();
  const int64_t n_panels = kern.panels(hidden);
  const bool recurrent = any_carry(steps);
  // Without carried rows there is no recurrent GEMM: nothing to lay out.
  at::Tensor w_panels, w_pairs;
  if (recurrent) {
    std::tie(w_panels, w_pairs) = backward_weights(kern, g.w_hh, 3 * hidden, hidden, acc_opts);
  }
  const at::Tensor d_buf = kInPlace ? at::Tensor() : at::empty({2, batch, 3 * hidden}, acc_opts);

  cpu::GruBwdArgs<scalar_t> a{};
  a.hidden = hidden;
  a.grad_y = g.grad_y.data_ptr<scalar_t>();
  a.ld_grad_y = g.grad_y.stride(0);
  a.ld_y = g.y.stride(0);
  a.ld_dx = g.dx.stride(0);
  a.w_panels = w_panels.defined() ? w_panels.data_ptr<acc_t>() : nullptr;
  a.w_pairs = w_pairs.defined() ? w_pairs.data_ptr<scalar_t>() : nullptr;
  a.y = g.y.data_ptr<scalar_t>();
  a.h0 = g.h0.data_ptr<scalar_t>();
  a.ws = g.ws.data_ptr<scalar_t>();
  a.dh_state = g.dh_state.data_ptr<acc_t>();
  a.dx = g.dx.data_ptr<scalar_t>();
  a.dhh = g.dhh.data_ptr<scalar_t>();

  int64_t s = 0;  // position in processing order
  for (auto it = steps.rbegin(); it != steps.rend(); ++it, ++s) {
    const Step& st = *it;
    a.next_s = a.dhh + st.next_row0 * 3 * hidden;
    if constexpr (kInPlace) {
      a.next = as_acc<acc_t>(static_cast<const scalar_t*>(a.dhh)) + st.next_row0 * 3 * hidden;
    } else {
      a.next = d_buf.data_ptr<acc_t>() + ((s + 1) & 1) * batch * 3 * hidden;
      a.dhh_next = d_buf.data_ptr<acc_t>() + (s & 1) * batch * 3 * hidden;
    }
    parallel_blocks(n_panels, (st.carry_next * hidden + st.bs * kGateMacs) * 3 * hidden,
                    [&](int64_t p0, int64_t p1) { kern.gru_bwd(a, st, p0, p1); });
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training) {
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training,
                     &gru_forward_loop_cpu);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_bwd_cpu(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      &gru_backward_loop_cpu);
}

}  // namespace

void gru_forward_loop_cpu(const GruForward& f, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, f.x_proj.scalar_type(),
                                  "rnnfuse_gru_fwd_cpu",
                                  [&] { gru_forward_loop<scalar_t>(f, steps); });
}

void gru_backward_loop_cpu(const GruBackward& g, const std::vector<Step>& steps) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.grad_y.scalar_type(),
                                  "rnnfuse_gru_bwd_cpu",
                                  [&] { gru_backward_loop<scalar_t>(g, steps); });
}

}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("gru_fwd", &rnnfuse::gru_fwd_cpu);
  m.impl("gru_bwd", &rnnfuse::gru_bwd_cpu);
}
