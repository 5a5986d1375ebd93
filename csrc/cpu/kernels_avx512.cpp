// The CPU kernels for AVX-512 (ATen's AVX512 capability: F, BW, VL, DQ, and
// FMA). setup.py compiles this file alone with those flags and links it after
// every file compiled without them (see setup.py for why the order matters).
#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
      defined(__AVX512DQ__) && defined(__FMA__))
#error "kernels_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma (setup.py adds them)"
#endif
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "kernels_impl.h"

RNNFUSE_DEFINE_CPU_KERNELS(kernels_avx512, "AVX512")
