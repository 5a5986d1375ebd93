// The cells' forward on the CPU: one pass over the gates that adds the input
// term, the recurrent term and both biases, applies the gate math (in fp32
// for bf16) and writes h, c and the workspace (kernels.h's lstm_fwd /
// gru_fwd). A cell call is one step, so what the composite body
// (driver_cell.cpp) spends around its GEMMs (a bias sum, the layer op's
// schedule, buffers, copies and, from 16 rows, laying w_hh out for one step)
// is much of a call's time. Small fp32/fp64 batches compute both products in
// that pass as dot products with the weights as stored (w_in); from 16 rows,
// fp32, fp64 and bf16 take both GEMMs from ATen first (rec), as torch.nn's
// cell does but side by side (gemm_group.h), and fuse the rest. Small bf16
// batches and fp16 take the composite body.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <type_traits>

#include "../driver_cell.h"
#include "../driver_common.h"
#include "cpu_common.h"
#include "gemm_group.h"
#include "kernels.h"

namespace rnnfuse {
namespace {

enum class CellPath { kComposite, kDots, kGemms };

// The batches the layer's forward would also run as dot products
// (cpu_common.h: too few rows to pay for laying the weights out) take them,
// larger ones ATen's GEMMs. The dot products read x in the accumulation type,
// so only fp32/fp64 take them.
CellPath cell_path(const at::Tensor& x) {
  const auto t = x.scalar_type();
  const bool gemms = pack_forward_weights(x.size(0), x.size(0));
  if (t == at::kFloat || t == at::kDouble) return gemms ? CellPath::kGemms : CellPath::kDots;
  return t == at::kBFloat16 && gemms ? CellPath::kGemms : CellPath::kComposite;
}

void check_recurrent(int64_t gates, const at::Tensor& x, const at::Tensor& w_hh,
                     const at::Tensor& h0) {
  check_operand(w_hh, "w_hh", 2, x, "x");
  check_shape(w_hh, "w_hh", {gates * h0.size(1), h0.size(1)});
}

// A fused call's operands, contiguous, and with kGemms both products; h0 and
// the biases also in the accumulation type (the pass reads them so).
struct CellOperands {
  at::Tensor x, w_ih, w_hh, h0, h0_acc, b_ih, b_hh;
  at::Tensor x_proj, rec;  // x @ w_ih^T, h0 @ w_hh^T (kGemms only)

  CellOperands(CellPath path, const at::Tensor& x_in, const at::Tensor& w_ih_in,
               const at::Tensor& w_hh_in, const OptTensor& b_ih_in, const OptTensor& b_hh_in,
               const at::Tensor& h0_in)
      : x(x_in.contiguous()),
        w_ih(w_ih_in.contiguous()),
        w_hh(w_hh_in.contiguous()),
        h0(h0_in.contiguous()),
        h0_acc(as_dtype(h0, acc_dtype(h0.scalar_type()))),
        b_ih(defined(b_ih_in) ? acc_bias(*b_ih_in) : at::Tensor()),
        b_hh(defined(b_hh_in) ? acc_bias(*b_hh_in) : at::Tensor()) {
    if (path == CellPath::kGemms) {
      x_proj = at::empty({x.size(0), w_ih.size(0)}, x.options());
      rec = at::empty({h0.size(0), w_hh.size(0)}, h0.options());
      gemm_group({{x, w_ih.t(), x_proj}, {h0, w_hh.t(), rec}});
    }
  }

  static at::Tensor acc_bias(const at::Tensor& b) {
    return as_dtype(b, acc_dtype(b.scalar_type())).contiguous();
  }

  // The kernel arguments every cell shares: w_hh, h0, h (y), the workspace,
  // b_ih, and the input term (dot products with w_ih as stored, or the
  // GEMMs').
  template <typename Args>
  void fill(Args& a, at::Tensor& h, at::Tensor& ws, bool training) const {
    using scalar_t = std::remove_const_t<std::remove_pointer_t<decltype(a.w_in)>>;
    using acc_t = cpu::acc_type<scalar_t>;
    a.hidden = h0.size(1);
    a.w = w_hh.data_ptr<scalar_t>();
    a.h0_s = h0.data_ptr<scalar_t>();
    a.h0 = h0_acc.data_ptr<acc_t>();
    a.y = h.data_ptr<scalar_t>();
    a.ld_y = a.ld_prev = h.size(1);  // one step: no previous rows are read
    a.ws = training ? ws.data_ptr<scalar_t>() : nullptr;
    a.b_in = b_ih.defined() ? b_ih.data_ptr<acc_t>() : nullptr;
    if (rec.defined()) {
      a.x_proj = x_proj.data_ptr<scalar_t>();
      a.ld_x = x_proj.stride(0);
      a.rec = rec.data_ptr<scalar_t>();
    } else {  // kDots: fp32/fp64 only, where x is in the accumulation type
      a.w_in = w_ih.data_ptr<scalar_t>();
      a.x_in = x.data_ptr<acc_t>();
      a.in_size = x.size(1);
    }
  }
};

// The pass's work in multiply-adds, for parallel_blocks (after the GEMMs,
// the gate math alone: cpu_common.h's kGateMacs per gate value).
int64_t macs(CellPath path, int64_t batch, int64_t rows, int64_t in_size, int64_t hidden) {
  return batch * rows * (path == CellPath::kDots ? in_size + hidden : kGateMacs);
}

// One step whose rows all start from h0 and end there.
Step one_step(int64_t batch) { return Step{0, batch, 0, 0, 0, 0}; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_fwd_cpu(
    const at::Tensor& x_in, const at::Tensor& w_ih_in, const at::Tensor& w_hh_in,
    const OptTensor& b_ih_in, const OptTensor& b_hh_in, const at::Tensor& h0_in,
    const at::Tensor& c0, bool training) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_inputs("lstm_cell", 4, x_in, w_ih_in, h0_in, b_ih_in, b_hh_in);
  const CellPath path = cell_path(x_in);
  if (path == CellPath::kComposite) {
    return lstm_cell_fwd_composite(x_in, w_ih_in, w_hh_in, b_ih_in, b_hh_in, h0_in, c0, training);
  }
  check_recurrent(4, x_in, w_hh_in, h0_in);
  check_operand(c0, "c0", 2, x_in, "x");
  check_shape(c0, "c0", h0_in.sizes());
  const CellOperands op(path, x_in, w_ih_in, w_hh_in, b_ih_in, b_hh_in, h0_in);
  const int64_t batch = op.x.size(0), hidden = op.h0.size(1);
  auto h = at::empty({batch, hidden}, op.x.options());
  const auto acc = op.x.options().dtype(acc_dtype(op.x.scalar_type()));
  // c_{t-1} in, c_t out, in the accumulation type.
  auto c = c0.to(acc.dtype(), /*non_blocking=*/false, /*copy=*/true).contiguous();
  auto ws = training ? at::empty({batch, 5 * hidden}, op.x.options())
                     : at::empty({0}, op.x.options());
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, op.x.scalar_type(), "rnnfuse_lstm_cell_fwd_cpu",
                                 [&] {
    using acc_t = cpu::acc_type<scalar_t>;
    const auto& kern = cpu::cpu_kernels<scalar_t>();
    cpu::LstmFwdArgs<scalar_t> a{};
    op.fill(a, h, ws, training);
    a.out = hidden;
    a.c_state = c.data_ptr<acc_t>();
    a.b_in2 = op.b_hh.defined() ? op.b_hh.data_ptr<acc_t>() : nullptr;
    const Step st = one_step(batch);
    parallel_blocks(kern.blocks(hidden), macs(path, batch, 4 * hidden, op.x.size(1), hidden),
                    [&](int64_t b0, int64_t b1) { kern.lstm_fwd(a, st, b0, b1); });
  });
  return {h, as_dtype(c, c0.scalar_type()), ws};
}

std::tuple<at::Tensor, at::Tensor> gru_cell_fwd_cpu(const at::Tensor& x_in,
                                                    const at::Tensor& w_ih_in,
                                                    const at::Tensor& w_hh_in,
                                                    const OptTensor& b_ih_in,
                                                    const OptTensor& b_hh_in,
                                                    const at::Tensor& h0_in, bool training) {
  const NoAutocast no_autocast(c10::autocast_dispatch_keyset);
  check_cell_inputs("gru_cell", 3, x_in, w_ih_in, h0_in, b_ih_in, b_hh_in);
  const CellPath path = cell_path(x_in);
  if (path == CellPath::kComposite) {
    return gru_cell_fwd_composite(x_in, w_ih_in, w_hh_in, b_ih_in, b_hh_in, h0_in, training);
  }
  check_recurrent(3, x_in, w_hh_in, h0_in);
  const CellOperands op(path, x_in, w_ih_in, w_hh_in, b_ih_in, b_hh_in, h0_in);
  const int64_t batch = op.x.size(0), hidden = op.h0.size(1);
  auto h = at::empty({batch, hidden}, op.x.options());
  auto ws = training ? at::empty({batch, 4 * hidden}, op.x.options())
                     : at::empty({0}, op.x.options());
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, op.x.scalar_type(), "rnnfuse_gru_cell_fwd_cpu",
                                 [&] {
    using acc_t = cpu::acc_type<scalar_t>;
    const auto& kern = cpu::cpu_kernels<scalar_t>();
    cpu::GruFwdArgs<scalar_t> a{};
    op.fill(a, h, ws, training);
    a.b_hh = op.b_hh.defined() ? op.b_hh.data_ptr<acc_t>() : nullptr;
    const Step st = one_step(batch);
    parallel_blocks(kern.blocks(hidden), macs(path, batch, 3 * hidden, op.x.size(1), hidden),
                    [&](int64_t b0, int64_t b1) { kern.gru_fwd(a, st, b0, b1); });
  });
  return {h, ws};
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("lstm_cell_fwd", &rnnfuse::lstm_cell_fwd_cpu);
  m.impl("gru_cell_fwd", &rnnfuse::gru_cell_fwd_cpu);
}
