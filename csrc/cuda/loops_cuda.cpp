// CUDA time loops and the CUDA registrations of every rnnfuse op. The loops
// first offer the whole sequence (one direction, or both directions of a
// bidirectional layer) to the persistent tier (persistent/, opt-in with
// RNNFUSE_PERSISTENT=1); otherwise each step is one fused kernel launch on
// the caller's current stream, for one direction or for both; the projection of
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
#include "step_loops.h"

namespace rnnfuse {
namespace {

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

// The tensor-core tiles' k-chunk: the default, or twice it
// (RNNFUSE_STEP_CHUNK=deep), for the GPU check's comparison.
bool deep_chunks() {
  const char* env = std::getenv("RNNFUSE_STEP_CHUNK");
  const std::string chunk = env == nullptr ? "" : env;
  if (chunk.empty() || chunk == "base") return false;
  if (chunk == "deep") return true;
  TORCH_CHECK(false, "rnnfuse: RNNFUSE_STEP_CHUNK must be base or deep, got '", chunk, "'");
}

StepConfig step_config(at::ScalarType dtype) {
  const int device = c10::cuda::current_device();
  int major = 0, sm_count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, device));
  bool tensor_cores = major >= 8;
  if (dtype == at::kDouble) tensor_cores = false;
  if (dtype == at::kFloat) tensor_cores = tensor_cores && at::globalContext().allowTF32CuDNN();
  return {tensor_cores, c10::cuda::getCurrentCUDAStream().stream(), sm_count, tile_rule(),
          deep_chunks()};
}

// The real launches: one step on the caller's stream (the config is read
// once per op call).
template <typename scalar_t>
struct CudaLaunch {
  StepConfig cfg;
  void operator()(const cuda::StepGroup<cuda::LstmFwdStepArgs>& g) const {
    cuda::lstm_fwd_step<scalar_t>(g, cfg);
  }
  void operator()(const cuda::StepGroup<cuda::LstmBwdStepArgs>& g) const {
    cuda::lstm_bwd_step<scalar_t>(g, cfg);
  }
  void operator()(const cuda::StepGroup<cuda::GruFwdStepArgs>& g) const {
    cuda::gru_fwd_step<scalar_t>(g, cfg);
  }
  void operator()(const cuda::StepGroup<cuda::GruBwdStepArgs>& g) const {
    cuda::gru_bwd_step<scalar_t>(g, cfg);
  }
};

// ------------------------------------------------------- dtype dispatch
#define RNNFUSE_DISPATCH(dtype, name, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, dtype, name, __VA_ARGS__)

void lstm_forward_loop(const LstmForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 5 * f.c_state.size(1));
  if (persist::try_lstm_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  const auto dtype = f.x_proj.scalar_type();
  RNNFUSE_DISPATCH(dtype, "rnnfuse_lstm_fwd_cuda", [&] {
    step_loops::lstm_forward_steps(&f, &steps, 1, CudaLaunch<scalar_t>{step_config(dtype)});
  });
}
void lstm_backward_loop(const LstmBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.dc_state.size(0), 5 * g.dc_state.size(1));
  if (persist::try_lstm_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  const auto dtype = g.grad_y.scalar_type();
  RNNFUSE_DISPATCH(dtype, "rnnfuse_lstm_bwd_cuda", [&] {
    step_loops::lstm_backward_steps(&g, &steps, 1, CudaLaunch<scalar_t>{step_config(dtype)});
  });
}
void gru_forward_loop(const GruForward& f, const std::vector<Step>& steps) {
  check_cuda_sizes(f.h0.size(0), 4 * f.h0.size(1));
  if (persist::try_gru_forward(f, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  const auto dtype = f.x_proj.scalar_type();
  RNNFUSE_DISPATCH(dtype, "rnnfuse_gru_fwd_cuda", [&] {
    step_loops::gru_forward_steps(&f, &steps, 1, CudaLaunch<scalar_t>{step_config(dtype)});
  });
}
void gru_backward_loop(const GruBackward& g, const std::vector<Step>& steps) {
  check_cuda_sizes(g.h0.size(0), 4 * g.h0.size(1));
  if (persist::try_gru_backward(g, steps)) return;  // opt-in: RNNFUSE_PERSISTENT=1
  const auto dtype = g.grad_y.scalar_type();
  RNNFUSE_DISPATCH(dtype, "rnnfuse_gru_bwd_cuda", [&] {
    step_loops::gru_backward_steps(&g, &steps, 1, CudaLaunch<scalar_t>{step_config(dtype)});
  });
}

// Both directions of a layer: the persistent tier first (opt-in:
// RNNFUSE_PERSISTENT=1; one grid-tier launch for both, or one per
// direction), then one step-kernel launch per time step for the directions
// it did not run (both, or the one a refused launch left).
template <typename Op, typename Steps>
void bidir_rest(int done, const Op (&op)[2], const std::vector<Step> (&steps)[2], Steps&& run) {
  if (done == 3) return;
  if (done == 0) {
    run(op, steps, 2);
  } else {
    const int d = done == 1 ? 1 : 0;
    run(&op[d], &steps[d], 1);
  }
}

void lstm_bidir_forward_loop(const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(f[0].h0.size(0), 5 * f[0].c_state.size(1));
  const auto dtype = f[0].x_proj.scalar_type();
  bidir_rest(persist::try_lstm_bidir_forward(f, steps), f, steps,
             [&](const LstmForward* op, const std::vector<Step>* st, int dirs) {
               RNNFUSE_DISPATCH(dtype, "rnnfuse_lstm_bidir_fwd_cuda", [&] {
                 step_loops::lstm_forward_steps(op, st, dirs,
                                                 CudaLaunch<scalar_t>{step_config(dtype)});
               });
             });
}
void lstm_bidir_backward_loop(const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(g[0].dc_state.size(0), 5 * g[0].dc_state.size(1));
  const auto dtype = g[0].grad_y.scalar_type();
  bidir_rest(persist::try_lstm_bidir_backward(g, steps), g, steps,
             [&](const LstmBackward* op, const std::vector<Step>* st, int dirs) {
               RNNFUSE_DISPATCH(dtype, "rnnfuse_lstm_bidir_bwd_cuda", [&] {
                 step_loops::lstm_backward_steps(op, st, dirs,
                                                 CudaLaunch<scalar_t>{step_config(dtype)});
               });
             });
}
void gru_bidir_forward_loop(const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(f[0].h0.size(0), 4 * f[0].h0.size(1));
  const auto dtype = f[0].x_proj.scalar_type();
  bidir_rest(persist::try_gru_bidir_forward(f, steps), f, steps,
             [&](const GruForward* op, const std::vector<Step>* st, int dirs) {
               RNNFUSE_DISPATCH(dtype, "rnnfuse_gru_bidir_fwd_cuda", [&] {
                 step_loops::gru_forward_steps(op, st, dirs,
                                                 CudaLaunch<scalar_t>{step_config(dtype)});
               });
             });
}
void gru_bidir_backward_loop(const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  check_cuda_sizes(g[0].h0.size(0), 4 * g[0].h0.size(1));
  const auto dtype = g[0].grad_y.scalar_type();
  bidir_rest(persist::try_gru_bidir_backward(g, steps), g, steps,
             [&](const GruBackward* op, const std::vector<Step>* st, int dirs) {
               RNNFUSE_DISPATCH(dtype, "rnnfuse_gru_bidir_bwd_cuda", [&] {
                 step_loops::gru_backward_steps(op, st, dirs,
                                                 CudaLaunch<scalar_t>{step_config(dtype)});
               });
             });
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
