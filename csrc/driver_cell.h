// The single-step cell ops' device-independent bodies (driver_cell.cpp),
// shared with the CPU's fused forward (cpu/cell_cpu.cpp), which hands them
// every call it does not take, and checks shared with the CPU's backward
// (cpu/cell_bwd_cpu.cpp).
#pragma once

#include <ATen/ATen.h>

#include <tuple>

#include "driver_common.h"

namespace rnnfuse {

using OptTensor = c10::optional<at::Tensor>;

inline bool defined(const OptTensor& t) { return t.has_value() && t->defined(); }

// x (B, I), h0 (B, H), w_ih (G*H, I); the biases both present or both absent,
// (G*H); all of x's dtype and device.
void check_cell_inputs(const char* cell, int64_t gates, const at::Tensor& x,
                       const at::Tensor& w_ih, const at::Tensor& h0, const OptTensor& b_ih,
                       const OptTensor& b_hh);

// The input-projection GEMM, then the layer op for one step.
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_fwd_composite(
    const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const at::Tensor& h0, const at::Tensor& c0, bool training);
std::tuple<at::Tensor, at::Tensor> gru_cell_fwd_composite(
    const at::Tensor& x, const at::Tensor& w_ih, const at::Tensor& w_hh, const OptTensor& b_ih,
    const OptTensor& b_hh, const at::Tensor& h0, bool training);

// x and w_ih as the backward takes them: grad_h's dtype and device, w_ih
// (w_hh.size(0), x.size(1)).
void check_cell_bwd_inputs(const at::Tensor& grad_h, const at::Tensor& x, const at::Tensor& w_ih,
                           const at::Tensor& w_hh);

}  // namespace rnnfuse
