// CPU implementation of the bidirectional layer ops (both directions of one
// layer per call; driver_lstm.cpp / driver_gru.cpp hold the op bodies), on
// the time loops of lstm_cpu.cpp / gru_cpu.cpp.
//
// With two threads the two directions' loops run side by side, one thread
// each: a step then has no fork-join across threads, which a small step
// feels (batch 1: 3-9% faster on two cores; elsewhere -1% to +4%;
// benchmarks/results/cpu-2core_2026-11-28_bidir). With
// more threads they run one after the other, each on all of them (ATen's
// parallel regions do not nest, so side by side would leave all but two
// idle). RNNFUSE_CPU_BIDIR_SEQUENTIAL=1 forces one after the other (for
// comparisons); the results are the same bit for bit either way.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include <cstdlib>

#include "../recurrence.h"
#include "loops.h"

namespace rnnfuse {
namespace {

bool sequential_forced() {
  const char* env = std::getenv("RNNFUSE_CPU_BIDIR_SEQUENTIAL");
  return env != nullptr && env[0] == '1';
}

void run_directions(c10::function_ref<void(int)> run) {
  if (at::get_num_threads() != 2 || at::in_parallel_region() || sequential_forced()) {
    run(0);
    run(1);
    return;
  }
  // The workers run ATen ops (buffers, a projection's GEMM): they need the
  // caller's dispatcher state (below autograd, autocast excluded).
  const at::ThreadLocalState state;
  at::parallel_for(0, 2, 1, [&](int64_t d0, int64_t d1) {
    const at::ThreadLocalStateGuard guard(state);
    for (int64_t dir = d0; dir < d1; ++dir) run(static_cast<int>(dir));
  });
}

// The backend's bidirectional loops: the single-direction CPU loop per
// direction, run as run_directions says.
template <typename Operands, typename Loop>
void both_directions(Loop loop, const Operands (&ops)[2], const std::vector<Step> (&steps)[2]) {
  run_directions([&](int dir) { loop(ops[dir], steps[dir]); });
}
void lstm_bidir_forward_loop(const LstmForward (&f)[2], const std::vector<Step> (&s)[2]) {
  both_directions(&lstm_forward_loop_cpu, f, s);
}
void lstm_bidir_backward_loop(const LstmBackward (&g)[2], const std::vector<Step> (&s)[2]) {
  both_directions(&lstm_backward_loop_cpu, g, s);
}
void gru_bidir_forward_loop(const GruForward (&f)[2], const std::vector<Step> (&s)[2]) {
  both_directions(&gru_forward_loop_cpu, f, s);
}
void gru_bidir_backward_loop(const GruBackward (&g)[2], const std::vector<Step> (&s)[2]) {
  both_directions(&gru_backward_loop_cpu, g, s);
}

using OptTensor = c10::optional<at::Tensor>;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0, const at::Tensor& c0,
    const OptTensor& batch_sizes, bool training) {
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0, batch_sizes,
                            training, &lstm_bidir_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_bwd_cpu(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                   const at::Tensor& grad_c_n, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
                   const OptTensor& w_hr, const OptTensor& w_hr_rev, const at::Tensor& h0,
                   const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
                   const OptTensor& batch_sizes) {
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, w_hr, w_hr_rev, h0, c0,
                             y, workspace, batch_sizes, &lstm_bidir_backward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_fwd_cpu(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const OptTensor& b_hh, const OptTensor& b_hh_rev, const at::Tensor& h0,
    const OptTensor& batch_sizes, bool training) {
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           &gru_bidir_forward_loop);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_bwd_cpu(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                  const at::Tensor& w_hh_rev, const OptTensor& b_hh, const OptTensor& b_hh_rev,
                  const at::Tensor& h0, const at::Tensor& y, const at::Tensor& workspace,
                  const OptTensor& batch_sizes) {
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes, &gru_bidir_backward_loop);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_bidir_fwd", &rnnfuse::lstm_bidir_fwd_cpu);
  m.impl("lstm_bidir_bwd", &rnnfuse::lstm_bidir_bwd_cpu);
  m.impl("gru_bidir_fwd", &rnnfuse::gru_bidir_fwd_cpu);
  m.impl("gru_bidir_bwd", &rnnfuse::gru_bidir_bwd_cpu);
}
