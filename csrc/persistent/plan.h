// The planner: chooses the tier (cluster, grid, per-step) and the partition
// of the persistent recurrence for one layer-direction, from the problem and
// the device's properties. Plain C++ (no ATen, no CUDA), so it compiles
// anywhere and the CPU tests exercise it on fake devices.
#pragma once

#include <cstdint>
#include <string>

#include "cluster_bwd_layout.h"
#include "cluster_layout.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

enum class DType : int { F16 = 0, BF16 = 1, F32 = 2, F64 = 3 };
enum class Tier : int { PerStep = 0, Grid = 1, Cluster = 2 };

const char* tier_name(Tier t);

struct DeviceProps {
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;           // physical SMs
  int sm_available = 0;       // SMs this context may use (MPS, green contexts); 0: all
  int smem_optin = 0;         // bytes of shared memory one block may opt in to
  int smem_per_sm = 0;        // bytes per SM
  int regs_per_sm = 0;        // 32-bit registers per SM
  int regs_per_block = 0;     // per block
  bool cooperative = false;   // cooperative launch supported
  bool clusters = false;      // thread-block clusters (sm_90+)
  // Co-resident clusters of a cluster-tier CTA (one per SM) per the
  // occupancy API, for 8 CTAs (portable) and 16 (non-portable); 0: none
  // (refused, not allowed, or no cluster kernel): that size is not planned.
  int max_active_clusters = 0;
  int max_active_clusters_16 = 0;
};

// Constraints on the partition (RNNFUSE_PERSISTENT_PIN for forward plans,
// RNNFUSE_PERSISTENT_BWD_PIN for backward plans), so a GPU run can time the
// latency model's other candidates: a candidate is planned only where every
// pinned field equals the plan JSON's field of that name (0: free). P is
// CTAs per replica on the grid tier and CTAs per cluster on the cluster
// tier; J units per CTA (cluster tier: per slice); group the cluster tier's
// slices per bracket (a grid plan has no group: a group pin excludes it).
struct Pin {
  int R = 0, J = 0, P = 0;
  int ksplit = 0;  // backward plans only
  int group = 0;   // forward plans only
  // g: the candidate's group (0: a grid-tier candidate, which has none).
  bool admits(int p, int j, int r, int s = 1, int g = 0) const {
    return (R == 0 || R == r) && (J == 0 || J == j) && (P == 0 || P == p) &&
           (ksplit == 0 || ksplit == s) && (group == 0 || group == g);
  }
  std::string text() const;  // "R=2,P=16" (the fields set, in that order); "" when free
};

// Parses "R=2,J=8,P=16" (any subset, any order; ksplit=S for backward
// plans, group=G for forward ones; "" is free) into *pin. Returns "" or why
// the text is not a pin.
std::string parse_pin(const std::string& text, bool backward, Pin* pin);

struct Problem {
  Cell cell = Cell::LSTM;
  DType dtype = DType::BF16;
  bool allow_tf32 = true;   // torch.backends.cudnn.allow_tf32 (fp32 only)
  int hidden = 0;           // H
  int batch = 0;            // B
  int steps = 0;            // T (processing steps)
  int proj_size = 0;        // LSTM proj_size (0: none)
  int packed_runs = 1;      // runs of equal batch size in the schedule
  int directions = 1;       // 2: both directions of a bidirectional layer in one launch
                            // (grid tier: twice the CTAs co-resident; cluster tier:
                            // twice the clusters, co-resident for the model's step)
  bool slice_push = true;   // cluster tier: pipelined push (RNNFUSE_CLUSTER_PUSH=step: off)
  Pin pin;                  // constraints on the partition (none by default)
  // Grid forward: exchange h through LL words (ll_layout.h GridLl) where the
  // partition allows (RNNFUSE_PERSISTENT_EXCHANGE=ll); else y and flags.
  // Grid backward: the gate gradients and a K split's partial sums through
  // LL words where the partition allows (grid_bwd_ll_error); else flags.
  bool ll_exchange = false;
};

// Which kernels the caller may use: the host passes cluster = true only
// when this build has the sm_90 cluster kernels (and RNNFUSE_PERSISTENT_TIER
// does not exclude a tier); the tests switch them freely.
struct Built {
  bool grid = true;
  bool cluster = false;
};

// Register file cost assumed per thread of a persistent CTA: ptxas is held to
// 255 by __launch_bounds__(256, 1) and the CI gate checks it; the planner
// requires a full 256 x 255 register file per CTA to be safe.
constexpr int kRegsPerThread = 255;
// Below this many steps a persistent launch cannot pay for its set-up.
constexpr int kMinSteps = 3;

// The cluster tier's backward step in the latency model (microseconds, all
// [I]): per MMA pass (a chunk of rows) its MMAs at the assumed rate, a
// warp's dependent chain, the W streamed from shared memory; the reduction
// and cell derivatives; the push of the partial sums; the barrier.
struct ClusterBwdModel {
  int passes = 0;
  double mma = 0, chain = 0, w_smem = 0, epilogue = 0, push = 0, barrier = 0, us = 0;
};

struct Plan {
  bool backward = false;    // a plan of the backward kernel (BwdPartition in part)
  Tier tier = Tier::PerStep;
  std::string reason;       // why per-step (empty for a persistent tier)
  Partition part{};         // valid for a persistent tier (the cluster tier: its slices)
  ClusterPartition cpart{}; // valid for the forward's cluster tier
  ClusterBwdPartition cbpart{};  // valid for the backward's cluster tier
  ClusterBwdModel cbmodel{};     // its step's terms (us_per_step is cbmodel.us)
  int elem_bytes = 0;       // 2 (fp16/bf16) or 4 (TF32 or exact fp32)
  bool fma = false;         // exact fp32 (TF32 off): CUDA-core FMAs, grid tier only
  int directions = 1;       // the launch runs this many directions' grids of part.grid()
                            // (cluster tier: of cpart.cluster_grid())
  int hbuf_rows = 0;        // batch rows the shared-memory h buffer holds
  int64_t smem_bytes = 0;   // dynamic shared memory per CTA
  int w_frags = 0;          // A fragments warp 0 keeps in registers
  int ksplit = 1;           // backward: CTAs splitting one unit group's K (BwdPartition)
  bool ll = false;          // grid forward: h exchanged through LL words (ll_layout.h);
                            // grid backward: the gate gradients and a K split's
                            // partial sums
  double us_per_step = 0;   // latency model, microseconds (an estimate)
  std::string pin;          // Pin::text() of the problem's pin ("" when free)
  std::string describe() const;  // one-line JSON
};

// Shared-memory bytes of a grid-tier CTA whose h buffer holds hbuf_rows rows.
int64_t grid_smem_bytes(const Partition& p, int elem_bytes, int hbuf_rows, Cell cell);

// The modelled microseconds per step of a grid-tier partition (see plan.cpp);
// fma: exact fp32 (CUDA-core FMAs instead of TF32 MMAs).
double grid_step_us(const Partition& p, int elem_bytes, int hbuf_rows, const DeviceProps& dev,
                    bool fma = false);

// A cluster-tier step's brackets and the model's terms of one bracket
// (microseconds, all [I]): the group's MMAs at the assumed rate, a warp's
// dependent MMA chain, the W pairs streamed from shared memory, the
// epilogue, the barrier. The model takes the slowest of the first four
// plus the barrier (plan.cpp); the terms are in the plan JSON
// ("brackets", "bracket_us") so that a GPU run can test other readings.
struct ClusterBracket {
  int count = 0;  // brackets per step (every chunk's groups + 1)
  double mma = 0, chain = 0, w_smem = 0, epilogue = 0, barrier = 0;
};
ClusterBracket cluster_bracket(const ClusterPartition& p, int elem_bytes);

// The modelled microseconds per step of a cluster-tier partition.
double cluster_step_us(const ClusterPartition& p, int elem_bytes);

// The best cluster-tier plan, or a per-step plan saying why there is none
// (make_plan compares it with the grid tier's).
Plan make_cluster_plan(const Problem& prob, const DeviceProps& dev);

Plan make_plan(const Problem& prob, const DeviceProps& dev, const Built& built = Built{});

// Shared-memory bytes of a backward CTA (rows of its part of K = G*H, a 16-row
// partial-sum tile).
int64_t bwd_smem_bytes(const BwdPartition& p, int elem_bytes, int hbuf_rows);

// The modelled microseconds per step of a backward partition (K split included).
double bwd_step_us(const BwdPartition& p, int hbuf_rows, int elem_bytes, bool fma);

// The backward kernel's plan: the cluster tier (sm_90; cluster_bwd_layout.h;
// directions = 2: each direction's clusters side by side in one launch)
// where built, fitting, admitted by the pin and modelled no slower than the
// grid tier's, else the grid tier, else per-step.
Plan make_bwd_plan(const Problem& prob, const DeviceProps& dev, const Built& built = Built{});

ClusterBwdModel cluster_bwd_model(const ClusterBwdPartition& p, int elem_bytes);

// The cluster tier's backward alone: the partition (pin admitted) whose
// modelled step is fastest, whatever the grid tier's; make_bwd_plan compares
// it with the grid tier's (rnnfuse::persistent_cluster_bwd_plan shows it).
struct ClusterBwdCandidate {
  bool found = false;
  std::string reason;  // why there is none
  ClusterBwdPartition part{};
  int elem_bytes = 0;
  int directions = 1;
  int64_t smem_bytes = 0;
  ClusterBwdModel model;
  std::string describe() const;  // one-line JSON
};
ClusterBwdCandidate plan_cluster_backward(const Problem& prob, const DeviceProps& dev);

// The backward partition a backward plan carries.
inline BwdPartition bwd_partition(const Plan& plan) {
  BwdPartition p{};
  static_cast<Partition&>(p) = plan.part;
  p.ksplit = plan.ksplit;
  return p;
}

// The exchange microbenchmarks' partitions (persistent_exchange_bench,
// persistent_cluster_exchange_bench; benchmarks/persist_check.py), bf16 rows
// of H. Grid tier: `ctas` CTAs per replica of ceil(H / ctas) units each.
// Cluster tier: clusters of at most `ctas` CTAs running the forward kernel's
// slices (kRows / 4 units: an LSTM slice) in runs, as the cluster kernel
// does. error: why the bench cannot run it (nullptr: it can).
struct ExchangeBenchPlan {
  Partition grid;
  ClusterPartition cluster;
  const char* error;
};
ExchangeBenchPlan exchange_bench_plan(int hidden, int batch, int ctas, int replicas,
                                      bool cluster_tier);
// Its modelled microseconds per step (the model's exchange terms alone), so
// a GPU run of the benches measures them; 0 where the bench refuses it.
double exchange_model_us(const ExchangeBenchPlan& b, bool cluster_tier);

}  // namespace persist
}  // namespace rnnfuse
