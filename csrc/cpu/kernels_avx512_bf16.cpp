// The bf16 CPU kernels for AVX-512 CPUs with AVX512-BF16 (e.g. Zen 4,
// Sapphire Rapids): the AVX-512 kernels, with the recurrent GEMMs multiplying
// bf16 pairs into fp32 accumulators (vdpbf16ps). setup.py compiles this file
// alone with the AVX-512 flags and -mavx512bf16 and links it after every file
// compiled without them; kernels_dispatch.cpp picks it for bf16 when the CPU
// has the instructions.
#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
      defined(__AVX512DQ__) && defined(__FMA__) && defined(__AVX512BF16__))
#error "kernels_avx512_bf16.cpp needs the AVX-512 flags and -mavx512bf16 (setup.py adds them)"
#endif
#define CPU_CAPABILITY AVX512_BF16
#define CPU_CAPABILITY_AVX512
#include "kernels_impl.h"

namespace rnnfuse {
namespace cpu {

Kernels<c10::BFloat16> kernels_avx512_bf16() {
  auto k = make_kernels<c10::BFloat16>("AVX512_BF16");
  k.pairs = true;
  k.pack_fwd_pairs = &pack_fwd_pairs;
  k.pack_bwd_pairs = &pack_bwd_pairs;
  return k;
}

}  // namespace cpu
}  // namespace rnnfuse
