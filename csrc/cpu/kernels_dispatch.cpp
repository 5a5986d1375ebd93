// Picks the CPU kernels' instruction set once, the way ATen picks its own:
// at::get_cpu_capability() (the CPU, or ATEN_CPU_CAPABILITY when set), limited
// to what this build compiled (setup.py defines RNNFUSE_CPU_AVX2 /
// RNNFUSE_CPU_AVX512 when it adds those files) and, as a guard, to what the
// CPU reports for exactly the flags those files were compiled with.
#include <ATen/Version.h>

#include <string>

#include "kernels.h"

namespace rnnfuse {
namespace cpu {
namespace {

enum class Isa { kDefault, kAvx2, kAvx512 };

bool cpu_has(Isa isa) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (isa == Isa::kAvx2) return avx2;
  if (isa == Isa::kAvx512) {
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  }
#endif
  return isa == Isa::kDefault;
}

Isa pick_isa() {
  const std::string aten = at::get_cpu_capability();
#if defined(RNNFUSE_CPU_AVX512)
  if (aten == "AVX512" && cpu_has(Isa::kAvx512)) return Isa::kAvx512;
#endif
#if defined(RNNFUSE_CPU_AVX2)
  if ((aten == "AVX512" || aten == "AVX2") && cpu_has(Isa::kAvx2)) return Isa::kAvx2;
#endif
  return Isa::kDefault;
}

bool cpu_has_avx512_bf16() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  return cpu_has(Isa::kAvx512) && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

template <typename scalar_t>
Kernels<scalar_t> pick_kernels() {
  switch (pick_isa()) {
#if defined(RNNFUSE_CPU_AVX512)
    case Isa::kAvx512:
      return kernels_avx512<scalar_t>();
#endif
#if defined(RNNFUSE_CPU_AVX2)
    case Isa::kAvx2:
      return kernels_avx2<scalar_t>();
#endif
    default:
      return kernels_default<scalar_t>();
  }
}

}  // namespace

template <typename scalar_t>
const Kernels<scalar_t>& cpu_kernels() {
  static const Kernels<scalar_t> table = pick_kernels<scalar_t>();
  return table;
}

// bf16: with AVX512-BF16 as well, the pair-product kernels.
template <>
const Kernels<c10::BFloat16>& cpu_kernels<c10::BFloat16>() {
  static const Kernels<c10::BFloat16> table = [] {
#if defined(RNNFUSE_CPU_AVX512_BF16)
    if (pick_isa() == Isa::kAvx512 && cpu_has_avx512_bf16()) return kernels_avx512_bf16();
#endif
    return pick_kernels<c10::BFloat16>();
  }();
  return table;
}

template const Kernels<float>& cpu_kernels<float>();
template const Kernels<double>& cpu_kernels<double>();
template const Kernels<c10::Half>& cpu_kernels<c10::Half>();

}  // namespace cpu

std::string cpu_kernels_isa() { return cpu::cpu_kernels<float>().isa; }

}  // namespace rnnfuse
