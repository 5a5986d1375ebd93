#include "driver_common.h"

#include "cpu/buffer_cache.h"
#include "cpu/gemm_cpu.h"

namespace rnnfuse {

at::Tensor rows_mm(const at::Tensor& a, const at::Tensor& b) {
  return a.device().is_cpu() ? cpu_mm(a, b) : at::mm(a, b);
}

at::Tensor empty_rows(at::IntArrayRef sizes, const at::TensorOptions& options) {
  if (options.device().is_cpu() && !options.pinned_memory()) return cached_empty_cpu(sizes, options);
  return at::empty(sizes, options);
}

void check_operand(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& like,
                   const char* like_name) {
  TORCH_CHECK(t.defined(), "rnnfuse: ", name, " is undefined");
  TORCH_CHECK(t.dim() == dim, "rnnfuse: ", name, " must be ", dim, "-D, got ", t.dim(), "-D");
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), "rnnfuse: ", name, " has dtype ",
              t.scalar_type(), " but ", like_name, " has ", like.scalar_type());
  TORCH_CHECK(t.device() == like.device(), "rnnfuse: ", name, " is on ", t.device(), " but ",
              like_name, " is on ", like.device());
}

void check_workspace(const at::Tensor& workspace, const at::Tensor& grad_y, int64_t rows,
                     int64_t width, const char* cell) {
  TORCH_CHECK(workspace.scalar_type() == grad_y.scalar_type() &&
                  workspace.dim() == 2 && workspace.size(0) == rows &&
                  workspace.size(1) == width,
              "rnnfuse.", cell, "_bwd: workspace does not match; run ", cell,
              "_fwd with training=True");
  TORCH_CHECK(workspace.device() == grad_y.device(), "rnnfuse: workspace is on ",
              workspace.device(), " but grad_y is on ", grad_y.device());
}

void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected) {
  TORCH_CHECK(t.sizes() == expected, "rnnfuse: ", name, " must have shape ", expected, ", got ",
              t.sizes());
}

namespace {

// Packed input: (N, P), row r of step s holding the h_{t-1} that step's
// update consumed (rows of [y; h0]).
at::Tensor gather_h_prev(const at::Tensor& y, const at::Tensor& h0,
                         const std::vector<Step>& steps) {
  const int64_t n_rows = y.size(0);
  auto index = at::empty({n_rows}, at::kLong);
  int64_t* idx = index.data_ptr<int64_t>();
  for (const Step& st : steps)
    for (int64_t b = 0; b < st.bs; ++b)
      idx[st.row0 + b] = b < st.carry ? st.prev_row0 + b : n_rows + b;
  auto out = empty_rows({n_rows, y.size(1)}, y.options());
  return at::index_select_out(out, at::cat({y, h0}), 0, index.to(y.device()));
}

}  // namespace

at::Tensor weight_grad_rows(const at::Tensor& grad_rows, const at::Tensor& y, const at::Tensor& h0,
                            const std::vector<Step>& steps, bool packed, bool reverse) {
  const int64_t n_rows = y.size(0), batch = h0.size(0);
  if (n_rows == 0) return at::zeros({grad_rows.size(1), h0.size(1)}, grad_rows.options());
  if (packed) return rows_mm(grad_rows.t(), gather_h_prev(y, h0, steps));
  if (n_rows == batch) return rows_mm(grad_rows.t(), h0);  // one step: h_{t-1} is h0
  // Forward: rows [0, B) read h0, rows [B, N) read y's rows [0, N - B).
  // Reverse: rows [N - B, N) read h0, rows [0, N - B) read y's rows [B, N).
  const int64_t rest = n_rows - batch;
  const auto from_h0 = rows_mm(grad_rows.narrow(0, reverse ? rest : 0, batch).t(), h0);
  const auto a = grad_rows.narrow(0, reverse ? 0 : batch, rest).t();
  const auto b = y.narrow(0, reverse ? batch : 0, rest);
  // The kernels' GEMM where it takes the shapes (the CPU's fp32/fp64), then
  // h0's part; else one addmm (the GPU's, and the CPU's bf16 through ATen).
  if (a.device().is_cpu() && gemm_panel_width(a, b) > 0) return cpu_mm(a, b).add_(from_h0);
  return at::addmm(from_h0, a, b);
}

at::Tensor final_rows(const at::Tensor& y, const at::Tensor& h0, const std::vector<Step>& steps) {
  // Contiguous like every output (the fake kernels say so), even for a strided h0.
  if (steps.empty()) return h0.clone(at::MemoryFormat::Contiguous);
  // Usually every sequence ends at the last step processed (padded input, or
  // packed input walked in reverse): one copy of that step's rows.
  bool all_end_last = steps.back().bs == h0.size(0);
  for (size_t s = 0; s + 1 < steps.size() && all_end_last; ++s) {
    all_end_last = steps[s].carry_next == steps[s].bs;
  }
  if (all_end_last) return y.narrow(0, steps.back().row0, steps.back().bs).clone();
  auto h_n = h0.clone(at::MemoryFormat::Contiguous);
  for (const Step& st : steps) {
    if (st.carry_next < st.bs) {
      const int64_t n = st.bs - st.carry_next;
      h_n.narrow(0, st.carry_next, n).copy_(y.narrow(0, st.row0 + st.carry_next, n));
    }
  }
  return h_n;
}

at::Tensor finish_grad_h0(const at::Tensor& dh_state, const at::Tensor& grad_rec,
                          const at::Tensor& w_hh, const std::vector<Step>& steps,
                          at::ScalarType out_dtype) {
  // Usually every sequence starts at one step (the first in time), and with
  // fp32/fp64 one addmm does it all.
  int64_t starting = 0;
  for (const Step& st : steps) starting += st.carry < st.bs;
  if (starting == 1 && grad_rec.scalar_type() == dh_state.scalar_type()) {
    for (const Step& st : steps) {
      if (st.carry == 0 && st.bs == dh_state.size(0)) {
        return as_dtype(at::addmm(dh_state, grad_rec.narrow(0, st.row0, st.bs), w_hh), out_dtype);
      }
    }
  }
  auto grad_h0 = dh_state.clone();
  for (const Step& st : steps) {
    if (st.carry < st.bs) {
      const int64_t n = st.bs - st.carry;
      auto rec = at::mm(grad_rec.narrow(0, st.row0 + st.carry, n), w_hh);
      grad_h0.narrow(0, st.carry, n).add_(rec.to(grad_h0.scalar_type()));
    }
  }
  return as_dtype(grad_h0, out_dtype);
}

}  // namespace rnnfuse
