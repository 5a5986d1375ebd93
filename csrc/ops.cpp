// The only TORCH_LIBRARY block: every rnnfuse op's schema, declared once.
// CPU and CUDA implementations register themselves with TORCH_LIBRARY_IMPL;
// fake kernels and autograd are registered from Python (rnnfuse/ops.py).
//
// One call runs one layer in one direction over the whole sequence. Layout
// (see schedule.h): x_proj is (N, G*H) time-major; without batch_sizes every
// step holds all B = h0.size(0) rows (N = T*B), with them (a PackedSequence's,
// int64 on the CPU) step t holds the first batch_sizes[t] rows. Workspace is
// what the backward needs, in the accumulation dtype; empty unless training.
#include <torch/library.h>

#include <string>

namespace rnnfuse {
// csrc/cpu/kernels_dispatch.cpp
std::string cpu_kernels_isa();
}  // namespace rnnfuse

TORCH_LIBRARY(rnnfuse, m) {
  m.def(
      "lstm_fwd(Tensor x_proj, Tensor w_hh, Tensor? w_hr, Tensor h0, Tensor c0, "
      "Tensor? batch_sizes, bool reverse, bool training) "
      "-> (Tensor y, Tensor h_n, Tensor c_n, Tensor workspace)");
  m.def(
      "lstm_bwd(Tensor grad_y, Tensor grad_h_n, Tensor grad_c_n, Tensor w_hh, Tensor? w_hr, "
      "Tensor h0, Tensor c0, Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_w_hr, Tensor grad_h0, "
      "Tensor grad_c0)");
  m.def(
      "gru_fwd(Tensor x_proj, Tensor w_hh, Tensor? b_hh, Tensor h0, Tensor? batch_sizes, "
      "bool reverse, bool training) -> (Tensor y, Tensor h_n, Tensor workspace)");
  m.def(
      "gru_bwd(Tensor grad_y, Tensor grad_h_n, Tensor w_hh, Tensor? b_hh, Tensor h0, "
      "Tensor y, Tensor workspace, Tensor? batch_sizes, bool reverse) "
      "-> (Tensor grad_x_proj, Tensor grad_w_hh, Tensor grad_b_hh, Tensor grad_h0)");
  // y = x @ w^T + b for 2-D x: the input projection of all timesteps. CPU
  // only (fp32/fp64); elsewhere torch.nn.functional.linear does this.
  m.def("linear(Tensor x, Tensor w, Tensor? b) -> Tensor");
  // a @ b for 2-D a and b: the input projection's backward. CPU only (the
  // kernels' GEMM, or at::mm where it cannot take the shapes).
  m.def("mm(Tensor a, Tensor b) -> Tensor");
  // Which instruction set the CPU kernels run with on this machine ("AVX512",
  // "AVX2" or "DEFAULT"): for tests and benchmark reports.
  m.def("_cpu_kernels_isa() -> str", &rnnfuse::cpu_kernels_isa);
}
