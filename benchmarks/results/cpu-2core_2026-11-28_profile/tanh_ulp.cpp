// Accuracy and cost of the CPU kernels' float tanh (csrc/cpu/kernels_impl.h,
// tanh_float) against the exact tanh (double) and against ATen's vectorised
// tanh (Sleef u10), which the kernels used before. Build and run from the
// repository root with the venv active:
//   T=$(python -c "import torch,os;print(os.path.dirname(torch.__file__))")
//   g++ -O3 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -I$T/include -Icsrc \
//       benchmarks/results/cpu-2core_2026-11-28_profile/tanh_ulp.cpp -o /tmp/tanh_ulp \
//       -L$T/lib -ltorch_cpu -lc10 -Wl,-rpath,$T/lib && /tmp/tanh_ulp
#define CPU_CAPABILITY AVX512
#define CPU_CAPABILITY_AVX512
#include "cpu/kernels_impl.h"

#include <cmath>
#include <cstdio>
#include <ctime>

using V = at::vec::Vectorized<float>;

static double now() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + 1e-9 * t.tv_nsec;
}

static double ulp_err(float got, double ref) {
  const float r = static_cast<float>(ref);
  double ulp = std::nextafter(std::fabs(r), INFINITY) - std::fabs(r);
  if (r == 0) ulp = 1.4e-45;
  return std::fabs(got - ref) / ulp;
}

int main() {
  double worst = 0, worst_sleef = 0;
  float at = 0;
  long samples = 0;
  // Every 97th float in [0, 12] and its negative; beyond 12 tanh rounds to +-1.
  for (uint32_t bits = 0; bits < 0x41400000u; bits += 97) {
    for (uint32_t sign : {0u, 0x80000000u}) {
      float x;
      const uint32_t b = bits | sign;
      std::memcpy(&x, &b, 4);
      float out[V::size()], sleef[V::size()];
      rnnfuse::cpu::tanh_float(V(x)).store(out);
      V(x).tanh().store(sleef);
      const double ref = std::tanh(static_cast<double>(x));
      const double e = ulp_err(out[0], ref);
      if (e > worst) worst = e, at = x;
      worst_sleef = std::max(worst_sleef, ulp_err(sleef[0], ref));
      ++samples;
    }
  }
  std::printf("tanh_float: max %.2f ulp (at %g); Sleef u10: max %.2f ulp; %ld samples\n", worst, at,
              worst_sleef, samples);
  for (float s : {0.f, -0.f, INFINITY, -INFINITY, NAN, 0.625f, 100.f, -100.f}) {
    float o[V::size()];
    rnnfuse::cpu::tanh_float(V(s)).store(o);
    std::printf("  tanh_float(%g) = %g (libm %g)\n", s, o[0], std::tanh(s));
  }
  alignas(64) static float buf[4096];
  for (int i = 0; i < 4096; ++i) buf[i] = (i % 200 - 100) * 0.05f;
  const int reps = 20000;
  auto run = [&](const char* name, auto f) {
    const double t0 = now();
    for (int r = 0; r < reps; ++r)
      for (int i = 0; i < 4096; i += V::size()) f(V::loadu(buf + i)).store(buf + i);
    const double ns = (now() - t0) / (reps * 4096.0 / V::size()) * 1e9;
    std::printf("  %-10s %.1f ns per 16 lanes\n", name, ns);
  };
  run("tanh_float", [](V x) { return rnnfuse::cpu::tanh_float(x); });
  run("Sleef tanh", [](V x) { return x.tanh(); });
  return worst <= 2.0 ? 0 : 1;
}
