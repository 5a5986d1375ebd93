// The cluster tier's kernel (cluster_kernel.cuh: the CUDA source itself)
// executed on the CPU by simt.h's fibers, for the tests:
// rnnfuse::persistent_simt_cluster_* take the cluster emulator's arguments
// and run the drivers with the kernel as the time loop. The kernel's
// parameters come from the CUDA host code's own builder (operands.h's
// cluster_args); the launch runs every CTA of every cluster, both
// directions of a bidirectional layer in one launch. The runtime models
// the thread-block clusters, their barrier, the mbarriers, st.async bytes
// in flight until a random later round and cp.async copies that may land
// only at their wait (simt.h).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <torch/library.h>

#include "../../persistent/emulate_common.h"
#include "cluster_kernel.cuh"
#include "operands.h"

namespace rnnfuse {
namespace persist {
namespace {

// The emulator's configuration (make_cluster_emu_config's checks), for the
// dtypes the kernel takes.
ClusterEmuConfig cluster_run(int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes,
                             int64_t seed, bool reverse, bool slice_push, at::ScalarType dtype,
                             int64_t group, int64_t red_pad) {
  TORCH_CHECK(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat,
              "simt: the cluster kernel takes fp16, bf16 or fp32 (TF32)");
  return make_cluster_emu_config(units, replicas, cluster, elem_bytes, seed, 0, reverse, dtype,
                                 slice_push, group, red_pad);
}

// The cluster-tier plan of an emulator configuration (its partition as the
// emulator and the planner build it).
Plan cluster_plan(const ClusterEmuConfig& run, Cell cell, int hidden, int batch, int directions) {
  const ClusterPartition p =
      make_cluster_partition(gates_of(cell), hidden, batch, run.units, run.replicas,
                             run.max_cluster, run.elem_bytes, run.slice_push, run.group,
                             run.red_pad);
  const char* bad = cluster_partition_error(p, run.elem_bytes);
  TORCH_CHECK(bad == nullptr, "simt: the cluster kernel cannot run this partition: ",
              bad == nullptr ? "" : bad);
  Plan plan;
  plan.tier = Tier::Cluster;
  plan.part = p;
  plan.cpart = p;
  plan.elem_bytes = run.elem_bytes;
  plan.directions = directions;
  plan.hbuf_rows = p.hb_rows;
  plan.smem_bytes = cluster_smem(p, run.elem_bytes, cell).total;
  return plan;
}

// One launch of `n` directions (1, or 2 of a bidirectional layer).
void forward(Cell cell, const ClusterEmuConfig& run, const FwdOperands* const* dirs, int n) {
  const Plan plan =
      cluster_plan(run, cell, int(dirs[0]->h0.size(1)), int(dirs[0]->h0.size(0)), n);
  PersistClusterLaunch launch;
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    TORCH_CHECK(cluster_args(plan, *dirs[d], launch.dir[d]),
                "simt: the cluster kernel cannot take this layout or schedule");
  }
  const bool lstm = cell == Cell::LSTM;
  const at::ScalarType t = dirs[0]->x_proj.scalar_type();
  void (*kernel)(const PersistClusterLaunch) =
      t == at::kHalf       ? (lstm ? persist_cluster_kernel<__half, Cell::LSTM>
                                   : persist_cluster_kernel<__half, Cell::GRU>)
      : t == at::kBFloat16 ? (lstm ? persist_cluster_kernel<__nv_bfloat16, Cell::LSTM>
                                   : persist_cluster_kernel<__nv_bfloat16, Cell::GRU>)
                           : (lstm ? persist_cluster_kernel<float, Cell::LSTM>
                                   : persist_cluster_kernel<float, Cell::GRU>);
  simt::run_grid(n * plan.cpart.cluster_grid(), kThreads, static_cast<size_t>(plan.smem_bytes),
                 run.seed, simt::idle_step_ns(launch.dir[0].watchdog_ns),
                 [&] { kernel(launch); }, plan.cpart.cluster);
}

template <typename Args>
void one_direction(Cell cell, const ClusterEmuConfig& run, const Args& args,
                   const std::vector<Step>& steps) {
  const FwdOperands o = fwd_operands(args, steps);
  const FwdOperands* dirs[1] = {&o};
  forward(cell, run, dirs, 1);
}

template <typename Args>
void both_directions(Cell cell, const ClusterEmuConfig& run, const Args (&args)[2],
                     const std::vector<Step> (&steps)[2]) {
  const FwdOperands o[2] = {fwd_operands(args[0], steps[0]), fwd_operands(args[1], steps[1])};
  const FwdOperands* dirs[2] = {&o[0], &o[1]};
  forward(cell, run, dirs, 2);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_cluster_lstm(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& h0, const at::Tensor& c0,
    const c10::optional<at::Tensor>& batch_sizes, bool reverse, bool training, int64_t units,
    int64_t replicas, int64_t cluster, int64_t elem_bytes, int64_t seed, bool slice_push,
    int64_t group, int64_t red_pad) {
  const ClusterEmuConfig run = cluster_run(units, replicas, cluster, elem_bytes, seed, reverse,
                                           slice_push, x_proj.scalar_type(), group, red_pad);
  return lstm_forward(x_proj, w_hh, c10::nullopt, h0, c0, batch_sizes, reverse, training,
                      [&](const LstmForward& f, const std::vector<Step>& steps) {
                        one_direction(Cell::LSTM, run, f, steps);
                      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> simt_cluster_gru(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const c10::optional<at::Tensor>& b_hh,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool reverse,
    bool training, int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes,
    int64_t seed, bool slice_push, int64_t group, int64_t red_pad) {
  const ClusterEmuConfig run = cluster_run(units, replicas, cluster, elem_bytes, seed, reverse,
                                           slice_push, x_proj.scalar_type(), group, red_pad);
  return gru_forward(x_proj, w_hh, b_hh, h0, batch_sizes, reverse, training,
                     [&](const GruForward& f, const std::vector<Step>& steps) {
                       one_direction(Cell::GRU, run, f, steps);
                     });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> simt_cluster_lstm_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const at::Tensor& h0, const at::Tensor& c0, const c10::optional<at::Tensor>& batch_sizes,
    bool training, int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes,
    int64_t seed, int64_t group, int64_t red_pad) {
  const ClusterEmuConfig run = cluster_run(units, replicas, cluster, elem_bytes, seed, false, true,
                                           x_proj.scalar_type(), group, red_pad);
  return lstm_bidir_forward(x_proj, w_hh, w_hh_rev, c10::nullopt, c10::nullopt, h0, c0,
                            batch_sizes, training,
                            [&](const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                              both_directions(Cell::LSTM, run, f, steps);
                            });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> simt_cluster_gru_bidir(
    const at::Tensor& x_proj, const at::Tensor& w_hh, const at::Tensor& w_hh_rev,
    const c10::optional<at::Tensor>& b_hh, const c10::optional<at::Tensor>& b_hh_rev,
    const at::Tensor& h0, const c10::optional<at::Tensor>& batch_sizes, bool training,
    int64_t units, int64_t replicas, int64_t cluster, int64_t elem_bytes, int64_t seed,
    int64_t group, int64_t red_pad) {
  const ClusterEmuConfig run = cluster_run(units, replicas, cluster, elem_bytes, seed, false, true,
                                           x_proj.scalar_type(), group, red_pad);
  return gru_bidir_forward(x_proj, w_hh, w_hh_rev, b_hh, b_hh_rev, h0, batch_sizes, training,
                           [&](const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
                             both_directions(Cell::GRU, run, f, steps);
                           });
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CPU, m) {
  m.impl("persistent_simt_cluster_lstm", &rnnfuse::persist::simt_cluster_lstm);
  m.impl("persistent_simt_cluster_gru", &rnnfuse::persist::simt_cluster_gru);
  m.impl("persistent_simt_cluster_lstm_bidir", &rnnfuse::persist::simt_cluster_lstm_bidir);
  m.impl("persistent_simt_cluster_gru_bidir", &rnnfuse::persist::simt_cluster_gru_bidir);
}
