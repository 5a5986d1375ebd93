// The exchange benches' timing: one launch between two CUDA events on the
// caller's stream; the host waits for the second (a bench returns a time).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

namespace rnnfuse {
namespace persist {

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
