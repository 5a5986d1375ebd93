// The CPU kernels' blocked GEMM as a drop-in for at::mm, for the large GEMMs
// over all rows (weight gradients, the input projection's backward).
#pragma once

#include <ATen/core/Tensor.h>

namespace rnnfuse {

// a @ b for 2-D CPU tensors. fp32/fp64 with b's rows contiguous, b's columns
// a multiple of the kernels' panel width and enough work run on the kernels'
// GEMM (a may be any strided view, e.g. a transpose); anything else, at::mm.
at::Tensor cpu_mm(const at::Tensor& a, const at::Tensor& b);

}  // namespace rnnfuse
