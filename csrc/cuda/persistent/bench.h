// What the exchange benches share: their rows' checks, and their timing (one
// launch between two CUDA events on the caller's stream; the host waits for
// the second: a bench returns a time).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <utility>

namespace rnnfuse {
namespace persist {

// y (T*B, H) and h0 (B, H), contiguous bf16 on CUDA: {batch, hidden}. `op`
// names the bench in the errors.
inline std::pair<int64_t, int64_t> bench_rows(const at::Tensor& y, const at::Tensor& h0,
                                              const char* op) {
  TORCH_CHECK(y.is_cuda() && h0.is_cuda() && y.scalar_type() == at::kBFloat16 &&
                  h0.scalar_type() == at::kBFloat16 && y.dim() == 2 && h0.dim() == 2 &&
                  y.is_contiguous() && h0.is_contiguous(),
              op, ": y (T*B, H) and h0 (B, H), contiguous bf16 on CUDA");
  const int64_t batch = h0.size(0), hidden = h0.size(1);
  TORCH_CHECK(y.size(1) == hidden && batch > 0 && y.size(0) % batch == 0 && y.size(0) > 0, op,
              ": y must have T*B rows of H");
  return {batch, hidden};
}

// Milliseconds from before `launch()` to after it on `stream`. `launch`
// enqueues the kernel and checks it; it may throw (the events are freed).
template <typename Launch>
double launch_ms(cudaStream_t stream, Launch&& launch) {
  struct Events {
    cudaEvent_t start = nullptr, stop = nullptr;
    ~Events() {
      if (start != nullptr) (void)cudaEventDestroy(start);
      if (stop != nullptr) (void)cudaEventDestroy(stop);
    }
  } e;
  C10_CUDA_CHECK(cudaEventCreate(&e.start));
  C10_CUDA_CHECK(cudaEventCreate(&e.stop));
  C10_CUDA_CHECK(cudaEventRecord(e.start, stream));
  launch();
  C10_CUDA_CHECK(cudaEventRecord(e.stop, stream));
  C10_CUDA_CHECK(cudaEventSynchronize(e.stop));
  float ms = 0;
  C10_CUDA_CHECK(cudaEventElapsedTime(&ms, e.start, e.stop));
  return double(ms);
}

}  // namespace persist
}  // namespace rnnfuse
