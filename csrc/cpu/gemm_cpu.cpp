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

at::Tensor mm_cpu_op(const at::Tensor& a, const at::Tensor& b) {
  // As an op, its operands must agree (cpu_mm itself leaves mixes to at::mm).
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), "rnnfuse: b has dtype ", b.scalar_type(),
              " but a has ", a.scalar_type());
  TORCH_CHECK(b.device() == a.device(), "rnnfuse: b is on ", b.device(), " but a is on ",
              a.device());
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  return cpu_mm(a, b);
}

}  // namespace

int64_t gemm_panel_width(const at::Tensor& a, const at::Tensor& b) {
  const auto dtype = a.scalar_type();
  if ((dtype != at::kFloat && dtype != at::kDouble) || b.scalar_type() != dtype ||
      b.stride(1) != 1 || a.size(1) == 0) {
    return 0;
  }
  return AT_DISPATCH_FLOATING_TYPES(dtype, "rnnfuse_gemm_panel_width", [&]() -> int64_t {
    const auto& kern = cpu::cpu_kernels<scalar_t>();
    const int64_t width = kern.vec * kern.gemm_vecs;
    return kern.gemm && b.size(1) % width == 0 ? width : 0;
  });
}

void gemm_panels(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c, bool accumulate,
                 int64_t pan0, int64_t pan1) {
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "rnnfuse_gemm_panels", [&] {
    cpu::GemmArgs<scalar_t> g{};
    g.m = a.size(0);
    g.n = b.size(1);
    g.k = a.size(1);
    g.a = a.data_ptr<scalar_t>();
    g.a_row = a.stride(0);
    g.a_k = a.stride(1);
    g.b = b.data_ptr<scalar_t>();
    g.ldb = b.stride(0);
    g.c = c.data_ptr<scalar_t>();
    g.ldc = c.stride(0);
    g.accumulate = accumulate;
    cpu::cpu_kernels<scalar_t>().gemm(g, pan0, pan1);
  });
}

at::Tensor cpu_mm(const at::Tensor& a, const at::Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0),
              "rnnfuse.mm: expected 2-D tensors with a.size(1) == b.size(0), got ", a.sizes(),
              " and ", b.sizes());
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const int64_t width = a.device().is_cpu() && b.device().is_cpu() ? gemm_panel_width(a, b) : 0;
  if (width == 0 || m * n * k < kMinMacs) return at::mm(a, b);
  auto c = cached_empty_cpu({m, n}, a.options());
  parallel_blocks(n / width, m * n * k,
                  [&](int64_t p0, int64_t p1) { gemm_panels(a, b, c, false, p0, p1); });
  return c;
}

}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) { m.impl("mm", &rnnfuse::mm_cpu_op); }
