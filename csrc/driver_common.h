// Pieces shared by the LSTM and GRU drivers: argument checks, the gathers
// that give every row its h_{t-1}, and the per-sequence final states.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include <vector>

#include "schedule.h"

namespace rnnfuse {

// Every op computes in its arguments' dtype (the caller applies autocast's
// policy, rnnfuse/_autocast.py), so the ATen ops inside an op body run under
// NoAutocast(c10::autocast_dispatch_keyset): an enclosing torch.autocast,
// which the dispatcher otherwise applies to each of them, must not recast
// them (it raised dtype mismatches, e.g. in a projected LSTM's backward run
// inside an autocast region).
using NoAutocast = c10::impl::ExcludeDispatchKeyGuard;

inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// a @ b for the GEMMs over all rows (weight gradients): at::mm, or on the CPU
// the CPU kernels' blocked GEMM where it takes the shapes (cpu/gemm_cpu.h).
at::Tensor rows_mm(const at::Tensor& a, const at::Tensor& b);

// at::empty for the large per-row buffers an op writes once (y, the
// workspace, the gradients of x_proj): on the CPU from the cache of large
// blocks (cpu/buffer_cache.h), which spares each call the page faults of
// fresh mappings of that size.
at::Tensor empty_rows(at::IntArrayRef sizes, const at::TensorOptions& options);

// Checks that `t` has the given rank and the dtype and device of `like`
// (called `like_name` in the message).
void check_operand(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& like,
                   const char* like_name = "x_proj");
void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected);

// The saved workspace: grad_y's dtype, (rows, width), on grad_y's device.
void check_workspace(const at::Tensor& workspace, const at::Tensor& grad_y, int64_t rows,
                     int64_t width, const char* cell);

// dW_hh = grad_rows^T @ h_prev (grad_rows: the (N, G*H) gradients of the
// recurrent pre-activations). Padded input: h_prev's rows are y's rows one
// step back and h0's for the first step processed, so two GEMMs read them in
// place (h0's first, added into y's in one call); packed input gathers h_prev.
at::Tensor weight_grad_rows(const at::Tensor& grad_rows, const at::Tensor& y, const at::Tensor& h0,
                            const std::vector<Step>& steps, bool packed, bool reverse);

// h_n: each sequence's last output row (at its own length), or its h0 row
// when the schedule is empty.
at::Tensor final_rows(const at::Tensor& y, const at::Tensor& h0, const std::vector<Step>& steps);

// t itself when its rows are contiguous (unit column stride), else a
// contiguous copy. A bidirectional layer's two directions are column blocks of
// one buffer (x_proj, y and their gradients), whose rows are strided; the CPU
// time loops and the CUDA step kernels take a row stride (the persistent
// tier runs single-direction calls, on contiguous tensors).
inline at::Tensor rows_of(const at::Tensor& t) {
  return t.stride(-1) == 1 || t.size(-1) <= 1 ? t : t.contiguous();
}

// t in dtype, without a dispatcher call when it already is (per-call cost
// matters for cells: a call is one step).
inline at::Tensor as_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

// grad_h0[b] = dh_state[b] + grad_rec[first row of b] @ w_hh, for every
// sequence at the step where it started.
at::Tensor finish_grad_h0(const at::Tensor& dh_state, const at::Tensor& grad_rec,
                          const at::Tensor& w_hh, const std::vector<Step>& steps,
                          at::ScalarType out_dtype);

}  // namespace rnnfuse
