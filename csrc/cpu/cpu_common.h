// Helpers shared by the CPU time loops (lstm_cpu.cpp, gru_cpu.cpp).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <type_traits>
#include <utility>
#include <vector>

#include "buffer_cache.h"
#include "kernels.h"

namespace rnnfuse {

// The forward lays the weights out once per call for its GEMM (pack_fwd) when
// a call has at least this many rows in all and more than one per step: the
// layout costs about one pass over the weights and then lets every step run
// register-tiled. With one row per step (or very few rows) each step is a
// matrix-vector product that reads the weights once whichever the layout, so
// it reads them as stored.
constexpr int64_t kMinRowsToPack = 16;

inline bool pack_forward_weights(int64_t n_rows, int64_t batch) {
  return batch > 1 && n_rows >= kMinRowsToPack;
}

// Below this many multiply-adds a step runs on the calling thread: waking the
// other threads costs a few microseconds, more than such a step takes.
constexpr int64_t kMinParallelMacs = int64_t(1) << 17;

// The gate math per gate value (an exp or tanh and a few products) costs
// about as long as this many multiply-adds: added to a step's GEMM work when
// deciding whether it is worth more than one thread (a step whose GEMM is
// small or absent, as in a single-step cell, can still have much of it).
constexpr int64_t kGateMacs = 8;

// Whether any step carries rows into the next one processed: a backward
// without (one step, as in a cell) has no recurrent GEMM, so nothing to lay
// out or convert for it.
inline bool any_carry(const std::vector<Step>& steps) {
  for (const Step& st : steps) {
    if (st.carry_next > 0) return true;
  }
  return false;
}

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

// The backward's recurrent GEMM weights, laid out once per call from w_hh
// (k = gates * H rows, n columns): bf16 pairs where the kernels multiply
// pairs (second), else acc_t panels (first); the other is undefined.
template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> backward_weights(const cpu::Kernels<scalar_t>& kern,
                                                   const at::Tensor& w_hh, int64_t k, int64_t n,
                                                   const at::TensorOptions& acc_opts) {
  using acc_t = cpu::acc_type<scalar_t>;
  const scalar_t* src = w_hh.data_ptr<scalar_t>();
  if (kern.pairs) {
    const at::Tensor w_pairs = cached_empty_cpu({kern.bwd_pairs_size(k, n)}, w_hh.options());
    scalar_t* dst = w_pairs.data_ptr<scalar_t>();
    parallel_blocks(kern.panels(n), k * n, [&](int64_t p0, int64_t p1) {
      kern.pack_bwd_pairs(src, k, n, dst, p0, p1);
    });
    return {at::Tensor(), w_pairs};
  }
  const at::Tensor w_panels = cached_empty_cpu({kern.bwd_packed_size(k, n)}, acc_opts);
  acc_t* dst = w_panels.data_ptr<acc_t>();
  parallel_blocks(kern.panels(n), k * n, [&](int64_t p0, int64_t p1) {
    kern.pack_bwd(src, k, n, dst, p0, p1);
  });
  return {w_panels, at::Tensor()};
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
