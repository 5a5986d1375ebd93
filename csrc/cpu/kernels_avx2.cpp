// The CPU kernels for AVX2 + FMA (ATen's AVX2 capability). setup.py compiles
// this file alone with -mavx2 -mfma -mf16c and links it after every file
// compiled without them (see setup.py for why the order matters).
#if !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "kernels_avx2.cpp needs -mavx2 -mfma -mf16c (setup.py adds them)"
#endif
#define CPU_CAPABILITY AVX2
#define CPU_CAPABILITY_AVX2
#include "kernels_impl.h"

RNNFUSE_DEFINE_CPU_KERNELS(kernels_avx2, "AVX2")
