// The persistent tier's host arguments (operands.h).
#include "operands.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "../../persistent/schedule_rle.h"

namespace rnnfuse {
namespace persist {
namespace {

const at::Tensor& no_tensor() {
  static const at::Tensor none;
  return none;
}

// One direction's operand pointers and row strides, into either tier's
// parameters (PersistArgs, PersistClusterArgs: the same fields).
template <typename Args>
void set_operands(const FwdOperands& o, Args& a) {
  a.x_proj = o.x_proj.data_ptr();
  a.w_hh = o.w_hh.data_ptr();
  a.b_hh = o.b_hh.defined() ? o.b_hh.data_ptr() : nullptr;
  a.h0 = o.h0.data_ptr();
  a.y = o.y.data_ptr();
  a.c_state = o.c_state.defined() ? o.c_state.data_ptr<float>() : nullptr;
  a.ws = o.ws.defined() ? o.ws.data_ptr() : nullptr;
  a.ld_x = o.x_proj.stride(0);
  a.ld_y = o.y.stride(0);
}

}  // namespace

uint64_t watchdog_ns() {
  const char* env = std::getenv("RNNFUSE_PERSISTENT_WATCHDOG_S");
  double s = env != nullptr ? std::atof(env) : 20.0;
  if (!(s > 0)) s = 20.0;
  return static_cast<uint64_t>(s * 1e9);
}

bool ll_exchange_requested() {
  const char* env = std::getenv("RNNFUSE_PERSISTENT_EXCHANGE");
  const std::string mode = env != nullptr ? env : "";
  TORCH_CHECK(mode.empty() || mode == "flags" || mode == "ll",
              "RNNFUSE_PERSISTENT_EXCHANGE must be 'flags' or 'll', got '", mode, "'");
  return mode == "ll";
}

int flag_stride_from_env() {
  const char* env = std::getenv("RNNFUSE_PERSISTENT_FLAG_STRIDE");
  const std::string v = env != nullptr ? env : "";
  TORCH_CHECK(v.empty() || v == "1" || v == "32",
              "RNNFUSE_PERSISTENT_FLAG_STRIDE must be 1 or 32, got '", v, "'");
  return v == "32" ? 32 : 1;
}

int trace_cta() {
  const char* env = std::getenv("RNNFUSE_PERSISTENT_TRACE_CTA");
  if (env == nullptr || *env == '\0') return -1;
  char* end = nullptr;
  const long q = std::strtol(env, &end, 10);
  TORCH_CHECK(*end == '\0' && q >= 0 && q < (1 << 20),
              "RNNFUSE_PERSISTENT_TRACE_CTA must be a CTA index (0, 1, ...), got '", env, "'");
  return static_cast<int>(q);
}

namespace {
std::mutex g_trace_mu;
at::Tensor g_last_trace[2];  // [backward]: the forward's and the backward's
}  // namespace

void keep_trace(const at::Tensor& trace, bool backward) {
  if (!trace.defined()) return;
  const std::lock_guard<std::mutex> lock(g_trace_mu);
  g_last_trace[backward] = trace;
}

at::Tensor take_trace(bool backward) {
  const std::lock_guard<std::mutex> lock(g_trace_mu);
  const char* pass = backward ? "backward" : "forward";
  TORCH_CHECK(g_last_trace[backward].defined(), "rnnfuse: no traced persistent ", pass,
              " since the last trace taken (set RNNFUSE_PERSISTENT_TRACE_CTA before a grid-tier ",
              pass, ")");
  at::Tensor t = g_last_trace[backward];
  g_last_trace[backward] = at::Tensor();
  return t;
}

namespace {
// RNNFUSE_PERSISTENT_TRACE_CTA read once per launch: the buffer of the traced
// CTA of the first direction (args.h kTraceHeader, `phases` slots a step)
// into `buffers`, its address and the CTA into that direction's arguments
// (PersistArgs or PersistBwdArgs); nothing when unset.
template <typename Args>
void trace_launch(int grid, int64_t steps, int phases, const at::TensorOptions& like,
                  LaunchBuffers& buffers, Args& first) {
  const int traced = trace_cta();
  if (traced < 0) return;
  TORCH_CHECK(traced < grid, "RNNFUSE_PERSISTENT_TRACE_CTA=", traced, ": the launch has ", grid,
              " CTAs per direction");
  buffers.trace = at::zeros({kTraceHeader + steps * phases}, like.dtype(at::kLong));
  first.trace = reinterpret_cast<long long*>(buffers.trace.data_ptr<int64_t>());
  first.trace_cta = traced;
}
}  // namespace

bool aligned16(const at::Tensor& t) {
  return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

bool unit_columns(const at::Tensor& t) { return t.dim() == 2 && t.stride(1) == 1; }

bool is_reverse(const std::vector<Step>& steps) {
  return steps.size() > 1 && steps[1].row0 < steps[0].row0;
}

FwdOperands fwd_operands(const LstmForward& f, const std::vector<Step>& steps) {
  return FwdOperands{f.x_proj, f.w_hh, no_tensor(), f.h0, f.y, f.c_state, f.ws, steps};
}

FwdOperands fwd_operands(const GruForward& f, const std::vector<Step>& steps) {
  return FwdOperands{f.x_proj, f.w_hh, f.b_hh, f.h0, f.y, no_tensor(), f.ws, steps};
}

BwdOperands bwd_operands(const LstmBackward& g, const std::vector<Step>& steps) {
  const at::Tensor& none = no_tensor();
  return BwdOperands{g.grad_y, g.w_hh, g.dh_state, g.dc_state, g.ws, g.c0, none, none,
                     g.dgates, none, steps};
}

BwdOperands bwd_operands(const GruBackward& g, const std::vector<Step>& steps) {
  const at::Tensor& none = no_tensor();
  return BwdOperands{g.grad_y, g.w_hh, g.dh_state, none, g.ws, none, g.h0, g.y, g.dhh, g.dx,
                     steps};
}

bool forward_args(const Plan& plan, const FwdOperands& o, unsigned* flags, int flag_stride,
                  PersistArgs& a) {
  TORCH_CHECK(unit_columns(o.x_proj) && unit_columns(o.y) && o.w_hh.is_contiguous() &&
                  o.h0.is_contiguous() && (!o.ws.defined() || o.ws.is_contiguous()) &&
                  (!o.c_state.defined() || o.c_state.is_contiguous()) &&
                  (!o.b_hh.defined() || o.b_hh.is_contiguous()),
              "rnnfuse persistent: the driver must pass rows of unit column stride and "
              "contiguous weights, states and workspace");
  TORCH_CHECK(o.y.scalar_type() == o.x_proj.scalar_type() &&
                  o.w_hh.scalar_type() == o.x_proj.scalar_type(),
              "rnnfuse persistent: mixed dtypes");
  std::memset(&a, 0, sizeof(a));
  if (!encode_schedule(o.steps, o.y.size(0), is_reverse(o.steps), a.sched)) return false;
  a.part = plan.part;
  set_operands(o, a);
  a.hbuf_rows = plan.hbuf_rows;
  const int64_t eb = plan.elem_bytes;
  a.vec16 = (o.h0.size(1) * eb) % 16 == 0 && (a.ld_y * eb) % 16 == 0 && aligned16(o.y) &&
            aligned16(o.h0);
  a.watchdog_ns = watchdog_ns();
  a.flags = flags;
  a.flag_stride = flag_stride;
  return true;
}

bool cluster_args(const Plan& plan, const FwdOperands& o, PersistClusterArgs& a) {
  const bool layout = unit_columns(o.x_proj) && unit_columns(o.y) && o.w_hh.is_contiguous() &&
                      o.h0.is_contiguous() && (!o.ws.defined() || o.ws.is_contiguous()) &&
                      (!o.c_state.defined() || o.c_state.is_contiguous());
  if (!layout) return false;
  std::memset(&a, 0, sizeof(a));
  if (!encode_schedule(o.steps, o.y.size(0), is_reverse(o.steps), a.sched)) return false;
  a.part = plan.cpart;
  set_operands(o, a);
  a.x_async = (o.h0.size(1) * plan.elem_bytes) % 4 == 0 && (a.ld_x * plan.elem_bytes) % 4 == 0 &&
              reinterpret_cast<uintptr_t>(o.x_proj.data_ptr()) % 4 == 0;
  a.watchdog_ns = watchdog_ns();
  return true;
}

namespace {
// The operands both backward kernels take (PersistBwdArgs and
// PersistClusterBwdArgs share these fields); false when the backward walk
// cannot be encoded.
template <typename Args>
bool bwd_operand_args(const BwdOperands& o, Args& a) {
  TORCH_CHECK(unit_columns(o.grad_y) && unit_columns(o.xch) &&
                  (!o.y.defined() || unit_columns(o.y)) && (!o.dx.defined() || unit_columns(o.dx)) &&
                  o.w_hh.is_contiguous() && o.ws.is_contiguous() && o.dh_state.is_contiguous() &&
                  (!o.dc_state.defined() || o.dc_state.is_contiguous()) &&
                  (!o.c0.defined() || o.c0.is_contiguous()) &&
                  (!o.h0.defined() || o.h0.is_contiguous()) &&
                  o.dh_state.scalar_type() == at::kFloat &&
                  o.ws.scalar_type() == o.grad_y.scalar_type(),
              "rnnfuse persistent backward: the driver must pass rows of unit column stride, "
              "contiguous weights and workspace, fp32 states and the workspace in grad_y's dtype");
  const auto same = [&](const at::Tensor& t) {
    return !t.defined() || t.scalar_type() == o.grad_y.scalar_type();
  };
  TORCH_CHECK(same(o.w_hh) && same(o.xch) && same(o.dx) && same(o.y) && same(o.h0) && same(o.c0),
              "rnnfuse persistent backward: mixed dtypes");
  // The backward walks the forward's steps in reverse order.
  const std::vector<Step> walk(o.steps.rbegin(), o.steps.rend());
  if (!encode_schedule(walk, o.grad_y.size(0), !is_reverse(o.steps), a.sched)) return false;
  a.w_hh = o.w_hh.data_ptr();
  a.grad_y = o.grad_y.data_ptr();
  a.dh_state = o.dh_state.data_ptr<float>();
  a.dc_state = o.dc_state.defined() ? o.dc_state.data_ptr<float>() : nullptr;
  a.ws = o.ws.data_ptr();
  a.c0 = o.c0.defined() ? o.c0.data_ptr() : nullptr;
  a.h0 = o.h0.defined() ? o.h0.data_ptr() : nullptr;
  a.y = o.y.defined() ? o.y.data_ptr() : nullptr;
  a.xch = o.xch.data_ptr();
  a.dx = o.dx.defined() ? o.dx.data_ptr() : nullptr;
  a.ld_grad_y = o.grad_y.stride(0);
  a.ld_y = o.y.defined() ? o.y.stride(0) : 0;
  a.ld_xch = o.xch.stride(0);
  a.ld_dx = o.dx.defined() ? o.dx.stride(0) : 0;
  a.watchdog_ns = watchdog_ns();
  return true;
}
}  // namespace

bool cluster_backward_args(const ClusterBwdPartition& p, const BwdOperands& o,
                           PersistClusterBwdArgs& a) {
  std::memset(&a, 0, sizeof(a));
  a.part = p;
  return bwd_operand_args(o, a);
}

PersistClusterBwdLaunch cluster_backward_launch(Cell cell, int64_t units, int64_t replicas,
                                                int64_t elem_bytes, const BwdOperands* const* dirs,
                                                int n) {
  const BwdOperands& o = *dirs[0];
  const at::ScalarType t = o.grad_y.scalar_type();
  TORCH_CHECK(t == at::kHalf || t == at::kBFloat16 || t == at::kFloat,
              "rnnfuse: the cluster backward kernel takes fp16, bf16 or fp32 (TF32), got ", t);
  TORCH_CHECK(elem_bytes == (t == at::kFloat ? 4 : 2), "rnnfuse: elem_bytes ", elem_bytes,
              " does not match dtype ", t);
  TORCH_CHECK(units > 0 && replicas > 0, "rnnfuse: units and replicas must be positive");
  TORCH_CHECK(n == 1 || n == 2, "rnnfuse: a cluster backward launch runs 1 or 2 directions");
  const ClusterBwdPartition p =
      make_cluster_bwd_partition(gates_of(cell), int(o.grad_y.size(1)), int(o.dh_state.size(0)),
                                 int(units), int(replicas), int(elem_bytes));
  const char* bad = cluster_bwd_partition_error(p);
  TORCH_CHECK(bad == nullptr, "rnnfuse: the cluster backward cannot run this partition: ",
              bad == nullptr ? "" : bad);
  PersistClusterBwdLaunch launch;
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    TORCH_CHECK(cluster_backward_args(p, *dirs[d], launch.dir[d]),
                "rnnfuse: the cluster backward cannot encode this schedule");
  }
  return launch;
}

bool backward_args(const Plan& plan, const BwdOperands& o, unsigned* flags, int flag_stride,
                   float* partials, uint64_t* ll_partials, PersistBwdArgs& a) {
  std::memset(&a, 0, sizeof(a));
  a.part = bwd_partition(plan);
  if (!bwd_operand_args(o, a)) return false;
  a.flag_stride = flag_stride;
  a.hbuf_rows = plan.hbuf_rows;
  const int64_t eb = plan.elem_bytes;
  // A K-split part starts at a multiple of 32 bytes: aligned where the row is.
  a.vec16 = (a.part.k_width() * eb) % 16 == 0 && (a.ld_xch * eb) % 16 == 0 && aligned16(o.xch);
  a.flags = flags;
  if (a.part.ksplit > 1 && ll_partials != nullptr) {
    a.ll_partials = ll_partials;  // its slots: set with ll_xch (backward_launch_args)
  } else if (a.part.ksplit > 1) {
    a.pflags = flags + a.part.grid() * a.flag_stride;
    a.partials = partials;
  }
  return true;
}

bool forward_launch_args(const Plan& plan, const FwdOperands* const* dirs, int n,
                         LaunchBuffers& buffers, PersistFwdLaunch& launch) {
  const int grid = plan.part.grid();
  const at::TensorOptions like = dirs[0]->x_proj.options();
  const GridLl ll = make_grid_ll(plan.part, plan.elem_bytes);
  TORCH_CHECK(!plan.ll || grid_ll_error(plan.part) == nullptr,
              "rnnfuse persistent: an LL exchange plan for a partition that cannot take one");
  const int stride = flag_stride_from_env();  // once: every direction's flags alike
  if (plan.ll) {
    buffers.ll = at::zeros({n * ll.words()}, like.dtype(at::kLong));
  } else {
    buffers.flags = at::zeros({n * grid * stride}, like.dtype(at::kInt));
  }
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    unsigned* f = plan.ll ? nullptr
                          : reinterpret_cast<unsigned*>(buffers.flags.data_ptr<int>()) +
                                d * grid * stride;
    if (!forward_args(plan, *dirs[d], f, stride, launch.dir[d])) return false;
    if (plan.ll) {
      PersistArgs& a = launch.dir[d];
      a.ll = reinterpret_cast<uint64_t*>(buffers.ll.data_ptr<int64_t>()) + d * ll.words();
      a.ll_layout = ll;
      a.ll_parity_mask = 1;
    }
  }
  trace_launch(grid, static_cast<int64_t>(dirs[0]->steps.size()), kTracePhases, like, buffers,
               launch.dir[0]);
  return true;
}

bool backward_launch_args(const Plan& plan, const BwdOperands* const* dirs, int n,
                          LaunchBuffers& buffers, PersistBwdLaunch& launch) {
  const int grid = plan.part.grid();
  const bool split = plan.ksplit > 1;
  const BwdPartition part = bwd_partition(plan);
  TORCH_CHECK(!plan.ll || grid_bwd_ll_error(part) == nullptr,
              "rnnfuse persistent: an LL backward plan for a partition that cannot take one");
  // K split: each CTA also publishes its partial sums, and chunk counts (4
  // bytes apart, after the step flags) or, with LL, a tag in each word.
  const int stride = flag_stride_from_env();  // once: every direction's flags alike
  const int flags_per_dir = plan.ll ? 0 : grid * stride + (split ? grid : 0);  // LL: no flags
  const int64_t partials_per_dir = split ? int64_t(grid) * part.partial_floats() : 0;
  // LL: per direction the gate gradients' words, then the partial sums'.
  const GridLl ll = make_grid_ll_bwd(part, plan.elem_bytes);
  const int64_t ll_per_dir = plan.ll ? ll.words() + partials_per_dir : 0;
  const at::TensorOptions like = dirs[0]->grad_y.options();
  if (plan.ll) {
    buffers.ll = at::zeros({n * ll_per_dir}, like.dtype(at::kLong));  // tag 0: no step's
  } else {
    buffers.flags = at::zeros({n * flags_per_dir}, like.dtype(at::kInt));
    if (split) buffers.partials = at::empty({n * partials_per_dir}, like.dtype(at::kFloat));
  }
  std::memset(&launch, 0, sizeof(launch));
  launch.directions = n;
  for (int d = 0; d < n; ++d) {
    unsigned* f = plan.ll ? nullptr
                          : reinterpret_cast<unsigned*>(buffers.flags.data_ptr<int>()) +
                                d * flags_per_dir;
    float* part_sums = buffers.partials.defined()
                           ? buffers.partials.data_ptr<float>() + d * partials_per_dir
                           : nullptr;
    uint64_t* words =
        plan.ll ? reinterpret_cast<uint64_t*>(buffers.ll.data_ptr<int64_t>()) + d * ll_per_dir
                : nullptr;
    uint64_t* sum_words = words != nullptr && split ? words + ll.words() : nullptr;
    if (!backward_args(plan, *dirs[d], f, stride, part_sums, sum_words, launch.dir[d])) {
      return false;
    }
    if (plan.ll) {
      PersistBwdArgs& a = launch.dir[d];
      a.ll_xch = words;
      a.ll_layout = ll;
      a.ll_parity_mask = 1;
      a.ll_slots = kPartialSlots;
    }
  }
  trace_launch(grid, static_cast<int64_t>(dirs[0]->steps.size()), kBwdTracePhases, like, buffers,
               launch.dir[0]);
  return true;
}

}  // namespace persist
}  // namespace rnnfuse
