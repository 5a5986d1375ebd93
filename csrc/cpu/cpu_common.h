// Helpers shared by the CPU time loops (lstm_cpu.cpp, gru_cpu.cpp).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <type_traits>

#include "kernels.h"

namespace rnnfuse {

// A call with at least this many steps lays the weights out once for the
// kernels' own GEMM (pack_fwd / pack_bwd), which then reads them contiguously
// every step. Laying out reads and writes the weights once, about twice what
// one step's GEMM reads, so shorter calls (a cell is one step) hand each
// step's GEMM to ATen (at::mm, which reads the weights as stored) instead.
constexpr int64_t kMinStepsToPack = 3;

// Below this many multiply-adds a step runs on the calling thread: waking the
// other threads costs a few microseconds, more than such a step takes.
constexpr int64_t kMinParallelMacs = int64_t(1) << 17;

// fn(begin, end) over [0, n) (blocks or panels), split across ATen's threads
// when the step has the work to pay for it.
template <typename Fn>
inline void parallel_blocks(int64_t n, int64_t macs, const Fn& fn) {
  if (n <= 1 || macs < kMinParallelMacs || at::get_num_threads() == 1) {
    fn(int64_t(0), n);
    return;
  }
  at::parallel_for(0, n, 1, fn);
}

// at::mm_out into a view (mm_out wants an lvalue; views are temporaries).
inline void mm_into(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  at::mm_out(out, a, b);
}

// p as acc_t* when scalar_t is the accumulation type (fp32, fp64): those read
// their stored rows in place. Never called for fp16/bf16.
template <typename acc_t, typename scalar_t>
inline const acc_t* as_acc(const scalar_t* p) {
  if constexpr (std::is_same<acc_t, scalar_t>::value) {
    return p;
  } else {
    TORCH_INTERNAL_ASSERT(false, "rnnfuse: reduced-precision rows must be read through a buffer");
    return nullptr;
  }
}

}  // namespace rnnfuse
