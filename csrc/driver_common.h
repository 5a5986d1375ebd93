// Pieces shared by the LSTM and GRU drivers: argument checks, the gathers
// that give every row its h_{t-1}, and the per-sequence final states.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "schedule.h"

namespace rnnfuse {

inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// Checks that `t` has the given rank and the dtype and device of `like`
// (called `like_name` in the message).
void check_operand(const at::Tensor& t, const char* name, int64_t dim, const at::Tensor& like,
                   const char* like_name = "x_proj");
void check_shape(const at::Tensor& t, const char* name, at::IntArrayRef expected);

// The saved workspace: the accumulation dtype of grad_y, (rows, width), on
// grad_y's device.
void check_workspace(const at::Tensor& workspace, const at::Tensor& grad_y, int64_t rows,
                     int64_t width, const char* cell);

// (N, P): row r of step s holds the h_{t-1} that step's update consumed.
at::Tensor gather_h_prev(const at::Tensor& y, const at::Tensor& h0, const std::vector<Step>& steps,
                         bool packed, bool reverse);

// Copies each sequence's last output row (at its own length) into h_n.
void collect_final_rows(const at::Tensor& y, const std::vector<Step>& steps, at::Tensor& h_n);

// grad_h0[b] = dh_state[b] + grad_rec[first row of b] @ w_hh, for every
// sequence at the step where it started.
at::Tensor finish_grad_h0(const at::Tensor& dh_state, const at::Tensor& grad_rec,
                          const at::Tensor& w_hh, const std::vector<Step>& steps,
                          at::ScalarType out_dtype);

}  // namespace rnnfuse
