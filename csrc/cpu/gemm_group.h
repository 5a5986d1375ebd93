// Several independent CPU GEMMs run as one parallel region: a single-step
// cell's two forward products (x @ w_ih^T, h0 @ w_hh^T) and four backward ones
// (dx, dh0, dW_ih, dW_hh). Each is small enough that one call does not use
// the threads well (MKL's 64 x 2048 -> 512 product: 1.6 ms on one thread, 1.06
// ms on two, here: benchmarks/results/cpu-2core_2026-11-28_cell-gemms/), and
// they are independent, so their output columns are dealt out across the
// threads together, each piece computed by one thread: on the kernels'
// blocked GEMM where it takes the operands, else at::mm on a column slice
// (MKL, which runs single-threaded inside the region).
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace rnnfuse {

// c = a @ b, or c += a @ b with accumulate. a (m, k) and b (k, n) any 2-D
// CPU tensors of c's dtype; c (m, n) with unit column stride (a contiguous
// tensor or a column slice of one), allocated by the caller.
struct GemmTask {
  at::Tensor a, b, c;
  bool accumulate = false;
};

// Every task's result, each output element written by exactly one thread in
// an order that depends only on the shapes and the thread count (so a rerun
// is bitwise equal).
void gemm_group(const std::vector<GemmTask>& tasks);

}  // namespace rnnfuse
