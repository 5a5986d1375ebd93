// The grid tier's exchange with the flag in the data (ll_layout.h), alone:
// how far below the release/acquire exchange (exchange_bench.cu: a fence,
// a flag, an acquire and a gather, one after the other) an exchange can go
// before it is worth a kernel. Each step every CTA polls all of h_{t-1}
// (16-byte volatile loads, all of a thread's in flight), adds 1 to its own
// units' 16-bit words, and writes them tagged with the step (64-bit
// volatile stores) and to y, so a stale or torn read breaks the chain the
// host checks: y's last rows must be h0 + steps. bf16; no ATen here.
#include <cuda_bf16.h>

#include "../../persistent/ll_layout.h"
#include "kernel.cuh"
#include "ptx.cuh"

namespace rnnfuse {
namespace persist {
namespace {

constexpr int kBenchBatch = 16;  // 16-byte polls a thread keeps in flight

// Two words {data, tag} (ptx.cuh ll_load16) as {x, y} and {z, w}.
__device__ __forceinline__ uint4 ld_words(const uint4* p) {
  uint64_t lo, hi;
  ll_load16(reinterpret_cast<const uint64_t*>(p), lo, hi);
  return make_uint4(uint32_t(lo), uint32_t(lo >> 32), uint32_t(hi), uint32_t(hi >> 32));
}

// Each 16-bit half plus one, no carry between them.
__device__ __forceinline__ uint32_t add_one_each(uint32_t x) {
  return ((x + 1u) & 0xFFFFu) | (((x >> 16) + 1u) << 16);
}

}  // namespace

__global__ void __launch_bounds__(kThreads, 1) persist_ll_exchange_kernel(const LlBenchArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  uint32_t* hbuf = reinterpret_cast<uint32_t*>(smem);  // [batch][hidden / 2] words of 2 bf16
  const LlExchange& x = a.layout;
  const int c = blockIdx.x, W = x.words_per_row(), tid = threadIdx.x;
  const uint4* ll = reinterpret_cast<const uint4*>(a.ll);
  for (int64_t t = 0; t < a.steps; ++t) {
    if (t == 0) {
      for (int i = tid; i < x.batch * W; i += kThreads) hbuf[i] = a.h0[i];
    } else {
      const uint32_t want = LlExchange::tag(t - 1);
      const int s = int((t - 1) & 1);
      const uint4* base = ll + x.word(s, 0, 0) / 2;
      for (int i0 = tid; i0 < x.pairs(); i0 += kBenchBatch * kThreads) {
        uint4 v[kBenchBatch];
        uint32_t stale = 0;  // bit u: pair u still to be read with the awaited tag
#pragma unroll
        for (int u = 0; u < kBenchBatch; ++u) {
          const int i = i0 + u * kThreads;
          if (i < x.pairs()) {
            v[u] = ld_words(base + i);
            stale |= 1u << u;
          }
        }
        // The round's stale pairs polled again together (as the kernel's
        // gather_ll): one round trip after the words land, not one per pair.
        const uint64_t t0 = globaltimer_ns();
        for (uint32_t spin = 1;; ++spin) {
#pragma unroll
          for (int u = 0; u < kBenchBatch; ++u) {
            if ((stale >> u & 1u) != 0 && v[u].y == want && v[u].w == want) stale &= ~(1u << u);
          }
          if (stale == 0) break;
#pragma unroll
          for (int u = 0; u < kBenchBatch; ++u) {
            if ((stale >> u & 1u) != 0) v[u] = ld_words(base + i0 + u * kThreads);
          }
          if ((spin & 1023u) == 0 && a.watchdog_ns != 0 && globaltimer_ns() - t0 > a.watchdog_ns) {
            __trap();
          }
        }
#pragma unroll
        for (int u = 0; u < kBenchBatch; ++u) {
          const int i = i0 + u * kThreads;
          if (i >= x.pairs()) break;
          hbuf[2 * i] = v[u].x;
          hbuf[2 * i + 1] = v[u].z;
        }
      }
    }
    __syncthreads();
    const uint32_t tag = LlExchange::tag(t);
    // Words per row padded to a power of two: no division by the runtime
    // count in the floor this measures (as exchange_bench.cu).
    const int s = int(t & 1), cw = x.cta_words(), bits = ceil_log2(cw);
    for (int i = tid; i < x.batch << bits; i += kThreads) {
      const int b = i >> bits, jj = i & ((1 << bits) - 1), w = c * cw + jj;
      if (jj >= cw) continue;
      const uint32_t d = add_one_each(hbuf[b * W + w]);
      a.y[(t * x.batch + b) * W + w] = d;
      ll_store8(a.ll + x.word(s, b, w), (uint64_t(tag) << 32) | d);
    }
    __syncthreads();  // the next step's gather overwrites hbuf
  }
}

cudaError_t launch_persist_ll_exchange(const LlBenchArgs& a, int sms, cudaStream_t stream) {
  return launch_cooperative(persist_ll_exchange_kernel, a, a.layout.ctas,
                            static_cast<size_t>(a.layout.smem_bytes()), sms, stream);
}

}  // namespace persist
}  // namespace rnnfuse
