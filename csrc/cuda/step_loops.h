// The host side of the per-step CUDA loops: each step's kernel arguments,
// built from the driver's operands and the schedule, and the loop over the
// steps of one or two directions. `launch(group)` runs one step: the CUDA
// launch (loops_cuda.cpp) or its CPU emulation (step_emulate.cu), which so
// checks these very arguments on the CPU.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "../recurrence.h"
#include "step_args.h"

namespace rnnfuse {
namespace step_loops {

using cuda::RowSource;

// Address of row `row` of a 2-D tensor (64-bit offset).
inline char* row_ptr(const at::Tensor& t, int64_t row) {
  return static_cast<char*>(t.data_ptr()) + row * t.stride(0) * t.element_size();
}

// Each loop runs one or two directions of a layer (count): launch i carries
// every direction's step i (the reverse direction's schedule runs its time
// steps backwards), so a bidirectional layer takes one launch per time step.

// Both directions' schedules have one length (one per time step).
inline size_t schedule_length(const std::vector<Step>* steps, int count) {
  TORCH_INTERNAL_ASSERT(count == 1 || steps[0].size() == steps[1].size());
  return steps[0].size();
}

// ---------------------------------------------------------------- LSTM
// One direction's forward: its step arguments, and with a projection the
// scratch the kernel writes h into and the GEMM per step that maps it to y.
struct LstmFwdDirection {
  explicit LstmFwdDirection(const LstmForward& fwd)
      : f(fwd),
        hidden(fwd.c_state.size(1)),
        project(fwd.w_hr.defined()),
        h_raw(project ? at::empty({fwd.h0.size(0), hidden}, fwd.y.options()) : at::Tensor()),
        w_hr_t(project ? fwd.w_hr.t() : at::Tensor()) {}

  cuda::LstmFwdStepArgs args(const Step& st) const {
    cuda::LstmFwdStepArgs a;
    a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), f.y.stride(0),
                         f.h0.stride(0), static_cast<int>(st.carry), static_cast<int>(st.bs)};
    a.w_hh = f.w_hh.data_ptr();
    a.x = row_ptr(f.x_proj, st.row0);
    a.ld_x = f.x_proj.stride(0);
    a.c_state = f.c_state.data_ptr();
    a.h_out = project ? h_raw.data_ptr() : row_ptr(f.y, st.row0);
    a.ld_out = project ? hidden : f.y.stride(0);
    a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
    a.hidden = static_cast<int>(hidden);
    a.k = static_cast<int>(f.y.size(1));
    return a;
  }

  void after_launch(const Step& st) const {
    if (!project) return;
    auto y_rows = f.y.narrow(0, st.row0, st.bs);
    at::mm_out(y_rows, h_raw.narrow(0, 0, st.bs), w_hr_t);
  }

  const LstmForward& f;
  int64_t hidden;
  bool project;
  at::Tensor h_raw, w_hr_t;
};

template <typename Launch>
void lstm_forward_steps(const LstmForward* f, const std::vector<Step>* steps, int count,
                        Launch launch) {
  std::vector<LstmFwdDirection> dirs(f, f + count);
  for (size_t i = 0, n = schedule_length(steps, count); i < n; ++i) {
    cuda::StepGroup<cuda::LstmFwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = dirs[d].args(steps[d][i]);
    launch(group);
    for (int d = 0; d < count; ++d) dirs[d].after_launch(steps[d][i]);
  }
}

// One direction's backward. With a projection dh lives in the projected
// space: the host assembles it, keeps it for dW_hr and maps it back to the
// cell's units before the launch, which then runs without its GEMM.
struct LstmBwdDirection {
  explicit LstmBwdDirection(const LstmBackward& bwd)
      : g(bwd),
        hidden(bwd.dc_state.size(1)),
        project(bwd.w_hr.defined()),
        // Each unit's weights as one row, so the backward GEMM tiles like the forward.
        w_hh_t(bwd.w_hh.t().contiguous()),
        w_hr_acc(project ? bwd.w_hr.to(bwd.dc_state.scalar_type()) : at::Tensor()) {}

  // dh_unit receives the host-made dh (projection only); it must outlive the launch.
  cuda::LstmBwdStepArgs args(const Step& st, at::Tensor& dh_unit) const {
    cuda::LstmBwdStepArgs a;
    const int64_t ld_dgates = g.dgates.stride(0);
    if (project) {
      auto dh = g.grad_y.narrow(0, st.row0, st.bs).to(g.dh_state.scalar_type()) +
                g.dh_state.narrow(0, 0, st.bs);
      if (st.carry_next > 0) {
        dh.narrow(0, 0, st.carry_next)
            .add_(at::mm(g.dgates.narrow(0, st.next_row0, st.carry_next), g.w_hh));
      }
      g.dh_all.narrow(0, st.row0, st.bs).copy_(dh);
      g.dh_state.narrow(0, 0, st.bs).zero_();
      dh_unit = at::mm(dh, w_hr_acc);
      a.dgates_next = RowSource{nullptr, nullptr, ld_dgates, 0, 0, static_cast<int>(st.bs)};
      a.k = 0;
    } else {
      a.dgates_next = RowSource{row_ptr(g.dgates, st.next_row0), nullptr, ld_dgates, 0,
                                static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
      a.k = static_cast<int>(4 * hidden);
    }
    a.w_hh_t = w_hh_t.data_ptr();
    a.grad_y = row_ptr(g.grad_y, st.row0);
    a.ld_grad_y = g.grad_y.stride(0);
    a.dh_direct = project ? dh_unit.data_ptr() : nullptr;
    a.dh_state = g.dh_state.data_ptr();
    a.dc_state = g.dc_state.data_ptr();
    a.ws = row_ptr(g.ws, st.row0);
    a.ws_prev = row_ptr(g.ws, st.prev_row0);
    a.c0 = g.c0.data_ptr();
    a.carry = static_cast<int>(st.carry);
    a.dgates = row_ptr(g.dgates, st.row0);
    a.ld_dgates = ld_dgates;
    a.hidden = static_cast<int>(hidden);
    return a;
  }

  const LstmBackward& g;
  int64_t hidden;
  bool project;
  at::Tensor w_hh_t, w_hr_acc;
};

template <typename Launch>
void lstm_backward_steps(const LstmBackward* g, const std::vector<Step>* steps, int count,
                         Launch launch) {
  std::vector<LstmBwdDirection> dirs(g, g + count);
  for (size_t i = schedule_length(steps, count); i-- > 0;) {  // reverse processing order
    cuda::StepGroup<cuda::LstmBwdStepArgs> group{};
    group.count = count;
    at::Tensor dh_unit[2];
    for (int d = 0; d < count; ++d) group.dir[d] = dirs[d].args(steps[d][i], dh_unit[d]);
    launch(group);
  }
}

// ---------------------------------------------------------------- GRU
inline cuda::GruFwdStepArgs gru_fwd_args(const GruForward& f, const Step& st) {
  cuda::GruFwdStepArgs a;
  a.h_prev = RowSource{row_ptr(f.y, st.prev_row0), f.h0.data_ptr(), f.y.stride(0),
                       f.h0.stride(0), static_cast<int>(st.carry), static_cast<int>(st.bs)};
  a.w_hh = f.w_hh.data_ptr();
  a.b_hh = f.b_hh.defined() ? f.b_hh.data_ptr() : nullptr;
  a.x = row_ptr(f.x_proj, st.row0);
  a.y = row_ptr(f.y, st.row0);
  a.ld_x = f.x_proj.stride(0);
  a.ld_y = f.y.stride(0);
  a.ws = f.ws.defined() ? row_ptr(f.ws, st.row0) : nullptr;
  a.hidden = static_cast<int>(f.h0.size(1));
  return a;
}

template <typename Launch>
void gru_forward_steps(const GruForward* f, const std::vector<Step>* steps, int count,
                       Launch launch) {
  for (size_t i = 0, n = schedule_length(steps, count); i < n; ++i) {
    cuda::StepGroup<cuda::GruFwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = gru_fwd_args(f[d], steps[d][i]);
    launch(group);
  }
}

// w_hh_t: g.w_hh transposed, contiguous (each unit's weights as one row).
inline cuda::GruBwdStepArgs gru_bwd_args(const GruBackward& g, const at::Tensor& w_hh_t,
                                          const Step& st) {
  const int64_t hidden = g.h0.size(1);
  cuda::GruBwdStepArgs a;
  a.dhh_next = RowSource{row_ptr(g.dhh, st.next_row0), nullptr, g.dhh.stride(0), 0,
                         static_cast<int>(st.carry_next), static_cast<int>(st.bs)};
  a.w_hh_t = w_hh_t.data_ptr();
  a.grad_y = row_ptr(g.grad_y, st.row0);
  a.ld_grad_y = g.grad_y.stride(0);
  a.dh_state = g.dh_state.data_ptr();
  a.ws = row_ptr(g.ws, st.row0);
  a.h_prev_rows = row_ptr(g.y, st.prev_row0);
  a.ld_h_prev = g.y.stride(0);
  a.h0 = g.h0.data_ptr();
  a.carry = static_cast<int>(st.carry);
  a.dx = row_ptr(g.dx, st.row0);
  a.ld_dx = g.dx.stride(0);
  a.dhh = row_ptr(g.dhh, st.row0);
  a.hidden = static_cast<int>(hidden);
  return a;
}

template <typename Launch>
void gru_backward_steps(const GruBackward* g, const std::vector<Step>* steps, int count,
                        Launch launch) {
  at::Tensor w_hh_t[2];
  for (int d = 0; d < count; ++d) w_hh_t[d] = g[d].w_hh.t().contiguous();
  for (size_t i = schedule_length(steps, count); i-- > 0;) {  // reverse processing order
    cuda::StepGroup<cuda::GruBwdStepArgs> group{};
    group.count = count;
    for (int d = 0; d < count; ++d) group.dir[d] = gru_bwd_args(g[d], w_hh_t[d], steps[d][i]);
    launch(group);
  }
}

}  // namespace step_loops
}  // namespace rnnfuse
