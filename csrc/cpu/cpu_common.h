// Helpers shared by the CPU time loops.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "../schedule.h"

namespace rnnfuse {

// at::mm_out into a view (mm_out wants an lvalue; views are temporaries).
inline void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  at::mm_out(out, a, b);
}

// rec[0:bs] = h_prev @ w_t, where rows [0, carry) of h_prev are the previous
// step's outputs and rows [carry, bs) start from h0. rec is in the
// accumulation dtype; the operands are converted to it (a no-op for fp32/fp64).
inline void recurrent_matmul(at::Tensor& rec, const at::Tensor& y, const at::Tensor& h0,
                             const Step& st, const at::Tensor& w_t) {
  const auto acc = rec.scalar_type();
  if (st.carry > 0) {
    mm_into(rec.narrow(0, 0, st.carry), y.narrow(0, st.prev_row0, st.carry).to(acc), w_t);
  }
  if (st.carry < st.bs) {
    const int64_t n = st.bs - st.carry;
    mm_into(rec.narrow(0, st.carry, n), h0.narrow(0, st.carry, n).to(acc), w_t);
  }
}

// Runs fn(b, j) for every active row b < rows and unit j < hidden, in
// parallel; each (b, j) touches only its own state, so no ordering is needed.
template <typename Fn>
inline void for_each_unit(int64_t rows, int64_t hidden, const Fn& fn) {
  constexpr int64_t kGrain = 4096;
  at::parallel_for(0, rows * hidden, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) fn(k / hidden, k % hidden);
  });
}

}  // namespace rnnfuse
