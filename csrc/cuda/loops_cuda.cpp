// CUDA time loops and the CUDA registrations of every rnnfuse op. The forward
// loops first offer the whole sequence to the persistent tier (persistent/,
// opt-in with RNNFUSE_PERSISTENT=1); otherwise each step is
// one fused kernel launch on the caller's current stream; the projection of
// LSTM's proj_size (a second GEMM per step) goes through ATen on that stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../recurrence.h"
#include "persistent/persistent.h"
#include "step_args.h"

namespace rnnfuse {
namespace {

using cuda::RowSource;
using cuda::StepConfig;

// The rnnfuse tiles index blocks by batch on grid.y (at most 65535 tiles).
constexpr int64_t kMaxBatch = 65535LL * 16;

void check_cuda_sizes(int64_t batch, int64_t width) {
  TORCH_CHECK(batch <= kMaxBatch, "rnnfuse: batch size ", batch,
              " exceeds the CUDA kernels' limit of ", kMaxBatch);
  TORCH_CHECK(width < (int64_t(1) << 28), "rnnfuse: hidden size ", width,
              " is too large for the CUDA kernels");
}

// Tensor cores for fp16/bf16 always, for fp32 as TF32 when PyTorch allows
// TF32 in cuDNN (torch.backends.cudnn.allow_tf32: the switch that governs
// cuDNN's RNNs, so rnnfuse-vs-cuDNN comparisons are like for like); never
// for fp64, and not below sm_80.
// (c10's CUDA headers only: ATen's CUDAContext.h pulls in cuSPARSE/cuBLAS
// headers that a bare toolkit may not ship.)
StepConfig step_config(at::ScalarType dtype) {
  int major = 0;
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c10::cuda::current_device()));
  bool tensor_cores = major >= 8;
  if (dtype == at::kDouble) tensor_cores = false;
  if (dtype == at::kFloat) tensor_cores = tensor_cores && at::globalContext().allowTF32CuDNN();
  return {tensor_cores, c10::cuda::getCurrentCUDAStream().stream()};
}

// Address of row `row` of a contiguous 2-D tensor (64-bit offset).
char* row_ptr(const at::Tensor& t, int64_t row) {
  return static_cast<char*>(t.data_ptr()) + row * t.stride(0) * t.element_size();
}

// ---------------------------------------------------------------- LSTM
template <typename scalar_t>
void lstm_forward_steps(const LstmForward& f, const std::vector<Step>& steps) {
  const int64_t hidden = f.c_state.size(1);
  const int64_t out = f.y.size(1);
  const bool project = f.w_hr.defined();
  const StepConfig cfg = step_config(f.x_proj.scalar_type());
  // With a projection the kernel writes h into a scratch that one GEMM per
  // step maps to y.
  const at::Tensor h_raw = project ? at::empty({f.h0.size(0), hidden}, f.y.options()) : at::Tensor();
  const at::Tensor w_hr_t = project ? f.w_hr.t() : at::Tensor();
  for (const Step& st : steps) {
    cuda::LstmFwdStepArgs a;
    a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), out,
                         static_cast<int>(st.carry), static_cast<int>(st.bs)};
    a.w_hh = f.w_hh.data_ptr();
    a.x = row_ptr(f.x_proj, st.row0);
    a.c_state = f.c_state.data_ptr();
    a.h_out = project ? h_raw.data_ptr() : row_ptr(f.y, st.row0);
    a.ld_out = project ? hidden : out;
    a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
    a.hidden = static_cast<int>(hidden);
    a.k = static_cast<int>(out);
    cuda::lstm_fwd_step<scalar_t>(a, cfg);
    if (project) {
      auto y_rows = f.y.narrow(0, st.row0, st.bs);
      at::mm_out(y_rows, h_raw.narrow(0, 0, st.bs), w_hr_t);
    }
  }
}

template <typename scalar_t>
void lstm_backward_steps(const LstmBackward& g, const std::vector<Step>& steps) {
  const int64_t hidden = g.dc_state.size(1);
  const bool project = g.w_hr.defined();
  const StepConfig cfg = step_config(g.grad_y.scalar_type());
  // Each unit's weights as one row, so the backward GEMM tiles like the forward.
  const at::Tensor w_hh_t = g.w_hh.t().contiguous();
  const at::Tensor w_hr_acc = project ? g.w_hr.to(g.dc_state.scalar_type()) : at::Tensor();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& st = *it;
    cuda::LstmBwdStepArgs a;
    at::Tensor dh_unit;
    if (project) {
      // dh lives in the projected space: assemble it, keep it for dW_hr, map it
      // back to the cell's units; the kernel then runs without its GEMM.
      auto dh = g.grad_y.narrow(0, st.row0, st.bs).to(g.dh_state.scalar_type()) +
                g.dh_state.narrow(0, 0, st.bs);
      if (st.carry_next > 0) {
        dh.narrow(0, 0, st.carry_next)
            .add_(at::mm(g.dgates.narrow(0, st.next_row0, st.carry_next), g.w_hh));
      }
      g.dh_all.narrow(0, st.row0, st.bs).copy_(dh);
      g.dh_state.narrow(0, 0, st.bs).zero_();
      dh_unit = at::mm(dh, w_hr_acc);
      a.dgates_next = RowSource{nullptr, nullptr, 4 * hidden, 0, static_cast<int>(st.bs)};
      a.k = 0;
    } else {
      a.dgates_next = RowSource{row_ptr(g.dgates, st.next_row0), nullptr, 4 * hidden,
                                static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
      a.k = static_cast<int>(4 * hidden);
    }
    a.w_hh_t = w_hh_t.data_ptr();
    a.grad_y = row_ptr(g.grad_y, st.row0);
    a.dh_direct = project ? dh_unit.data_ptr() : nullptr;
    a.dh_state = g.dh_state.data_ptr();
    a.dc_state = g.dc_state.data_ptr();
    a.ws = row_ptr(g.ws, st.row0);
    a.ws_prev = row_ptr(g.ws, st.prev_row0);
    a.c0 = g.c0.data_ptr();
    a.carry = static_cast<int>(st.carry);
    a.dgates = row_ptr(g.dgates, st.row0);
    a.hidden = static_cast<int>(hidden);
    cuda::lstm_bwd_step<scalar_t>(a, cfg);
  }
}

// ---------------------------------------------------------------- GRU
template <typename scalar_t>
void gru_forward_steps(const GruForward& f, const std::vector<Step>& steps) {
  const int64_t hidden = f.h0.size(1);
  const StepConfig cfg = step_config(f.x_proj.scalar_type());
  for (const Step& st : steps) {
    cuda::GruFwdStepArgs a;
    a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), hidden,
                         static_cast<int>(st.carry), static_cast<int>(st.bs)};
    a.w_hh = f.w_hh.data_ptr();
    a.b_hh = f.b_hh.defined() ? f.b_hh.data_ptr() : nullptr;
    a.x = row_ptr(f.x_proj, st.row0);
    a.y = row_ptr(f.y, st.row0);
    a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
    a.hidden = static_cast<int>(hidden);
    cuda::gru_fwd_step<scalar_t>(a, cfg);
  }
}

template <typename scalar_t>
void gru_backward_steps(const GruBackward& g, const std::vector<Step>& steps) {
  const int64_t hidden = g.h0.size(1);
  const StepConfig cfg = step_config(g.grad_y.scalar_type());
  const at::Tensor w_hh_t = g.w_hh.t().contiguous();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    const Step& st = *it;
    cuda::GruBwdStepArgs a;
    a.dhh_next = RowSource{row_ptr(g.dhh, st.next_row0), nullptr, 3 * hidden,
                           static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
    a.w_hh_t = w_hh_t.data_ptr();
    a.grad_y = row_ptr(g.grad_y, st.row0);
    a.dh_state = g.dh_state.data_ptr();
    a.ws = row_ptr(g.ws, st.row0);
    a.h_prev_rows = row_ptr(g.y, st.prev_row0);
    a.h0 = g.h0.data_ptr();
    a.carry = static_cast<int>(st.carry);
    a.dx = row_ptr(g.dx, st.row0);
    a.dhh = row_ptr(g.dhh, st.row0);
    a.hidden = static_cast<int>(hidden);
    cuda::gru_bwd_step<scalar_t>(a, cfg);
  }
}

// ------------------------------------------------------- dtype dispatch
#define RNNFUSE_DISPATCH(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

void lstm_forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 5 * f.c_state.size(1));
  if (persist::try_lstm_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(f.x_proj.scalar_type(), "rnnfuse_lstm_fwd_cuda",
                   [&] { lstm_forward_steps<scalar_t>(f, steps); });
}
void lstm_backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.dc_state.size(0), 5 * g.dc_state.size(1));
  if (persist::try_lstm_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(g.grad_y.scalar_type(), "rnnfuse_lstm_bwd_cuda",
                   [&] { lstm_backward_steps<scalar_t>(g, steps); });
}
void gru_forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 4 * f.h0.size(1));
  if (persist::try_gru_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(f.x_proj.scalar_type(), "rnnfuse_gru_fwd_cuda",
                   [&] { gru_forward_steps<scalar_t>(f, steps); });
}
void gru_backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.h0.size(0), 4 * g.h0.size(1));
  if (persist::try_gru_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(g.grad_y.scalar_type(), "rnnfuse_gru_bwd_cuda",
                   [&] { gru_backward_steps<scalar_t>(g, steps); });
}

// ------------------------------------------------------- op entry points
// Every entry point checks the device and guards it, so tensors on cuda:1
// run on cuda:1 with that device's current stream.
void check_on_cuda(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cuda(), "rnnfuse: ", name, " must be a CUDA tensor, got one on ", t.device());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_fwd_cuda(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training) {
  check_on_cuda(x_proj, "x_proj");
  const c10::cuda::OptionalCUDAGuard guard(x_proj.device());
  return lstm_forward(x_proj, w_hh, w_hr, h0, c0, batch_sizes, reverse, training,
                      &lstm_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bwd_cuda(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  check_on_cuda(grad_y, "grad_y");
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hr, h0, c0, y, workspace, batch_sizes,
                       reverse, &lstm_backward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_fwd_cuda(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training) {
  check_on_cuda(x_proj, "x_proj");
  const c10::cuda::OptionalCUDAGuard guard(x_proj.device());
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training, &gru_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_bwd_cuda(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse) {
  check_on_cuda(grad_y, "grad_y");
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      &gru_backward_loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CUDA, m) {
  m.impl("lstm_fwd", &rnnfuse::lstm_fwd_cuda);
  m.impl("lstm_bwd", &rnnfuse::lstm_bwd_cuda);
  m.impl("gru_fwd", &rnnfuse::gru_fwd_cuda);
  m.impl("gru_bwd", &rnnfuse::gru_bwd_cuda);
}
