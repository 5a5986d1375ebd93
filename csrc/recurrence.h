// The split between the device-independent driver (argument checks,
// allocation, the schedule, and the large GEMMs/reductions over all
// timesteps) and each backend's time loop (the fused per-step work).
//
// A backend receives contiguous tensors and the schedule and must, for every
// step s in order, do exactly what the comments below say. "acc" tensors are in
// the accumulation dtype (float for fp16/bf16/fp32, double for fp64).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/FunctionRef.h>

#include <tuple>
#include <vector>

#include "schedule.h"

namespace rnnfuse {

// LSTM forward. For each active row b of step s, with
//   h_prev = b < carry ? y[prev_row0 + b] : h0[b],
//   pre = x_proj[row0 + b] + h_prev @ w_hh^T          (gates i, f, g, o)
//   acts = lstm_cell_forward(pre, c_state[b]);  c_state[b] = acts.c
//   h = o * tanh(c); y[row0 + b] = w_hr ? h @ w_hr^T : h
//   ws[row0 + b] = (i, f, g, o, c) when ws is defined.
struct LstmForward {
  at::Tensor x_proj;  // (N, 4H)
  at::Tensor w_hh;    // (4H, P)
  at::Tensor w_hr;    // (P, H) or undefined
  at::Tensor h0;      // (B, P)
  at::Tensor c_state; // (B, H) acc, holds c0 on entry
  at::Tensor y;       // (N, P)
  at::Tensor ws;      // (N, 5H) in x_proj's dtype, or undefined
};

// LSTM backward, steps visited in reverse processing order. For row b of step s:
//   dh = grad_y[row0 + b] + dh_state[b]
//        + (b < carry_next ? dgates[next_row0 + b] @ w_hh : 0)
//   dh_all[row0 + b] = dh (only with w_hr); dh_unit = w_hr ? dh @ w_hr : dh
//   c_prev = b < carry ? ws.c[prev_row0 + b] : c0[b]
//   g = lstm_cell_backward(ws[row0 + b], c_prev, dh_unit, dc_state[b])
//   dgates[row0 + b] = (di, df, dg, do); dc_state[b] = g.dc_prev; dh_state[b] = 0
struct LstmBackward {
  at::Tensor grad_y;    // (N, P)
  at::Tensor w_hh;      // (4H, P)
  at::Tensor w_hr;      // (P, H) or undefined
  at::Tensor c0;        // (B, H)
  at::Tensor ws;        // (N, 5H) in grad_y's dtype
  at::Tensor dh_state;  // (B, P) acc, holds grad_h_n on entry
  at::Tensor dc_state;  // (B, H) acc, holds grad_c_n on entry
  at::Tensor dgates;    // (N, 4H): the gradient of x_proj
  at::Tensor dh_all;    // (N, P) acc, only with w_hr
};

// GRU forward. For row b of step s, with h_prev as for the LSTM:
//   hh = h_prev @ w_hh^T + b_hh                          (gates r, z, n)
//   acts = gru_cell_forward(x_proj[row0 + b], hh)
//   y[row0 + b] = gru_hidden(acts, h_prev); ws[row0 + b] = (r, z, n, hn)
struct GruForward {
  at::Tensor x_proj;  // (N, 3H)
  at::Tensor w_hh;    // (3H, H)
  at::Tensor b_hh;    // (3H) or undefined
  at::Tensor h0;      // (B, H)
  at::Tensor y;       // (N, H)
  at::Tensor ws;      // (N, 4H) in x_proj's dtype, or undefined
};

// GRU backward, reverse processing order. For row b of step s:
//   dh = grad_y[row0 + b] + dh_state[b]
//        + (b < carry_next ? dhh[next_row0 + b] @ w_hh : 0)
//   g = gru_cell_backward(ws[row0 + b], h_prev, dh)
//   dx[row0 + b] = (dr, dz, dn); dhh[row0 + b] = (dr, dz, dhn); dh_state[b] = g.dh_prev
struct GruBackward {
  at::Tensor grad_y;    // (N, H)
  at::Tensor w_hh;      // (3H, H)
  at::Tensor h0;        // (B, H)
  at::Tensor y;         // (N, H)
  at::Tensor ws;        // (N, 4H) in grad_y's dtype
  at::Tensor dh_state;  // (B, H) acc, holds grad_h_n on entry
  at::Tensor dx;        // (N, 3H): the gradient of x_proj
  at::Tensor dhh;       // (N, 3H): the gradient of h_prev @ w_hh^T + b_hh
};

// A backend's time loop: a function, or a callable carrying its own
// settings (the persistent emulators' configurations), called during the op.
using LstmForwardLoop = c10::function_ref<void(const LstmForward&, const std::vector<Step>&)>;
using LstmBackwardLoop = c10::function_ref<void(const LstmBackward&, const std::vector<Step>&)>;
using GruForwardLoop = c10::function_ref<void(const GruForward&, const std::vector<Step>&)>;
using GruBackwardLoop = c10::function_ref<void(const GruBackward&, const std::vector<Step>&)>;

// A backend's time loops for both directions of a layer ([0] forward, [1]
// reverse; each touches only its own direction's buffers, so they may run
// one after the other, side by side, or step i of both at once). Called
// only with non-empty schedules, which then have one length.
using LstmBidirForwardLoop = c10::function_ref<void(const LstmForward (&)[2],
                                                    const std::vector<Step> (&)[2])>;
using LstmBidirBackwardLoop = c10::function_ref<void(const LstmBackward (&)[2],
                                                     const std::vector<Step> (&)[2])>;
using GruBidirForwardLoop = c10::function_ref<void(const GruForward (&)[2],
                                                   const std::vector<Step> (&)[2])>;
using GruBidirBackwardLoop = c10::function_ref<void(const GruBackward (&)[2],
                                                    const std::vector<Step> (&)[2])>;

// The drivers: each op's full implementation, given a backend's time loop.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool reverse, bool training, LstmForwardLoop loop);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, LstmBackwardLoop loop);

// The backward's checks, buffers and time loop without the GEMMs that
// follow it: dgates, dh_state and dc_state as the loop leaves them, and the
// schedule it ran (steps). A single-step cell (cpu/cell_bwd_cpu.cpp) runs its
// own GEMMs after it.
LstmBackward lstm_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                                 const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                                 const c10::optional<at::Tensor>& w_hr, const at::Tensor& h0,
                                 const at::Tensor& c0, const at::Tensor& y,
                                 const at::Tensor& workspace,
                                 const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                                 LstmBackwardLoop loop, std::vector<Step>& steps);

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, GruForwardLoop loop);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> gru_backward(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    GruBackwardLoop loop);

// As lstm_backward_gates: dx, dhh and dh_state as the loop leaves them.
GruBackward gru_backward_gates(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                               const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
                               const at::Tensor& h0, const at::Tensor& y,
                               const at::Tensor& workspace,
                               const c10::optional<at::Tensor>& batch_sizes, bool reverse,
                               GruBackwardLoop loop, std::vector<Step>& steps);

// Both directions of one layer (lstm_bidir_fwd / _bwd, gru_bidir_fwd / _bwd
// in ops.cpp): direction d's x_proj is columns [G*H*d, G*H*(d+1)) of one
// (N, 2*G*H) projection, its output columns [P*d, P*(d+1)) of y (N, 2P); the
// states have a leading dimension of 2 (forward, reverse).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> lstm_bidir_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& w_hr, const c10::optional<at::Tensor>& w_hr_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, LstmBidirForwardLoop loop);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
lstm_bidir_backward(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& w_hh,
                    const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& w_hr,
                    const c10::optional<at::Tensor>& w_hr_rev, const at::Tensor& h0,
                    const at::Tensor& c0, const at::Tensor& y, const at::Tensor& workspace,
                    const c10::optional<at::Tensor>& batch_sizes, LstmBidirBackwardLoop loop);

std::tuple<at::Tensor, at::Tensor, at::Tensor> gru_bidir_forward(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    GruBidirForwardLoop loop);

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
gru_bidir_backward(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                   const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                   const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                   const at::Tensor& y, const at::Tensor& workspace,
                   const c10::optional<at::Tensor>& batch_sizes, GruBidirBackwardLoop loop);

}  // namespace rnnfuse
