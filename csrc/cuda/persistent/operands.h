// The persistent tier's host arguments from the driver's tensors: one
// direction's operands, each kernel's parameters, and a launch's (both
// directions' parameters, flags and partial sums laid out as the kernels
// read them). ATen only, no CUDA runtime calls: the CUDA launches
// (loops_persistent.cpp) and their host execution on the CPU (simt_run.cpp)
// build their parameters with the same code.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "../../persistent/plan.h"
#include "../../recurrence.h"
#include "args.h"

namespace rnnfuse {
namespace persist {

// A flag or mbarrier wait longer than this traps (a loud launch failure, not
// a hang). RNNFUSE_PERSISTENT_WATCHDOG_S overrides the default of 20 s.
uint64_t watchdog_ns();

// RNNFUSE_PERSISTENT_EXCHANGE: "ll" asks the grid forward to exchange h
// through LL words (ll_layout.h GridLl); "flags" (unset: the default) through
// y and a flag per CTA. Anything else is an error.
bool ll_exchange_requested();

// RNNFUSE_PERSISTENT_FLAG_STRIDE: 1 (unset: the default) packs the grid
// tier's step flags (forward, backward, the exchange bench) 4 bytes apart,
// so 32 CTAs' flags share a 128-byte line that every CTA of the replica
// polls; 32 gives each flag its own line. Anything else is an error.
int flag_stride_from_env();

bool aligned16(const at::Tensor& t);
bool unit_columns(const at::Tensor& t);

// Processing order runs rows upwards forwards and downwards in reverse.
bool is_reverse(const std::vector<Step>& steps);

// One direction's forward operands (driver's tensors: rows with unit
// column stride, a bidirectional layer's directions column blocks).
struct FwdOperands {
  const at::Tensor& x_proj;
  const at::Tensor& w_hh;
  const at::Tensor& b_hh;
  const at::Tensor& h0;
  const at::Tensor& y;
  const at::Tensor& c_state;
  const at::Tensor& ws;
  const std::vector<Step>& steps;
};

// One direction's backward operands (as FwdOperands).
struct BwdOperands {
  const at::Tensor& grad_y;
  const at::Tensor& w_hh;
  const at::Tensor& dh_state;
  const at::Tensor& dc_state;
  const at::Tensor& ws;
  const at::Tensor& c0;
  const at::Tensor& h0;
  const at::Tensor& y;
  const at::Tensor& xch;
  const at::Tensor& dx;
  const std::vector<Step>& steps;
};

// The driver's time-loop arguments as operands.
FwdOperands fwd_operands(const LstmForward& f, const std::vector<Step>& steps);
FwdOperands fwd_operands(const GruForward& f, const std::vector<Step>& steps);
BwdOperands bwd_operands(const LstmBackward& g, const std::vector<Step>& steps);
BwdOperands bwd_operands(const GruBackward& g, const std::vector<Step>& steps);

// One direction's kernel parameters; false when its schedule cannot be encoded.
// flag_stride: as PersistArgs (flag_stride_from_env, read once per launch).
bool forward_args(const Plan& plan, const FwdOperands& o, unsigned* flags, int flag_stride,
                  PersistArgs& a);

// One direction's cluster-tier parameters; false where its layout or walk
// does not fit the cluster kernel (rows of x_proj and y through row strides,
// everything else contiguous).
bool cluster_args(const Plan& plan, const FwdOperands& o, PersistClusterArgs& a);

// flags: this direction's step flags, then (K split, no LL) its chunk
// counts; partials: its partial-sum slots, or ll_partials: its LL words
// (null without a split; one of the two with it).
bool backward_args(const Plan& plan, const BwdOperands& o, unsigned* flags, int flag_stride,
                   float* partials, uint64_t* ll_partials, PersistBwdArgs& a);

// One direction's cluster backward parameters (cluster_bwd_layout.h's
// partition p); false when its walk cannot be encoded.
bool cluster_backward_args(const ClusterBwdPartition& p, const BwdOperands& o,
                           PersistClusterBwdArgs& a);

// A cluster backward launch of the partition (units, replicas) for `n`
// directions' operands (1, or 2 of a bidirectional layer: the same
// partition, each direction its own clusters; fp16, bf16 or fp32 as TF32):
// the partition checked, the parameters built; a clear error where it
// cannot run.
PersistClusterBwdLaunch cluster_backward_launch(Cell cell, int64_t units, int64_t replicas,
                                                int64_t elem_bytes, const BwdOperands* const* dirs,
                                                int n);

// A grid-tier launch's buffers, on `like`'s device: per direction its LL
// words (a forward plan with ll, zeroed: tag 0 is no step's) or its step
// flags (zeroed on the stream: a memset node under graph capture); a
// backward with K split also its chunk counts (zeroed) and partial sums
// (never read before written), or with ll its partial sums as LL words
// (zeroed) beside the step flags. The caller keeps them until the launch is
// enqueued.
struct LaunchBuffers {
  at::Tensor flags, partials;
  at::Tensor ll;  // plan.ll: per direction its LL words (forward: h; backward: the
                  // K split's partial sums), zeroed
  at::Tensor trace;  // a traced launch (RNNFUSE_PERSISTENT_TRACE_CTA): args.h kTraceHeader
};

// RNNFUSE_PERSISTENT_TRACE_CTA=q: grid-tier launches (forward and backward)
// trace CTA q of their first direction (args.h kTraceHeader); unset: -1, no
// trace. The last traced launch's buffer of each pass is kept (keep_trace)
// until rnnfuse::persistent_take_trace takes it (take_trace: raises when
// there is none).
int trace_cta();
void keep_trace(const at::Tensor& trace, bool backward);
at::Tensor take_trace(bool backward);

// A grid-tier forward launch of `n` directions (1, or 2 of a bidirectional
// layer); false when a schedule cannot be encoded.
bool forward_launch_args(const Plan& plan, const FwdOperands* const* dirs, int n,
                         LaunchBuffers& buffers, PersistFwdLaunch& launch);

// The backward launch of `n` directions (as forward_launch_args).
bool backward_launch_args(const Plan& plan, const BwdOperands* const* dirs, int n,
                          LaunchBuffers& buffers, PersistBwdLaunch& launch);

}  // namespace persist
}  // namespace rnnfuse
