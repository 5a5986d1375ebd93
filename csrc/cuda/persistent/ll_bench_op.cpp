// rnnfuse::persistent_ll_exchange_bench: ns per step of the exchange with
// the flag in the data (ll_layout.h), for gpu_check's persist stage beside
// the release/acquire exchange's floor (persistent_exchange_bench).
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "args.h"
#include "bench.h"
#include "operands.h"
#include "persistent.h"

namespace rnnfuse {
namespace persist {
namespace {

// y (T*B, H) bf16 gets every step's rows (the last: h0 + T in each 16-bit
// word); h0 (B, H) bf16; `ctas` CTAs of H / ctas units.
double ll_exchange_bench_cuda(const at::Tensor& y, const at::Tensor& h0, int64_t ctas) {
  const auto [batch, hidden] = bench_rows(y, h0, "persistent_ll_exchange_bench");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(y.data_ptr()) % 4 == 0 &&
                  reinterpret_cast<uintptr_t>(h0.data_ptr()) % 4 == 0,
              "persistent_ll_exchange_bench: y and h0 must be 4-byte aligned");
  const LlExchange layout = make_ll_exchange(int(hidden), int(batch), int(ctas));
  const char* bad = ll_exchange_error(layout);
  TORCH_CHECK(bad == nullptr, "persistent_ll_exchange_bench: ", bad == nullptr ? "" : bad);
  const c10::cuda::OptionalCUDAGuard guard(y.device());
  // Zeroed each call: a tag left by an earlier launch would pass for this one's.
  const at::Tensor ll = at::zeros({layout.words()}, y.options().dtype(at::kLong));
  LlBenchArgs a{};
  a.layout = layout;
  a.h0 = static_cast<const uint32_t*>(h0.data_ptr());
  a.y = static_cast<uint32_t*>(y.data_ptr());
  a.ll = reinterpret_cast<uint64_t*>(ll.data_ptr<int64_t>());
  a.steps = y.size(0) / batch;
  a.watchdog_ns = watchdog_ns();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const double ms = launch_ms(stream, [&] {
    const cudaError_t err = launch_persist_ll_exchange(a, current_usable_sms(), stream);
    if (err == cudaErrorCooperativeLaunchTooLarge) (void)cudaGetLastError();
    TORCH_CHECK(err != cudaErrorCooperativeLaunchTooLarge, "persistent_ll_exchange_bench: ",
                ctas, " CTAs with ", layout.smem_bytes(),
                " bytes of shared memory cannot be co-resident");
    C10_CUDA_CHECK(err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return ms * 1e6 / double(a.steps);
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CUDA, m) {
  m.impl("persistent_ll_exchange_bench", &rnnfuse::persist::ll_exchange_bench_cuda);
}
