// Host side of the persistent tier: device properties for the planner, the
// launches of the forward and backward kernels for one layer-direction
// (cluster tier, else grid tier, else the per-step kernels, whenever the
// plan, the occupancy API or the launch says no), and the ops that make the
// chosen path and the exchange floors visible (rnnfuse::recurrence_path,
// rnnfuse::persistent_exchange_bench, rnnfuse::persistent_cluster_exchange_bench).
// Per-operator headers, not ATen/ATen.h: half the compile time.
#include <ATen/Context.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>
#include <cuda.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "../../persistent/schedule_rle.h"
#include "bench.h"
#include "args.h"
#include "operands.h"
#include "persistent.h"

namespace rnnfuse {
namespace persist {
namespace {

// Persistent launches so far in this process (all tiers, and the cluster
// tier's alone, forward and backward): the tests check that a tier really
// ran (recurrence_path reports both).
std::atomic<int64_t> g_launches{0};
std::atomic<int64_t> g_cluster_launches{0};

// SMs this context may use under MPS or a green context (0: unknown), from
// the driver's cuCtxGetExecAffinity, reached through the runtime so that the
// extension need not link libcuda.
int exec_affinity_sms() {
  using Fn = CUresult (*)(CUexecAffinityParam*, CUexecAffinityType);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found{};
  if (cudaGetDriverEntryPointByVersion("cuCtxGetExecAffinity", &fn, 12000, cudaEnableDefault,
                                       &found) != cudaSuccess ||
      found != cudaDriverEntryPointSuccess || fn == nullptr) {
    (void)cudaGetLastError();
    return 0;
  }
  CUexecAffinityParam param;
  std::memset(&param, 0, sizeof(param));
  if (reinterpret_cast<Fn>(fn)(&param, CU_EXEC_AFFINITY_TYPE_SM_COUNT) != CUDA_SUCCESS) return 0;
  return static_cast<int>(param.param.smCount.val);
}

// Co-resident clusters of the cluster kernel (one CTA per SM, the most
// shared memory) of `size` CTAs; -1: this build has no sm_90 cluster kernels.
int max_active_clusters(const DeviceProps& p, int size) {
  int n = 0;
  const cudaError_t err = persist_cluster_max_active(ElemKind::BF16, Cell::LSTM, size,
                                                     static_cast<size_t>(p.smem_optin), &n);
  if (err == cudaErrorNotSupported) {
    (void)cudaGetLastError();
    return -1;
  }
  if (err != cudaSuccess) {  // e.g. a size the device does not allow: not planned
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

struct DeviceInfo {
  DeviceProps props;
  bool cluster_kernels = false;  // this build has the sm_90 cluster kernels
};

DeviceInfo query_device(int dev) {
  auto attr = [dev](cudaDeviceAttr a) {
    int v = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&v, a, dev));
    return v;
  };
  DeviceProps p;
  p.cc_major = attr(cudaDevAttrComputeCapabilityMajor);
  p.cc_minor = attr(cudaDevAttrComputeCapabilityMinor);
  p.sm_count = attr(cudaDevAttrMultiProcessorCount);
  p.smem_optin = attr(cudaDevAttrMaxSharedMemoryPerBlockOptin);
  p.smem_per_sm = attr(cudaDevAttrMaxSharedMemoryPerMultiprocessor);
  p.regs_per_sm = attr(cudaDevAttrMaxRegistersPerMultiprocessor);
  p.regs_per_block = attr(cudaDevAttrMaxRegistersPerBlock);
  p.cooperative = attr(cudaDevAttrCooperativeLaunch) != 0;
  p.clusters = p.cc_major >= 9 && attr(cudaDevAttrClusterLaunch) != 0;
  p.sm_available = exec_affinity_sms();
  DeviceInfo info;
  if (p.clusters) {
    const int n8 = max_active_clusters(p, kPortableClusterCtas);
    info.cluster_kernels = n8 >= 0;
    p.max_active_clusters = n8 > 0 ? n8 : 0;
    p.max_active_clusters_16 = n8 >= 0 ? std::max(0, max_active_clusters(p, kMaxClusterCtas)) : 0;
  }
  info.props = p;
  return info;
}

const DeviceInfo& current_device_info() {
  static std::mutex mu;
  static std::unordered_map<int, DeviceInfo> cache;
  const int dev = c10::cuda::current_device();
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache.find(dev);
  if (it == cache.end()) it = cache.emplace(dev, query_device(dev)).first;
  return it->second;
}

// The tiers a pass may use: what the build has, narrowed by the variable
// `name` (grid, cluster; unset or auto: both): RNNFUSE_PERSISTENT_TIER for
// the forward, RNNFUSE_PERSISTENT_BWD_TIER for the backward.
Built tiers_from_env(const char* name) {
  Built b;
  b.grid = true;
  b.cluster = current_device_info().cluster_kernels;
  const char* env = std::getenv(name);
  const std::string tier = env != nullptr ? env : "";
  TORCH_CHECK(tier.empty() || tier == "auto" || tier == "grid" || tier == "cluster", name,
              " must be 'grid', 'cluster' or 'auto', got '", tier, "'");
  if (tier == "grid") b.cluster = false;
  if (tier == "cluster") b.grid = false;
  return b;
}

// RNNFUSE_CLUSTER_PUSH: "slice" (unset: the default) sends each slice's h
// to the peers as soon as it is ready; "step" sends all of it at the
// step's end (cluster_layout.h), for comparing the two on a GPU.
bool cluster_slice_push() {
  const char* env = std::getenv("RNNFUSE_CLUSTER_PUSH");
  const std::string mode = env != nullptr ? env : "";
  TORCH_CHECK(mode.empty() || mode == "slice" || mode == "step",
              "RNNFUSE_CLUSTER_PUSH must be 'slice' or 'step', got '", mode, "'");
  return mode != "step";
}

// RNNFUSE_PERSISTENT_PIN (forward plans) and RNNFUSE_PERSISTENT_BWD_PIN
// (backward plans): constraints on the partition, e.g. "R=2,P=16" (plan.h
// Pin), for timing the latency model's other candidates. Unset: none.
Pin partition_pin(bool backward) {
  const char* name = backward ? "RNNFUSE_PERSISTENT_BWD_PIN" : "RNNFUSE_PERSISTENT_PIN";
  const char* env = std::getenv(name);
  Pin pin;
  const std::string bad = parse_pin(env != nullptr ? env : "", backward, &pin);
  TORCH_CHECK(bad.empty(), name, ": ", bad);
  return pin;
}

int usable_sms(const DeviceProps& d) {
  return d.sm_available > 0 && d.sm_available < d.sm_count ? d.sm_available : d.sm_count;
}

DType dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kFloat: return DType::F32;
    default: return DType::F64;
  }
}

// fp32 runs on the tensor cores as TF32 only under cudnn.allow_tf32 (as
// cuDNN's RNNs do); otherwise on the exact-FMA kernels.
ElemKind elem_of(at::ScalarType t) {
  if (t == at::kHalf) return ElemKind::F16;
  if (t == at::kBFloat16) return ElemKind::BF16;
  return at::globalContext().allowTF32CuDNN() ? ElemKind::TF32 : ElemKind::F32;
}

Plan plan_for(Cell cell, at::ScalarType dtype, int64_t hidden, int64_t batch, int64_t steps,
              int64_t proj_size, int packed_runs, bool backward = false,
              bool allow_cluster = true, int directions = 1) {
  Problem prob;
  prob.directions = directions;
  prob.cell = cell;
  prob.dtype = dtype_of(dtype);
  prob.allow_tf32 = at::globalContext().allowTF32CuDNN();
  prob.hidden = static_cast<int>(hidden);
  prob.batch = static_cast<int>(batch);
  prob.steps = static_cast<int>(steps);
  prob.proj_size = static_cast<int>(proj_size);
  prob.packed_runs = packed_runs;
  prob.pin = partition_pin(backward);
  Built built =
      tiers_from_env(backward ? "RNNFUSE_PERSISTENT_BWD_TIER" : "RNNFUSE_PERSISTENT_TIER");
  built.cluster = built.cluster && allow_cluster;
  prob.ll_exchange = ll_exchange_requested();
  if (backward) return make_bwd_plan(prob, current_device_props(), built);
  prob.slice_push = cluster_slice_push();  // the forward's cluster tier only
  return make_plan(prob, current_device_props(), built);
}

// Whether the occupancy API allows a cluster of a cluster-tier plan now, at
// its exact shared memory.
bool cluster_fits_now(Cell cell, at::ScalarType dtype, const Plan& plan) {
  int active = 0;
  const cudaError_t err = persist_cluster_max_active(
      elem_of(dtype), cell, plan.cpart.cluster, static_cast<size_t>(plan.smem_bytes), &active);
  if (err != cudaSuccess) (void)cudaGetLastError();
  return err == cudaSuccess && active >= 1;
}

// Whether the occupancy API allows a cluster of a backward cluster plan's
// kernel now, at its exact shared memory (the planner took the forward
// kernel's occupancy as a stand-in).
bool cluster_bwd_fits_now(Cell cell, at::ScalarType dtype, const Plan& plan) {
  int active = 0;
  const cudaError_t err = persist_cluster_bwd_max_active(
      elem_of(dtype), cell, plan.cbpart.mstride, plan.cbpart.cluster(),
      static_cast<size_t>(plan.smem_bytes), &active);
  if (err != cudaSuccess) (void)cudaGetLastError();
  return err == cudaSuccess && active >= 1;
}

// The backward plan a launch would use now (as forward_plan): a cluster
// plan the occupancy API refuses is replaced by the plan without it.
Plan backward_plan_now(Cell cell, at::ScalarType dtype, int64_t hidden, int64_t batch,
                       int64_t steps, int64_t proj_size, int packed_runs, int directions) {
  Plan plan = plan_for(cell, dtype, hidden, batch, steps, proj_size, packed_runs, true, true,
                       directions);
  if (plan.tier == Tier::Cluster && !cluster_bwd_fits_now(cell, dtype, plan)) {
    plan = plan_for(cell, dtype, hidden, batch, steps, proj_size, packed_runs, true, false,
                    directions);
    if (plan.tier == Tier::PerStep) {
      plan.reason = "the occupancy API refuses the backward cluster now; " + plan.reason;
    }
  }
  return plan;
}

// The forward plan a launch would use now: a cluster plan whose cluster the
// occupancy API refuses at its exact shared memory is replaced by the plan
// without the cluster tier (whose own occupancy check comes at launch).
Plan forward_plan(Cell cell, at::ScalarType dtype, int64_t hidden, int64_t batch, int64_t steps,
                  int64_t proj_size, int packed_runs) {
  Plan plan = plan_for(cell, dtype, hidden, batch, steps, proj_size, packed_runs);
  if (plan.tier == Tier::Cluster) {
    if (!cluster_fits_now(cell, dtype, plan)) {
      plan = plan_for(cell, dtype, hidden, batch, steps, proj_size, packed_runs, false, false);
      if (plan.tier == Tier::PerStep) {
        plan.reason = "the occupancy API refuses the cluster now; " + plan.reason;
      }
    }
  }
  return plan;
}

// A grid-tier launch's outcome: true when it was launched (counted); false
// when the grid cannot be co-resident now (nothing launched: the caller's
// step kernels run); any other error raises.
bool grid_launched(cudaError_t err) {
  if (err == cudaErrorCooperativeLaunchTooLarge) {
    (void)cudaGetLastError();
    TORCH_WARN_ONCE("rnnfuse: a persistent grid cannot be co-resident on this device now; "
                    "using the per-step kernels");
    return false;
  }
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  g_launches.fetch_add(1);
  return true;
}

// A cluster-tier launch's outcome (as grid_launched): true when it was
// launched (counted); false when the device refuses the cluster now
// (cudaErrorNotSupported: nothing launched); any other error raises.
bool cluster_launched(cudaError_t err) {
  if (err == cudaErrorNotSupported) {
    (void)cudaGetLastError();
    return false;
  }
  C10_CUDA_CHECK(err);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  g_launches.fetch_add(1);
  g_cluster_launches.fetch_add(1);
  return true;
}

// Launch the grid tier for `dirs` directions (1, or 2 of a bidirectional
// layer); false (nothing launched) when the device refuses the grid now.
bool launch_forward_grid(Cell cell, const Plan& plan, const FwdOperands* const* dirs, int n) {
  const at::Tensor& like = dirs[0]->x_proj;
  LaunchBuffers buffers;
  PersistFwdLaunch launch;
  if (!forward_launch_args(plan, dirs, n, buffers, launch)) return false;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const bool launched = grid_launched(launch_persist_fwd(elem_of(like.scalar_type()), cell, launch,
                                                         static_cast<size_t>(plan.smem_bytes),
                                                         usable_sms(current_device_props()), stream));
  if (launched) keep_trace(buffers.trace, /*backward=*/false);
  return launched;
}

// The cluster-tier launch of `n` directions (1, or 2 for a bidirectional
// layer); false (nothing launched) where a direction does not fit the
// kernel or the device refuses the cluster now.
bool launch_forward_cluster(Cell cell, const Plan& plan, const FwdOperands* const* dirs, int n) {
  PersistClusterLaunch launch;
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    if (!cluster_args(plan, *dirs[d], launch.dir[d])) return false;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const cudaError_t err = launch_persist_cluster(elem_of(dirs[0]->x_proj.scalar_type()), cell,
                                                 launch, static_cast<size_t>(plan.smem_bytes),
                                                 stream);
  if (cluster_launched(err)) return true;
  TORCH_WARN_ONCE("rnnfuse: the device refuses the persistent cluster now; using the grid tier "
                  "or the per-step kernels");
  return false;
}

// The launch shared by both cells for one direction; returns false when the
// per-step kernels must run.
bool run_forward(Cell cell, const FwdOperands& o, bool has_proj) {
  if (!persistent_enabled()) return false;
  const int64_t hidden = o.h0.size(1), batch = o.h0.size(0);
  const int64_t n_steps = static_cast<int64_t>(o.steps.size());
  // The launch itself checks the cluster's occupancy (and falls back), so
  // the plan needs no separate query here (one per call is enough).
  Plan plan = plan_for(cell, o.x_proj.scalar_type(), hidden, batch, n_steps, has_proj ? 1 : 0,
                       count_runs(o.steps));
  if (plan.tier == Tier::PerStep) return false;
  const FwdOperands* dirs[1] = {&o};
  if (plan.tier == Tier::Cluster) {
    if (launch_forward_cluster(cell, plan, dirs, 1)) return true;
    plan = plan_for(cell, o.x_proj.scalar_type(), hidden, batch, n_steps, has_proj ? 1 : 0,
                    count_runs(o.steps), false, /*allow_cluster=*/false);
    if (plan.tier != Tier::Grid) return false;
  }
  return launch_forward_grid(cell, plan, dirs, 1);
}

// The planned persistent launches of a bidirectional layer: 1 (both
// directions in one launch, grid or cluster tier, where that plan exists and
// its modelled step is no slower than two single-direction steps), 2 (one
// per direction, each on its own tier: the forward's may be the cluster
// tier) or 0 (step kernels).
int bidir_launches(const Plan& both, const Plan& one) {
  const bool one_ok = one.tier != Tier::PerStep;
  if (both.tier != Tier::PerStep && (!one_ok || both.us_per_step <= 2 * one.us_per_step)) return 1;
  return one_ok ? 2 : 0;
}

// Runs them as planned; returns a mask of the directions that ran (bit d:
// direction d; a refused launch leaves its direction to the caller's step
// kernels).
int bidir_mask(const Plan& both, const Plan& one, const std::function<bool()>& launch_both,
               const std::function<bool(int)>& launch_one) {
  const int planned = bidir_launches(both, one);
  if (planned == 1 && launch_both()) return 3;
  if (one.tier == Tier::PerStep) return 0;
  int done = 0;
  for (int d = 0; d < 2; ++d) done |= launch_one(d) ? 1 << d : 0;
  return done;
}

int run_forward_bidir(Cell cell, const FwdOperands& fwd, const FwdOperands& rev) {
  if (!persistent_enabled()) return 0;
  const int64_t hidden = fwd.h0.size(1), batch = fwd.h0.size(0);
  const int64_t n_steps = static_cast<int64_t>(fwd.steps.size());
  const int runs = count_runs(fwd.steps);
  const auto dtype = fwd.x_proj.scalar_type();
  const Plan both = plan_for(cell, dtype, hidden, batch, n_steps, 0, runs, false, true, 2);
  const Plan one = forward_plan(cell, dtype, hidden, batch, n_steps, 0, runs);
  const FwdOperands* dirs[2] = {&fwd, &rev};
  return bidir_mask(
      both, one,
      [&] {
        return both.tier == Tier::Cluster ? launch_forward_cluster(cell, both, dirs, 2)
                                          : launch_forward_grid(cell, both, dirs, 2);
      },
      [&](int d) { return run_forward(cell, *dirs[d], false); });
}

// The backward launch for `n` directions (as launch_forward_grid).
bool launch_backward_grid(Cell cell, const Plan& plan, const BwdOperands* const* dirs, int n) {
  const at::Tensor& like = dirs[0]->grad_y;
  LaunchBuffers buffers;
  PersistBwdLaunch launch;
  if (!backward_launch_args(plan, dirs, n, buffers, launch)) return false;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const bool launched = grid_launched(launch_persist_bwd(elem_of(like.scalar_type()), cell, launch,
                                                         static_cast<size_t>(plan.smem_bytes),
                                                         usable_sms(current_device_props()),
                                                         stream));
  if (launched) keep_trace(buffers.trace, /*backward=*/true);
  return launched;
}

Plan backward_plan(Cell cell, const BwdOperands& o, bool has_proj, int directions,
                   bool allow_cluster = true) {
  return plan_for(cell, o.grad_y.scalar_type(), o.dh_state.size(1), o.dh_state.size(0),
                  static_cast<int64_t>(o.steps.size()), has_proj ? 1 : 0, count_runs(o.steps),
                  /*backward=*/true, allow_cluster, directions);
}

// The cluster tier's backward launch of `n` directions' operands (as
// launch_forward_cluster; false: nothing launched).
bool launch_backward_cluster(Cell cell, const Plan& plan, const BwdOperands* const* dirs, int n) {
  PersistClusterBwdLaunch launch;
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    if (!cluster_backward_args(plan.cbpart, *dirs[d], launch.dir[d])) return false;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const cudaError_t err = launch_persist_cluster_bwd(elem_of(dirs[0]->grad_y.scalar_type()), cell,
                                                     launch, static_cast<size_t>(plan.smem_bytes),
                                                     stream);
  if (cluster_launched(err)) return true;
  TORCH_WARN_ONCE("rnnfuse: the device refuses the persistent backward cluster now; using the "
                  "grid tier or the per-step kernels");
  return false;
}

// The backward launch shared by both cells (driver's tensors) for one
// direction: the cluster tier where planned (its launch checks the
// occupancy and falls back), else the grid tier; false: the per-step
// kernels run.
bool run_backward(Cell cell, const BwdOperands& o, bool has_proj) {
  if (!persistent_enabled()) return false;
  Plan plan = backward_plan(cell, o, has_proj, 1);
  const BwdOperands* dirs[1] = {&o};
  if (plan.tier == Tier::Cluster) {
    if (launch_backward_cluster(cell, plan, dirs, 1)) return true;
    plan = backward_plan(cell, o, has_proj, 1, /*allow_cluster=*/false);
  }
  if (plan.tier != Tier::Grid) return false;
  return launch_backward_grid(cell, plan, dirs, 1);
}

// Both directions' backward (as run_forward_bidir): a mask of those that
// ran. Both in one launch on the tier their plan names (a refused cluster
// falls back to one launch per direction); one launch per direction takes
// either tier.
int run_backward_bidir(Cell cell, const BwdOperands& fwd, const BwdOperands& rev) {
  if (!persistent_enabled()) return 0;
  const Plan both = backward_plan(cell, fwd, false, 2);
  const Plan one = backward_plan(cell, fwd, false, 1);
  const BwdOperands* dirs[2] = {&fwd, &rev};
  return bidir_mask(
      both, one,
      [&] {
        return both.tier == Tier::Cluster ? launch_backward_cluster(cell, both, dirs, 2)
                                          : launch_backward_grid(cell, both, dirs, 2);
      },
      [&](int d) { return run_backward(cell, *dirs[d], false); });
}

// What the planner saw of the device (JSON): SMs, the SMs this context may
// use, co-resident 8- and 16-CTA clusters of the cluster kernel.
std::string describe_device(const DeviceProps& d) {
  return "{\"cc\": " + std::to_string(d.cc_major * 10 + d.cc_minor) +
         ", \"sms\": " + std::to_string(d.sm_count) +
         ", \"sms_available\": " + std::to_string(usable_sms(d)) +
         ", \"smem_optin\": " + std::to_string(d.smem_optin) +
         ", \"max_active_clusters\": " + std::to_string(d.max_active_clusters) +
         ", \"max_active_clusters_16\": " + std::to_string(d.max_active_clusters_16) + "}";
}

// ------------------------------------------------------------------ ops
// The bidirectional op's paths (directions = 2): as the host chooses them
// (bidir_mask), with the persistent launches a call plans per pass.
// Whether the occupancy API lets a grid-tier plan's CTAs (all its
// directions') be co-resident now, at the plan's shared memory.
bool grid_fits_now(Cell c, at::ScalarType dtype, const Plan& plan) {
  int per_sm = 0;
  const ElemKind kind = elem_of(dtype);
  const size_t smem = static_cast<size_t>(plan.smem_bytes);
  C10_CUDA_CHECK(plan.backward ? persist_bwd_blocks_per_sm(kind, c, smem, &per_sm)
                               : persist_fwd_blocks_per_sm(kind, c, smem, &per_sm));
  return per_sm >= 1 &&
         plan.part.grid() * plan.directions <= per_sm * usable_sms(current_device_props());
}

std::string bidir_path_json(Cell c, at::ScalarType dtype, int64_t hidden, int64_t batch,
                            int64_t steps, int runs) {
  std::string out = "{\"directions\": 2";
  for (bool backward : {false, true}) {
    const Plan both = plan_for(c, dtype, hidden, batch, steps, 0, runs, backward, true, 2);
    const Plan one = backward ? backward_plan_now(c, dtype, hidden, batch, steps, 0, runs, 1)
                              : forward_plan(c, dtype, hidden, batch, steps, 0, runs);
    int launches = persistent_enabled() ? bidir_launches(both, one) : 0;
    // A refused cluster for both directions falls back to one launch each.
    if (launches == 1 && both.tier == Tier::Cluster &&
        !(backward ? cluster_bwd_fits_now(c, dtype, both) : cluster_fits_now(c, dtype, both))) {
      launches = one.tier != Tier::PerStep ? 2 : 0;
    }
    const Plan& plan = launches == 1 ? both : one;
    if (launches > 0 && plan.tier == Tier::Grid && !grid_fits_now(c, dtype, plan)) launches = 0;
    const char* path = launches == 1 && plan.tier == Tier::Cluster   ? "persistent-cluster"
                       : launches == 1                               ? "persistent-grid"
                       : launches == 2 && plan.tier == Tier::Cluster ? "persistent-cluster-per-direction"
                       : launches == 2                               ? "persistent-grid-per-direction"
                                                                     : "per-step";
    out += std::string(backward ? ", \"backward_path\": \"" : ", \"path\": \"") + path +
           (backward ? "\", \"backward_launches\": " : "\", \"launches_per_call\": ") +
           std::to_string(launches) + (backward ? ", \"backward_plan\": " : ", \"plan\": ") +
           plan.describe();
  }
  return out + ", \"enabled\": " + (persistent_enabled() ? "true" : "false") +
         ", \"launches\": " + std::to_string(g_launches.load()) + ", \"cluster_launches\": " +
         std::to_string(g_cluster_launches.load()) + "}";
}

std::string recurrence_path_cuda(const at::Tensor& like, c10::string_view cell, int64_t hidden,
                                 int64_t batch, int64_t steps, int64_t proj_size,
                                 int64_t packed_runs, int64_t directions) {
  TORCH_CHECK(cell == "LSTM" || cell == "GRU", "rnnfuse.recurrence_path: cell must be LSTM or GRU");
  TORCH_CHECK(directions == 1 || directions == 2,
              "rnnfuse.recurrence_path: directions must be 1 or 2");
  TORCH_CHECK(directions == 1 || proj_size == 0,
              "rnnfuse.recurrence_path: a bidirectional layer with proj_size runs per step");
  const c10::cuda::OptionalCUDAGuard guard(like.device());
  const Cell c = cell == "LSTM" ? Cell::LSTM : Cell::GRU;
  if (directions == 2) {
    return bidir_path_json(c, like.scalar_type(), hidden, batch, steps,
                           static_cast<int>(packed_runs));
  }
  Plan plan = forward_plan(c, like.scalar_type(), hidden, batch, steps, proj_size,
                           static_cast<int>(packed_runs));
  std::string path = plan.tier == Tier::Grid      ? "persistent-grid"
                     : plan.tier == Tier::Cluster ? "persistent-cluster"
                                                  : "per-step";
  if (plan.tier == Tier::Grid && !grid_fits_now(c, like.scalar_type(), plan)) {
    path = "per-step";
    plan.reason = "the kernel's occupancy does not allow a co-resident grid";
  }
  Plan bwd = backward_plan_now(c, like.scalar_type(), hidden, batch, steps, proj_size,
                              static_cast<int>(packed_runs), 1);
  std::string bwd_path = bwd.tier == Tier::Grid      ? "persistent-grid"
                         : bwd.tier == Tier::Cluster ? "persistent-cluster"
                                                     : "per-step";
  if (bwd.tier == Tier::Grid && !grid_fits_now(c, like.scalar_type(), bwd)) {
    bwd_path = "per-step";
    bwd.reason = "the kernel's occupancy does not allow a co-resident grid";
  }
  const bool on = persistent_enabled();
  if (!on) path = bwd_path = "per-step";
  return std::string("{\"path\": \"") + path + "\", \"backward_path\": \"" + bwd_path +
         "\", \"enabled\": " + (on ? "true" : "false") + ", \"launches\": " +
         std::to_string(g_launches.load()) + ", \"cluster_launches\": " +
         std::to_string(g_cluster_launches.load()) + ", \"cluster_kernels\": " +
         (current_device_info().cluster_kernels ? "true" : "false") + ", \"device\": " +
         describe_device(current_device_props()) + ", \"plan\": " + plan.describe() +
         ", \"backward_plan\": " + bwd.describe() + "}";
}

// ns per step of the exchange alone: `ctas` CTAs per replica over hidden
// units, y (T*B, H) bf16, h0 (B, H) bf16.
double exchange_bench_cuda(const at::Tensor& y, const at::Tensor& h0, int64_t ctas,
                           int64_t replicas) {
  const auto [batch, hidden] = bench_rows(y, h0, "persistent_exchange_bench");
  const ExchangeBenchPlan plan = exchange_bench_plan(
      static_cast<int>(hidden), static_cast<int>(batch), static_cast<int>(ctas),
      static_cast<int>(replicas), false);
  TORCH_CHECK(plan.error == nullptr, "persistent_exchange_bench: ", plan.error);
  const c10::cuda::OptionalCUDAGuard guard(y.device());
  PersistArgs a;
  std::memset(&a, 0, sizeof(a));
  a.part = plan.grid;
  const int64_t steps = y.size(0) / batch;
  std::vector<Step> st(steps);
  for (int64_t s = 0; s < steps; ++s) st[s] = Step{s * batch, batch, (s - 1) * batch, s > 0 ? batch : 0, 0, 0};
  TORCH_CHECK(encode_schedule(st, y.size(0), false, a.sched), "schedule");
  a.h0 = h0.data_ptr();
  a.y = y.data_ptr();
  a.hbuf_rows = a.part.max_replica_rows();
  a.vec16 = (hidden * 2) % 16 == 0 && aligned16(y) && aligned16(h0);
  a.watchdog_ns = watchdog_ns();
  a.flag_stride = flag_stride_from_env();
  const at::Tensor flags =
      at::zeros({a.part.grid() * a.flag_stride}, y.options().dtype(at::kInt));
  a.flags = reinterpret_cast<unsigned*>(flags.data_ptr<int>());
  // exchange_bench.cu's h buffer, all it has in shared memory.
  const int64_t smem = int64_t(a.hbuf_rows) * a.part.h_pitch(2) * 2;
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const double ms = launch_ms(stream, [&] {
    const cudaError_t err = launch_persist_exchange(a, static_cast<size_t>(smem),
                                                    usable_sms(current_device_props()), stream);
    if (err == cudaErrorCooperativeLaunchTooLarge) (void)cudaGetLastError();
    TORCH_CHECK(err != cudaErrorCooperativeLaunchTooLarge, "persistent_exchange_bench: ",
                a.part.grid(), " CTAs with ", smem, " bytes of shared memory cannot be co-resident");
    C10_CUDA_CHECK(err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return ms * 1e6 / double(steps);
}

// ns per step of the cluster tier's exchange alone: clusters of up to `ctas`
// CTAs running the forward kernel's slices (exchange_bench_plan),
// `replicas` clusters over the batch
// (round-robin rows); y (T*B, H) bf16 gets the last step's rows, h0 (B, H).
double cluster_exchange_bench_cuda(const at::Tensor& y, const at::Tensor& h0, int64_t ctas,
                                   int64_t replicas) {
  const auto [batch, hidden] = bench_rows(y, h0, "persistent_cluster_exchange_bench");
  const ExchangeBenchPlan plan = exchange_bench_plan(
      static_cast<int>(hidden), static_cast<int>(batch), static_cast<int>(ctas),
      static_cast<int>(replicas), true);
  TORCH_CHECK(plan.error == nullptr, "persistent_cluster_exchange_bench: ", plan.error);
  const c10::cuda::OptionalCUDAGuard guard(y.device());
  PersistClusterArgs a;
  std::memset(&a, 0, sizeof(a));
  a.part = plan.cluster;
  const int64_t steps = y.size(0) / batch;
  std::vector<Step> st(steps);
  for (int64_t s = 0; s < steps; ++s) st[s] = Step{s * batch, batch, (s - 1) * batch, s > 0 ? batch : 0, 0, 0};
  TORCH_CHECK(encode_schedule(st, y.size(0), false, a.sched), "schedule");
  a.h0 = h0.data_ptr();
  a.y = y.data_ptr();
  a.watchdog_ns = watchdog_ns();
  const int64_t smem = cluster_exchange_smem(a.part);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream().stream();
  const double ms = launch_ms(stream, [&] {
    const cudaError_t err = launch_persist_cluster_exchange(a, static_cast<size_t>(smem), stream);
    if (err == cudaErrorNotSupported) (void)cudaGetLastError();
    TORCH_CHECK(err != cudaErrorNotSupported, "persistent_cluster_exchange_bench: clusters of ",
                a.part.cluster, " CTAs with ", smem, " bytes of shared memory are refused (or "
                "this build has no sm_90 code)");
    C10_CUDA_CHECK(err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return ms * 1e6 / double(steps);
}

}  // namespace

int current_usable_sms() { return usable_sms(current_device_props()); }

bool persistent_enabled() {
  const char* env = std::getenv("RNNFUSE_PERSISTENT");
  return env != nullptr && std::strcmp(env, "1") == 0;
}

DeviceProps current_device_props() { return current_device_info().props; }

bool try_lstm_forward(const LstmForward& f, const std::vector<Step>& steps) {
  return run_forward(Cell::LSTM, fwd_operands(f, steps), f.w_hr.defined());
}

bool try_gru_forward(const GruForward& f, const std::vector<Step>& steps) {
  return run_forward(Cell::GRU, fwd_operands(f, steps), false);
}

bool try_lstm_backward(const LstmBackward& g, const std::vector<Step>& steps) {
  return run_backward(Cell::LSTM, bwd_operands(g, steps), g.w_hr.defined());
}

bool try_gru_backward(const GruBackward& g, const std::vector<Step>& steps) {
  return run_backward(Cell::GRU, bwd_operands(g, steps), false);
}

int try_lstm_bidir_forward(const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  if (f[0].w_hr.defined()) return 0;  // proj_size: per-step
  return run_forward_bidir(Cell::LSTM, fwd_operands(f[0], steps[0]), fwd_operands(f[1], steps[1]));
}

int try_gru_bidir_forward(const GruForward (&f)[2], const std::vector<Step> (&steps)[2]) {
  return run_forward_bidir(Cell::GRU, fwd_operands(f[0], steps[0]), fwd_operands(f[1], steps[1]));
}

int try_lstm_bidir_backward(const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  if (g[0].w_hr.defined()) return 0;
  return run_backward_bidir(Cell::LSTM, bwd_operands(g[0], steps[0]), bwd_operands(g[1], steps[1]));
}

int try_gru_bidir_backward(const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]) {
  return run_backward_bidir(Cell::GRU, bwd_operands(g[0], steps[0]), bwd_operands(g[1], steps[1]));
}

}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CUDA, m) {
  m.impl("recurrence_path", &rnnfuse::persist::recurrence_path_cuda);
  m.impl("persistent_take_trace", [](const at::Tensor&, bool backward) {
    return rnnfuse::persist::take_trace(backward);
  });
  m.impl("persistent_exchange_bench", &rnnfuse::persist::exchange_bench_cuda);
  m.impl("persistent_cluster_exchange_bench", &rnnfuse::persist::cluster_exchange_bench_cuda);
}
