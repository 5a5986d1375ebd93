// The CPU kernels' blocked GEMM as a drop-in for at::mm, for the large GEMMs
// over all rows (weight gradients, the input projection's backward).
#pragma once

#include <ATen/core/Tensor.h>

namespace rnnfuse {

// a @ b for 2-D CPU tensors. fp32/fp64 with b's rows contiguous, b's columns
// a multiple of the kernels' panel width and enough work run on the kernels'
// GEMM (a may be any strided view, e.g. a transpose); anything else, at::mm.
at::Tensor cpu_mm(const at::Tensor& a, const at::Tensor& b);

// The kernels' panel width where their GEMM takes a @ b (both fp32 or both
// fp64, b's rows contiguous, b's columns whole panels, k > 0: it never stores
// C without a k step), else 0.
int64_t gemm_panel_width(const at::Tensor& a, const at::Tensor& b);

// c = a @ b, or c += a @ b with accumulate, over c's column panels
// [pan0, pan1), on the calling thread: a and b as gemm_panel_width takes
// them, c (m, n) of their dtype with unit column stride.
void gemm_panels(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, bool accumulate,
                 int64_t pan0, int64_t pan1);

}  // namespace rnnfuse
