// The grid tier's kernels (kernel.cuh, kernel_bwd.cuh: the CUDA source
// itself) executed on the CPU by simt.h's fibers, for the tests:
// rnnfuse::persistent_simt_* take the CPU emulators' arguments and run the
// drivers with these kernels as the time loop. Their parameters come from
// the CUDA host code's own builders (operands.h), with flags and partial
// sums allocated as loops_persistent.cpp does. Each launch runs every CTA of
// the grid (both directions of a bidirectional layer in one launch).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "../../persistent/emulate_common.h"
#include "kernel.cuh"
#include "kernel_bwd.cuh"
#include "operands.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

namespace rnnfuse {
namespace persist {
namespace {

// The grid-tier plan of an emulator configuration (its partition as the
// emulators build it).
Plan simt_plan(const EmuConfig& cfg, Cell cell, int hidden, int batch, bool backward) {
  Plan plan;
  plan.tier = Tier::Grid;
  plan.backward = backward;
  plan.elem_bytes = cfg.elem_bytes;
  plan.fma = cfg.fma;
  plan.hbuf_rows = cfg.hbuf_rows;
  plan.directions = 1;
  const int G = gates_of(cell);
  if (backward) {
    const BwdPartition p =
        make_bwd_partition(G, hidden, batch, cfg.units, cfg.replicas, cfg.elem_bytes, cfg.ksplit);
    const char* unfit = bwd_partition_error(p);
    TORCH_CHECK(unfit == nullptr, "simt: this backward partition does not fit the kernel: ",
                unfit);
    plan.part = p;
    plan.ksplit = p.ksplit;
    plan.smem_bytes = bwd_smem_bytes(p, cfg.elem_bytes, cfg.hbuf_rows);
    // As the driver's planner: LL words on request, where the partition allows.
    plan.ll = ll_exchange_requested() && grid_bwd_ll_error(p) == nullptr;
  } else {
    const Partition p = make_partition(G, hidden, batch, cfg.units, cfg.replicas, cfg.elem_bytes);
    const char* unfit = grid_partition_error(p);
    TORCH_CHECK(unfit == nullptr, "simt: this partition does not fit the kernel: ", unfit);
    plan.part = p;
    plan.smem_bytes = grid_smem_bytes(p, cfg.elem_bytes, cfg.hbuf_rows, cell);
    // As the driver's planner: LL words on request, where the partition allows.
    plan.ll = ll_exchange_requested() && grid_ll_error(p) == nullptr;
  }
  return plan;
}

// RNNFUSE_SIMT_LL_ONE_BUFFER=1 (a test's fault): both step parities in one
// LL buffer, so a CTA may overwrite words its replica has yet to read.
bool ll_one_buffer() {
  const char* env = std::getenv("RNNFUSE_SIMT_LL_ONE_BUFFER");
  return env != nullptr && std::string(env) == "1";
}

// RNNFUSE_SIMT_LL_ONE_SLOT=1 (a test's fault): the backward's LL partial sums
// of every chunk in one slot, so a part may overwrite sums another has yet
// to read.
bool ll_one_slot() {
  const char* env = std::getenv("RNNFUSE_SIMT_LL_ONE_SLOT");
  return env != nullptr && std::string(env) == "1";
}

// The bytes a tensor view spans, from its first element to its last.
simt::Region span(const at::Tensor& t) {
  if (t.numel() == 0) return simt::Region{t.data_ptr(), 0};
  int64_t last = 0;
  for (int64_t d = 0; d < t.dim(); ++d) last += (t.size(d) - 1) * t.stride(d);
  return simt::Region{t.data_ptr(), size_t(last + 1) * t.element_size()};
}

// The launch's exchanged buffers for the global-memory checks (simt.h):
// overlapping spans (a bidirectional layer's column blocks) merged.
std::vector<simt::Region> exchanged_buffers(std::vector<simt::Region> spans) {
  std::sort(spans.begin(), spans.end(), [](const simt::Region& a, const simt::Region& b) {
    return a.base < b.base;
  });
  std::vector<simt::Region> out;
  for (const simt::Region& r : spans) {
    auto* lo = static_cast<unsigned char*>(r.base);
    if (!out.empty()) {
      auto* top = static_cast<unsigned char*>(out.back().base);
      if (lo <= top + out.back().bytes) {
        out.back().bytes = std::max(out.back().bytes, size_t(lo + r.bytes - top));
        continue;
      }
    }
    out.push_back(r);
  }
  return out;
}

// drop_ctas (a test hook): launch that many CTAs fewer than the grid, so
// the others wait for flags that never come.
template <typename Launch, typename Kernel>
void run(const Plan& plan, const Launch& launch, uint64_t seed, Kernel kernel,
         const std::vector<simt::Region>& exchanged, int drop_ctas = 0) {
  simt::run_grid(launch.directions * plan.part.grid() - drop_ctas, kThreads,
                 static_cast<size_t>(plan.smem_bytes), seed,
                 simt::idle_step_ns(launch.dir[0].watchdog_ns), [&] { kernel(launch); },
                 /*cluster=*/1, exchanged);
}

void forward(Cell cell, const EmuConfig& cfg, const FwdOperands* const* dirs, int n,
             int drop_ctas = 0) {
  const Plan plan = simt_plan(cfg, cell, int(dirs[0]->h0.size(1)), int(dirs[0]->h0.size(0)), false);
  LaunchBuffers buffers;
  PersistFwdLaunch launch;
  TORCH_CHECK(forward_launch_args(plan, dirs, n, buffers, launch), "simt: schedule not encodable");
  TORCH_CHECK(drop_ctas >= 0 && drop_ctas < n * plan.part.grid(), "simt: drop_ctas");
  if (plan.ll && ll_one_buffer()) {
    for (int d = 0; d < n; ++d) launch.dir[d].ll_parity_mask = 0;
  }
  std::vector<simt::Region> spans;
  for (int d = 0; d < n; ++d) spans.push_back(span(dirs[d]->y));  // h_t, read by the replica
  const std::vector<simt::Region> xch = exchanged_buffers(spans);
  const bool lstm = cell == Cell::LSTM, ll = plan.ll;
  const at::ScalarType t = dirs[0]->x_proj.scalar_type();
  using Kernel = void (*)(const PersistFwdLaunch);
  const auto pick = [&](Kernel lstm_flags, Kernel gru_flags, Kernel lstm_ll, Kernel gru_ll) {
    return ll ? (lstm ? lstm_ll : gru_ll) : (lstm ? lstm_flags : gru_flags);
  };
  Kernel kernel;
  if (t == at::kHalf) {
    kernel = pick(persist_fwd_kernel<__half, Cell::LSTM>, persist_fwd_kernel<__half, Cell::GRU>,
                  persist_fwd_ll_kernel<__half, Cell::LSTM>, persist_fwd_ll_kernel<__half, Cell::GRU>);
  } else if (t == at::kBFloat16) {
    kernel = pick(persist_fwd_kernel<__nv_bfloat16, Cell::LSTM>,
                  persist_fwd_kernel<__nv_bfloat16, Cell::GRU>,
                  persist_fwd_ll_kernel<__nv_bfloat16, Cell::LSTM>,
                  persist_fwd_ll_kernel<__nv_bfloat16, Cell::GRU>);
  } else if (cfg.fma) {
    kernel = pick(persist_fwd_fma_kernel<Cell::LSTM>, persist_fwd_fma_kernel<Cell::GRU>,
                  persist_fwd_fma_ll_kernel<Cell::LSTM>, persist_fwd_fma_ll_kernel<Cell::GRU>);
  } else {
    kernel = pick(persist_fwd_kernel<float, Cell::LSTM>, persist_fwd_kernel<float, Cell::GRU>,
                  persist_fwd_ll_kernel<float, Cell::LSTM>, persist_fwd_ll_kernel<float, Cell::GRU>);
  }
  run(plan, launch, cfg.seed, kernel, xch, drop_ctas);
  keep_trace(buffers.trace, /*backward=*/false);
}

void backward(Cell cell, const EmuConfig& cfg, const BwdOperands* const* dirs, int n) {
  const Plan plan = simt_plan(cfg, cell, int(dirs[0]->dh_state.size(1)),
                              int(dirs[0]->dh_state.size(0)), true);
  LaunchBuffers buffers;
  PersistBwdLaunch launch;
  TORCH_CHECK(backward_launch_args(plan, dirs, n, buffers, launch), "simt: schedule not encodable");
  for (int d = 0; plan.ll && d < n; ++d) {
    if (ll_one_buffer()) launch.dir[d].ll_parity_mask = 0;
    if (ll_one_slot()) launch.dir[d].ll_slots = 1;
  }
  // dgates (read by the replica's CTAs next step) and the K split's partial
  // sums (LL words are not an exchanged buffer: their rules are simt.h's).
  std::vector<simt::Region> spans;
  for (int d = 0; d < n; ++d) spans.push_back(span(dirs[d]->xch));
  if (buffers.partials.defined()) spans.push_back(span(buffers.partials));
  const std::vector<simt::Region> xch = exchanged_buffers(spans);
  const bool lstm = cell == Cell::LSTM, ll = plan.ll;
  const at::ScalarType t = dirs[0]->grad_y.scalar_type();
  using Kernel = void (*)(const PersistBwdLaunch);
  const auto pick = [&](Kernel lstm_flags, Kernel gru_flags, Kernel lstm_ll, Kernel gru_ll) {
    return ll ? (lstm ? lstm_ll : gru_ll) : (lstm ? lstm_flags : gru_flags);
  };
  Kernel kernel;
  if (t == at::kHalf) {
    kernel = pick(persist_bwd_kernel<__half, Cell::LSTM>, persist_bwd_kernel<__half, Cell::GRU>,
                  persist_bwd_ll_kernel<__half, Cell::LSTM>, persist_bwd_ll_kernel<__half, Cell::GRU>);
  } else if (t == at::kBFloat16) {
    kernel = pick(persist_bwd_kernel<__nv_bfloat16, Cell::LSTM>,
                  persist_bwd_kernel<__nv_bfloat16, Cell::GRU>,
                  persist_bwd_ll_kernel<__nv_bfloat16, Cell::LSTM>,
                  persist_bwd_ll_kernel<__nv_bfloat16, Cell::GRU>);
  } else if (cfg.fma) {
    kernel = pick(persist_bwd_fma_kernel<Cell::LSTM>, persist_bwd_fma_kernel<Cell::GRU>,
                  persist_bwd_fma_ll_kernel<Cell::LSTM>, persist_bwd_fma_ll_kernel<Cell::GRU>);
  } else {
    kernel = pick(persist_bwd_kernel<float, Cell::LSTM>, persist_bwd_kernel<float, Cell::GRU>,
                  persist_bwd_ll_kernel<float, Cell::LSTM>, persist_bwd_ll_kernel<float, Cell::GRU>);
  }
  run(plan, launch, cfg.seed, kernel, xch);
  keep_trace(buffers.trace, /*backward=*/true);
}

// A driver's time loop on the kernels: one direction's arguments (Args:
// LstmForward ... GruBackward), or a bidirectional layer's two in one launch.
template <typename Args>
void one_direction(Cell cell, const EmuConfig& cfg, const Args& args, const std::vector<Step>& steps) {
  if constexpr (std::is_same_v<Args, LstmForward> || std::is_same_v<Args, GruForward>) {
    const FwdOperands o = fwd_operands(args, steps);
    const FwdOperands* dirs[1] = {&o};
    forward(cell, cfg, dirs, 1);
  } else {
    const BwdOperands o = bwd_operands(args, steps);
    const BwdOperands* dirs[1] = {&o};
    backward(cell, cfg, dirs, 1);
  }
}

template <typename Args>
void both_directions(Cell cell, const EmuConfig& cfg, const Args (&args)[2],
                     const std::vector<Step> (&steps)[2]) {
  if constexpr (std::is_same_v<Args, LstmForward> || std::is_same_v<Args, GruForward>) {
    const FwdOperands o[2] = {fwd_operands(args[0], steps[0]), fwd_operands(args[1], steps[1])};
    const FwdOperands* dirs[2] = {&o[0], &o[1]};
    forward(cell, cfg, dirs, 2);
  } else {
    const BwdOperands o[2] = {bwd_operands(args[0], steps[0]), bwd_operands(args[1], steps[1])};
    const BwdOperands* dirs[2] = {&o[0], &o[1]};
    backward(cell, cfg, dirs, 2);
  }
}

EmuConfig config(int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
                 int64_t seed, bool reverse, at::ScalarType dtype, bool fma, int64_t ksplit = 1) {
  TORCH_CHECK(dtype != at::kDouble, "simt: the kernels take fp16, bf16 or fp32");
  return make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, 0, reverse, dtype, fma,
                         ksplit);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_lstm(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool training, int64_t units,
    int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed, bool fma,
    int64_t drop_ctas) {
  const EmuConfig cfg =
      config(units, replicas, hbuf_rows, elem_bytes, seed, reverse, x_proj.scalar_type(), fma);
  return lstm_forward(x_proj, w_hh, c10::nullopt, h0, c0, batch_sizes, reverse, training,
                      [&](const LstmForward& f, const std::vector<Step>& steps) {
                        const FwdOperands o = fwd_operands(f, steps);
                        const FwdOperands* dirs[1] = {&o};
                        forward(Cell::LSTM, cfg, dirs, 1, static_cast<int>(drop_ctas));
                      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> simt_gru(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
    int64_t seed, bool fma) {
  const EmuConfig cfg =
      config(units, replicas, hbuf_rows, elem_bytes, seed, reverse, x_proj.scalar_type(), fma);
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training,
                     [&](const GruForward& f, const std::vector<Step>& steps) {
                       one_direction(Cell::GRU, cfg, f, steps);
                     });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_lstm_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
    int64_t seed, bool fma) {
  const EmuConfig cfg =
      config(units, replicas, hbuf_rows, elem_bytes, seed, false, x_proj.scalar_type(), fma);
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, c10::nullopt, c10::nullopt, h0, c0,
                            batch_sizes, training,
                            [&](const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                              both_directions(Cell::LSTM, cfg, f, steps);
                            });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> simt_gru_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    bool fma) {
  const EmuConfig cfg =
      config(units, replicas, hbuf_rows, elem_bytes, seed, false, x_proj.scalar_type(), fma);
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           [&](const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                             both_directions(Cell::GRU, cfg, f, steps);
                           });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_lstm_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& grad_c_n,
    const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    bool fma, int64_t ksplit) {
  const EmuConfig cfg = config(units, replicas, hbuf_rows, elem_bytes, seed, reverse,
                               grad_y.scalar_type(), fma, ksplit);
  return lstm_backward(grad_y, grad_h_n, grad_c_n, w_hh, c10::nullopt, h0, c0, y, workspace,
                       batch_sizes, reverse,
                       [&](const LstmBackward& g, const std::vector<Step>& steps) {
                         one_direction(Cell::LSTM, cfg, g, steps);
                       });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_gru_bwd(
    const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
    const c10::optional<at::Tensor>& b_hh, const at::Tensor& h0, const at::Tensor& y,
    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes, int64_t seed,
    bool fma, int64_t ksplit) {
  const EmuConfig cfg = config(units, replicas, hbuf_rows, elem_bytes, seed, reverse,
                               grad_y.scalar_type(), fma, ksplit);
  return gru_backward(grad_y, grad_h_n, w_hh, b_hh, h0, y, workspace, batch_sizes, reverse,
                      [&](const GruBackward& g, const std::vector<Step>& steps) {
                        one_direction(Cell::GRU, cfg, g, steps);
                      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
simt_lstm_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n,
                    const at::Tensor& grad_c_n, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
                    const at::Tensor& h0, const at::Tensor& c0, const at::Tensor& y,
                    const at::Tensor& workspace, const c10::optional<at::Tensor>& batch_sizes,
                    int64_t units, int64_t replicas, int64_t hbuf_rows, int64_t elem_bytes,
                    int64_t seed, bool fma, int64_t ksplit) {
  const EmuConfig cfg = config(units, replicas, hbuf_rows, elem_bytes, seed, false,
                               grad_y.scalar_type(), fma, ksplit);
  return lstm_bidir_backward(grad_y, grad_h_n, grad_c_n, w_hh, w_hh_rev, c10::nullopt,
                             c10::nullopt, h0, c0, y, workspace, batch_sizes,
                             [&](const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                               both_directions(Cell::LSTM, cfg, g, steps);
                             });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
simt_gru_bidir_bwd(const at::Tensor& grad_y, const at::Tensor& grad_h_n, const at::Tensor& w_hh,
                   const at::Tensor& w_hh_rev, const c10::optional<at::Tensor>& b_hh,
                   const c10::optional<at::Tensor>& b_hh_rev, const at::Tensor& h0,
                   const at::Tensor& y, const at::Tensor& workspace,
                   const c10::optional<at::Tensor>& batch_sizes, int64_t units, int64_t replicas,
                   int64_t hbuf_rows, int64_t elem_bytes, int64_t seed, bool fma,
                   int64_t ksplit) {
  const EmuConfig cfg = config(units, replicas, hbuf_rows, elem_bytes, seed, false,
                               grad_y.scalar_type(), fma, ksplit);
  return gru_bidir_backward(grad_y, grad_h_n, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, y, workspace,
                            batch_sizes,
                            [&](const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
                              both_directions(Cell::GRU, cfg, g, steps);
                            });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_take_trace", [](const at::Tensor&, bool backward) {
    return rnnfuse::persist::take_trace(backward);
  });
  m.impl("persistent_simt_lstm", &rnnfuse::persist::simt_lstm);
  m.impl("persistent_simt_gru", &rnnfuse::persist::simt_gru);
  m.impl("persistent_simt_lstm_bidir", &rnnfuse::persist::simt_lstm_bidir);
  m.impl("persistent_simt_gru_bidir", &rnnfuse::persist::simt_gru_bidir);
  m.impl("persistent_simt_lstm_bwd", &rnnfuse::persist::simt_lstm_bwd);
  m.impl("persistent_simt_gru_bwd", &rnnfuse::persist::simt_gru_bwd);
  m.impl("persistent_simt_lstm_bidir_bwd", &rnnfuse::persist::simt_lstm_bidir_bwd);
  m.impl("persistent_simt_gru_bidir_bwd", &rnnfuse::persist::simt_gru_bidir_bwd);
}
