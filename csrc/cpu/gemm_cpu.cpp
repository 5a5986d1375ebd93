// rnnfuse::mm on the CPU (and cpu_mm for the drivers): the kernels' blocked
// GEMM (kernels_impl.h's gemm_blocked) where it takes the shapes, else at::mm.
// At the gradient GEMMs of T=100, B=64, I=H=512 (6400 rows into 2048 x 512)
// one core does them in ~125 ms against MKL's 145-152 ms.
#include "gemm_cpu.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include "../driver_common.h"
#include "buffer_cache.h"
#include "cpu_common.h"
#include "kernels.h"

namespace rnnfuse {
namespace {

// Below this many multiply-adds at::mm's fixed costs are no larger.
constexpr int64_t kMinMacs = int64_t(1) << 22;

template <typename scalar_t>
bool try_gemm(const at::Tensor& a, const at::Tensor& b, at::Tensor& c) {
  const auto& kern = cpu::cpu_kernels<scalar_t>();
  if (!kern.gemm) return false;
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const int64_t width = kern.vec * kern.gemm_vecs;
  if (n % width != 0 || b.stride(1) != 1 || m * n * k < kMinMacs) return false;
  c = cached_empty_cpu({m, n}, a.options());
  cpu::GemmArgs<scalar_t> g{};
  g.m = m;
  g.n = n;
  g.k = k;
  g.a = a.data_ptr<scalar_t>();
  g.a_row = a.stride(0);
  g.a_k = a.stride(1);
  g.b = b.data_ptr<scalar_t>();
  g.ldb = b.stride(0);
  g.c = c.data_ptr<scalar_t>();
  g.ldc = n;
  g.accumulate = false;
  parallel_blocks(n / width, m * n * k, [&](int64_t p0, int64_t p1) { kern.gemm(g, p0, p1); });
  return true;
}

at::Tensor mm_cpu_op(const at::Tensor& a, const at::Tensor& b) {
  // As an op, its operands must agree (cpu_mm itself leaves mixes to at::mm).
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), "rnnfuse: b has dtype ", b.scalar_type(),
              " but a has ", a.scalar_type());
  TORCH_CHECK(b.device() == a.device(), "rnnfuse: b is on ", b.device(), " but a is on ",
              a.device());
  return cpu_mm(a, b);
}

}  // namespace

at::Tensor cpu_mm(const at::Tensor& a, const at::Tensor& b) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0),
              "rnnfuse.mm: expected 2-D tensors with a.size(1) == b.size(0), got ", a.sizes(),
              " and ", b.sizes());
  at::Tensor c;
  const bool done = a.device().is_cpu() && b.device().is_cpu() &&
                    a.scalar_type() == b.scalar_type() && a.numel() > 0 && b.numel() > 0 &&
                    (a.scalar_type() == at::kFloat || a.scalar_type() == at::kDouble) &&
                    AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "rnnfuse_mm_cpu",
                                               [&] { return try_gemm<scalar_t>(a, b, c); });
  return done ? c : at::mm(a, b);
}

}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) { m.impl("mm", &rnnfuse::mm_cpu_op); }
