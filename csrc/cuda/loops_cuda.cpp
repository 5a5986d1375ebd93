// CUDA time loops and the CUDA registrations of every rnnfuse op. The
// single-direction loops first offer the whole sequence to the persistent
// tier (persistent/, opt-in with RNNFUSE_PERSISTENT=1); otherwise each step is
// one fused kernel launch on the caller's current stream, for one direction
// or for both directions of a bidirectional layer; the projection of
// LSTM's proj_size (a second GEMM per step) goes through ATen on that stream.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cstdlib>
#include <string>

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
// The tile rule: the planner (csrc/step_plan.h) unless RNNFUSE_STEP_TILE
// forces one for comparisons (small, large, or threshold: the rule before
// the planner).
cuda::TileRule tile_rule() {
  const char* env = std::getenv("RNNFUSE_STEP_TILE");
  const std::string rule = env == nullptr ? "" : env;
  if (rule.empty() || rule == "auto") return cuda::TileRule::kPlanner;
  if (rule == "small") return cuda::TileRule::kSmall;
  if (rule == "large") return cuda::TileRule::kLarge;
  if (rule == "threshold") return cuda::TileRule::kThreshold;
  TORCH_CHECK(false, "rnnfuse: RNNFUSE_STEP_TILE must be auto, small, large or threshold, got '",
              rule, "'");
}

StepConfig step_config(at::ScalarType dtype) {
  const int device = c10::cuda::current_device();
  int major = 0, sm_count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  bool tensor_cores = major >= 8;
  if (dtype == at::kDouble) tensor_cores = false;
  if (dtype == at::kFloat) tensor_cores = tensor_cores && at::globalContext().allowTF32CuDNN();
  return {tensor_cores, c10::cuda::getCurrentCUDAStream().stream(), sm_count, tile_rule()};
}

// Address of row `row` of a contiguous 2-D tensor (64-bit offset).
char* row_ptr(const at::Tensor& t, int64_t row) {
  return static_cast<char*>(t.data_ptr()) + row * t.stride(0) * t.element_size();
}

// Each loop runs one or two directions of a layer (count): launch i carries
// every direction's step i (the reverse direction's schedule runs its time
// steps backwards), so a bidirectional layer takes one launch per time step.

// Both directions' schedules have one length (one per time step).
size_t schedule_length(const std::vector<Step>* steps, int count) {
  TORCH_INTERNAL_ASSERT(count == 1 || steps[0].size() == steps[1].size());
  return steps[0].size();
}

// ---------------------------------------------------------------- LSTM
// One direction's forward: its step arguments, and with a projection the
// scratch the kernel writes h into and the GEMM per step that maps it to y.
struct LstmFwdDirection {
  explicit LstmFwdDirection(const LstmForward& fwd)
      : f(fwd),
        hidden(fwd.c_state.size(1)),
        project(fwd.w_hr.defined()),
        h_raw(project ? at::empty({fwd.h0.size(0), hidden}, fwd.y.options()) : at::Tensor()),
        w_hr_t(project ? fwd.w_hr.t() : at::Tensor()) {}

  cuda::LstmFwdStepArgs args(const Step& st) const {
    cuda::LstmFwdStepArgs a;
    a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), f.y.stride(0),
                         static_cast<int>(st.carry), static_cast<int>(st.bs)};
    a.w_hh = f.w_hh.data_ptr();
    a.x = row_ptr(f.x_proj, st.row0);
    a.ld_x = f.x_proj.stride(0);
    a.c_state = f.c_state.data_ptr();
    a.h_out = project ? h_raw.data_ptr() : row_ptr(f.y, st.row0);
    a.ld_out = project ? hidden : f.y.stride(0);
    a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
    a.hidden = static_cast<int>(hidden);
    a.k = static_cast<int>(f.y.size(1));
    return a;
  }

  void after_launch(const Step& st) const {
    if (!project) return;
    auto y_rows = f.y.narrow(0, st.row0, st.bs);
    at::mm_out(y_rows, h_raw.narrow(0, 0, st.bs), w_hr_t);
  }

  const LstmForward& f;
  int64_t hidden;
  bool project;
  at::Tensor h_raw, w_hr_t;
};

template <typename scalar_t>
void lstm_forward_steps(const LstmForward* f, const std::vector<Step>* steps, int count) {
  const StepConfig cfg = step_config(f[0].x_proj.scalar_type());
  std::vector<LstmFwdDirection> dirs(f, f + count);
  for (size_t i = 0, n = schedule_length(steps, count); i < n; ++i) {
    cuda::StepGroup<cuda::LstmFwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = dirs[d].args(steps[d][i]);
    cuda::lstm_fwd_step<scalar_t>(group, cfg);
    for (int d = 0; d < count; ++d) dirs[d].after_launch(steps[d][i]);
  }
}

// One direction's backward. With a projection dh lives in the projected
// space: the host assembles it, keeps it for dW_hr and maps it back to the
// cell's units before the launch, which then runs without its GEMM.
struct LstmBwdDirection {
  explicit LstmBwdDirection(const LstmBackward& bwd)
      : g(bwd),
        hidden(bwd.dc_state.size(1)),
        project(bwd.w_hr.defined()),
        // Each unit's weights as one row, so the backward GEMM tiles like the forward.
        w_hh_t(bwd.w_hh.t().contiguous()),
        w_hr_acc(project ? bwd.w_hr.to(bwd.dc_state.scalar_type()) : at::Tensor()) {}

  // dh_unit receives the host-made dh (projection only); it must outlive the launch.
  cuda::LstmBwdStepArgs args(const Step& st, at::Tensor& dh_unit) const {
    cuda::LstmBwdStepArgs a;
    const int64_t ld_dgates = g.dgates.stride(0);
    if (project) {
      auto dh = g.grad_y.narrow(0, st.row0, st.bs).to(g.dh_state.scalar_type()) +
                g.dh_state.narrow(0, 0, st.bs);
      if (st.carry_next > 0) {
        dh.narrow(0, 0, st.carry_next)
            .add_(at::mm(g.dgates.narrow(0, st.next_row0, st.carry_next), g.w_hh));
      }
      g.dh_all.narrow(0, st.row0, st.bs).copy_(dh);
      g.dh_state.narrow(0, 0, st.bs).zero_();
      dh_unit = at::mm(dh, w_hr_acc);
      a.dgates_next = RowSource{nullptr, nullptr, ld_dgates, 0, static_cast<int>(st.bs)};
      a.k = 0;
    } else {
      a.dgates_next = RowSource{row_ptr(g.dgates, st.next_row0), nullptr, ld_dgates,
                                static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
      a.k = static_cast<int>(4 * hidden);
    }
    a.w_hh_t = w_hh_t.data_ptr();
    a.grad_y = row_ptr(g.grad_y, st.row0);
    a.ld_grad_y = g.grad_y.stride(0);
    a.dh_direct = project ? dh_unit.data_ptr() : nullptr;
    a.dh_state = g.dh_state.data_ptr();
    a.dc_state = g.dc_state.data_ptr();
    a.ws = row_ptr(g.ws, st.row0);
    a.ws_prev = row_ptr(g.ws, st.prev_row0);
    a.c0 = g.c0.data_ptr();
    a.carry = static_cast<int>(st.carry);
    a.dgates = row_ptr(g.dgates, st.row0);
    a.ld_dgates = ld_dgates;
    a.hidden = static_cast<int>(hidden);
    return a;
  }

  const LstmBackward& g;
  int64_t hidden;
  bool project;
  at::Tensor w_hh_t, w_hr_acc;
};

template <typename scalar_t>
void lstm_backward_steps(const LstmBackward* g, const std::vector<Step>* steps, int count) {
  const StepConfig cfg = step_config(g[0].grad_y.scalar_type());
  std::vector<LstmBwdDirection> dirs(g, g + count);
  for (size_t i = schedule_length(steps, count); i-- > 0;) {  // reverse processing order
    cuda::StepGroup<cuda::LstmBwdStepArgs> group{};
    group.count = count;
    at::Tensor dh_unit[2];
    for (int d = 0; d < count; ++d) group.dir[d] = dirs[d].args(steps[d][i], dh_unit[d]);
    cuda::lstm_bwd_step<scalar_t>(group, cfg);
  }
}

// ---------------------------------------------------------------- GRU
cuda::GruFwdStepArgs gru_fwd_args(const GruForward& f, const Step& st) {
  cuda::GruFwdStepArgs a;
  a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), f.y.stride(0),
                       static_cast<int>(st.carry), static_cast<int>(st.bs)};
  a.w_hh = f.w_hh.data_ptr();
  a.b_hh = f.b_hh.defined() ? f.b_hh.data_ptr() : nullptr;
  a.x = row_ptr(f.x_proj, st.row0);
  a.y = row_ptr(f.y, st.row0);
  a.ld_x = f.x_proj.stride(0);
  a.ld_y = f.y.stride(0);
  a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
  a.hidden = static_cast<int>(f.h0.size(1));
  return a;
}

template <typename scalar_t>
void gru_forward_steps(const GruForward* f, const std::vector<Step>* steps, int count) {
  const StepConfig cfg = step_config(f[0].x_proj.scalar_type());
  for (size_t i = 0, n = schedule_length(steps, count); i < n; ++i) {
    cuda::StepGroup<cuda::GruFwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = gru_fwd_args(f[d], steps[d][i]);
    cuda::gru_fwd_step<scalar_t>(group, cfg);
  }
}

// w_hh_t: g.w_hh transposed, contiguous (each unit's weights as one row).
cuda::GruBwdStepArgs gru_bwd_args(const GruBackward& g, const at::Tensor& w_hh_t, const Step& st) {
  const int64_t hidden = g.h0.size(1);
  cuda::GruBwdStepArgs a;
  a.dhh_next = RowSource{row_ptr(g.dhh, st.next_row0), nullptr, g.dhh.stride(0),
                         static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
  a.w_hh_t = w_hh_t.data_ptr();
  a.grad_y = row_ptr(g.grad_y, st.row0);
  a.ld_grad_y = g.grad_y.stride(0);
  a.dh_state = g.dh_state.data_ptr();
  a.ws = row_ptr(g.ws, st.row0);
  a.h_prev_rows = row_ptr(g.y, st.prev_row0);
  a.ld_h_prev = g.y.stride(0);
  a.h0 = g.h0.data_ptr();
  a.carry = static_cast<int>(st.carry);
  a.dx = row_ptr(g.dx, st.row0);
  a.ld_dx = g.dx.stride(0);
  a.dhh = row_ptr(g.dhh, st.row0);
  a.hidden = static_cast<int>(hidden);
  return a;
}

template <typename scalar_t>
void gru_backward_steps(const GruBackward* g, const std::vector<Step>* steps, int count) {
  const StepConfig cfg = step_config(g[0].grad_y.scalar_type());
  at::Tensor w_hh_t[2];
  for (int d = 0; d < count; ++d) w_hh_t[d] = g[d].w_hh.t().contiguous();
  for (size_t i = schedule_length(steps, count); i-- > 0;) {  // reverse processing order
    cuda::StepGroup<cuda::GruBwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = gru_bwd_args(g[d], w_hh_t[d], steps[d][i]);
    cuda::gru_bwd_step<scalar_t>(group, cfg);
  }
}

// ------------------------------------------------------- dtype dispatch
#define RNNFUSE_DISPATCH(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

void lstm_forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 5 * f.c_state.size(1));
  if (persist::try_lstm_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(f.x_proj.scalar_type(), "rnnfuse_lstm_fwd_cuda",
                   [&] { lstm_forward_steps<scalar_t>(&f, &steps, 1); });
}
void lstm_backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.dc_state.size(0), 5 * g.dc_state.size(1));
  if (persist::try_lstm_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(g.grad_y.scalar_type(), "rnnfuse_lstm_bwd_cuda",
                   [&] { lstm_backward_steps<scalar_t>(&g, &steps, 1); });
}
void gru_forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 4 * f.h0.size(1));
  if (persist::try_gru_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(f.x_proj.scalar_type(), "rnnfuse_gru_fwd_cuda",
                   [&] { gru_forward_steps<scalar_t>(&f, &steps, 1); });
}
void gru_backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.h0.size(0), 4 * g.h0.size(1));
  if (persist::try_gru_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  RNNFUSE_DISPATCH(g.grad_y.scalar_type(), "rnnfuse_gru_bwd_cuda",
                   [&] { gru_backward_steps<scalar_t>(&g, &steps, 1); });
}

// Both directions of a layer, one launch per time step. The persistent tier
// takes single-direction calls only (contiguous rows); these run the step
// kernels whatever RNNFUSE_PERSISTENT says.
void lstm_bidir_forward_loop(const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(f[0].h0.size(0), 5 * f[0].c_state.size(1));
  RNNFUSE_DISPATCH(f[0].x_proj.scalar_type(), "rnnfuse_lstm_bidir_fwd_cuda",
                   [&] { lstm_forward_steps<scalar_t>(f, steps, 2); });
}
void lstm_bidir_backward_loop(const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(g[0].dc_state.size(0), 5 * g[0].dc_state.size(1));
  RNNFUSE_DISPATCH(g[0].grad_y.scalar_type(), "rnnfuse_lstm_bidir_bwd_cuda",
                   [&] { lstm_backward_steps<scalar_t>(g, steps, 2); });
}
void gru_bidir_forward_loop(const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(f[0].h0.size(0), 4 * f[0].h0.size(1));
  RNNFUSE_DISPATCH(f[0].x_proj.scalar_type(), "rnnfuse_gru_bidir_fwd_cuda",
                   [&] { gru_forward_steps<scalar_t>(f, steps, 2); });
}
void gru_bidir_backward_loop(const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(g[0].h0.size(0), 4 * g[0].h0.size(1));
  RNNFUSE_DISPATCH(g[0].grad_y.scalar_type(), "rnnfuse_gru_bidir_bwd_cuda",
                   [&] { gru_backward_steps<scalar_t>(g, steps, 2); });
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

// Both directions of a layer (driver_lstm.cpp / driver_gru.cpp hold the
// bodies): one launch per time step for both.
using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_fwd_cuda(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& batch_sizes, bool training) {
  check_on_cuda(x_proj, "x_proj");
  const c10::cuda::OptionalCUDAGuard guard(x_proj.device());
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes,
                            training, &lstm_bidir_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_bwd_cuda(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                    const at::Tensor& w_hh_rev, const OptTensor& w_hr, const OptTensor& w_hr_rev,
                    const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
                    const at::Tensor& workspace, const OptTensor& batch_sizes) {
  check_on_cuda(grad_y, "grad_y");
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0,
                             y, workspace, batch_sizes, &lstm_bidir_backward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_fwd_cuda(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& b_hh, const OptTensor& b_hh_rev, const at::Tensor& h0,
    const OptTensor& batch_sizes, bool training) {
  check_on_cuda(x_proj, "x_proj");
  const c10::cuda::OptionalCUDAGuard guard(x_proj.device());
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           &gru_bidir_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_bwd_cuda(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                   const at::Tensor& w_hh_rev, const OptTensor& b_hh, const OptTensor& b_hh_rev,
                   const at::Tensor& h0, const at::Tensor& y, const at::Tensor& workspace,
                   const OptTensor& batch_sizes) {
  check_on_cuda(grad_y, "grad_y");
  const c10::cuda::OptionalCUDAGuard guard(grad_y.device());
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes, &gru_bidir_backward_loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CUDA, m) {
  m.impl("lstm_fwd", &rnnfuse::lstm_fwd_cuda);
  m.impl("lstm_bwd", &rnnfuse::lstm_bwd_cuda);
  m.impl("gru_fwd", &rnnfuse::gru_fwd_cuda);
  m.impl("gru_bwd", &rnnfuse::gru_bwd_cuda);
  m.impl("lstm_bidir_fwd", &rnnfuse::lstm_bidir_fwd_cuda);
  m.impl("lstm_bidir_bwd", &rnnfuse::lstm_bidir_bwd_cuda);
  m.impl("gru_bidir_fwd", &rnnfuse::gru_bidir_fwd_cuda);
  m.impl("gru_bidir_bwd", &rnnfuse::gru_bidir_bwd_cuda);
}
