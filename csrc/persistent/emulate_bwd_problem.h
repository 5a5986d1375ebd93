// The backward emulators' view of a layer-direction's backward
// (emulate_bwd.cpp grid tier, emulate_cluster_bwd.cpp cluster tier): raw
// pointers and row strides into the driver's LstmBackward / GruBackward.
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include "../gate_math.h"
#include "../recurrence.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

template <typename scalar_t>
struct BwdProblem {
  using acc_t = at::opmath_type<scalar_t>;
  Cell cell;
  int H, B;
  const scalar_t* w;       // (G*H, H)
  const scalar_t* grad_y;  // (N, H)
  acc_t* dh_state;         // (B, H)
  acc_t* dc_state;         // (B, H) LSTM
  const scalar_t* ws;      // (N, 5H) LSTM / (N, 4H) GRU
  const scalar_t* c0;      // (B, H) LSTM
  const scalar_t* h0;      // (B, H) GRU
  const scalar_t* y;       // (N, H) GRU: h_{t-1}
  scalar_t* xch;           // exchanged gate gradients: LSTM dgates (N, 4H), GRU dhh (N, 3H)
  scalar_t* dx;            // (N, 3H) GRU
  // Row strides of grad_y, y, xch and dx (a bidirectional layer's column blocks).
  int64_t ld_grad_y, ld_y, ld_xch, ld_dx;
};

// The cell's derivatives at unit j of batch row b of backward step st (row
// st.row0 + b), dh including the recurrent sum (gate_math.h): updates the
// carried dh (and dc; GRU: writes dx) and returns the gradients the next
// step's recurrent product takes in out[0..G) (LSTM dgates, GRU dhh),
// rounded to the operand type.
template <typename scalar_t>
void bwd_item(const BwdProblem<scalar_t>& pr, const StepInfo& st, int64_t b, int j,
              at::opmath_type<scalar_t> dh, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const int H = pr.H;
  const int64_t row = st.row0 + b;
  if (pr.cell == Cell::LSTM) {
    pr.dh_state[b * H + j] = acc_t(0);
    const scalar_t* a = pr.ws + row * 5 * H + j;
    const LstmActs<acc_t> act{acc_t(a[0]), acc_t(a[H]), acc_t(a[2 * H]), acc_t(a[3 * H]),
                              acc_t(a[4 * H])};
    const acc_t c_prev = acc_t(b < st.carry_next ? pr.ws[(st.next_row0 + b) * 5 * H + 4 * H + j]
                                                 : pr.c0[b * H + j]);
    const auto d = lstm_cell_backward(act, c_prev, dh, pr.dc_state[b * H + j]);
    pr.dc_state[b * H + j] = d.dc_prev;
    out[0] = scalar_t(d.di);
    out[1] = scalar_t(d.df);
    out[2] = scalar_t(d.dg);
    out[3] = scalar_t(d.d_o);
  } else {
    const scalar_t* a = pr.ws + row * 4 * H + j;
    const GruActs<acc_t> act{acc_t(a[0]), acc_t(a[H]), acc_t(a[2 * H]), acc_t(a[3 * H])};
    const acc_t h_prev = b < st.carry_next ? acc_t(pr.y[(st.next_row0 + b) * pr.ld_y + j])
                                           : acc_t(pr.h0[b * H + j]);
    const auto d = gru_cell_backward(act, h_prev, dh);
    pr.dh_state[b * H + j] = d.dh_prev;
    scalar_t* dx = pr.dx + row * pr.ld_dx + j;
    dx[0] = scalar_t(d.dr);
    dx[H] = scalar_t(d.dz);
    dx[2 * H] = scalar_t(d.dn);
    out[0] = scalar_t(d.dr);
    out[1] = scalar_t(d.dz);
    out[2] = scalar_t(d.dhn);
  }
}

template <typename scalar_t>
BwdProblem<scalar_t> bwd_problem(const LstmBackward& g) {
  using acc_t = at::opmath_type<scalar_t>;
  return BwdProblem<scalar_t>{Cell::LSTM, int(g.dc_state.size(1)), int(g.dc_state.size(0)),
                              g.w_hh.data_ptr<scalar_t>(), g.grad_y.data_ptr<scalar_t>(),
                              g.dh_state.data_ptr<acc_t>(), g.dc_state.data_ptr<acc_t>(),
                              g.ws.data_ptr<scalar_t>(), g.c0.data_ptr<scalar_t>(), nullptr,
                              nullptr, g.dgates.data_ptr<scalar_t>(), nullptr, g.grad_y.stride(0),
                              0, g.dgates.stride(0), 0};
}

template <typename scalar_t>
BwdProblem<scalar_t> bwd_problem(const GruBackward& g) {
  using acc_t = at::opmath_type<scalar_t>;
  return BwdProblem<scalar_t>{Cell::GRU, int(g.h0.size(1)), int(g.h0.size(0)),
                              g.w_hh.data_ptr<scalar_t>(), g.grad_y.data_ptr<scalar_t>(),
                              g.dh_state.data_ptr<acc_t>(), nullptr, g.ws.data_ptr<scalar_t>(),
                              nullptr, g.h0.data_ptr<scalar_t>(), g.y.data_ptr<scalar_t>(),
                              g.dhh.data_ptr<scalar_t>(), g.dx.data_ptr<scalar_t>(),
                              g.grad_y.stride(0), g.y.stride(0), g.dhh.stride(0), g.dx.stride(0)};
}

}  // namespace persist
}  // namespace rnnfuse
