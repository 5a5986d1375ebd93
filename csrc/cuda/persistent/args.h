// The persistent forward kernel's parameters and its launchers (one per
// operand type, defined in persist_<type>.cu). Plain CUDA types only: the
// kernel translation units include no ATen, so CI can also compile them
// standalone in seconds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "../../persistent/cluster_bwd_layout.h"
#include "../../persistent/cluster_layout.h"
#include "../../persistent/layout.h"
#include "../../persistent/ll_layout.h"

namespace rnnfuse {
namespace persist {

// F32: fp32 with TF32 off, exact CUDA-core FMAs (grid tier only; the cluster
// tier's entry points answer cudaErrorNotSupported).
enum class ElemKind : int { F16 = 0, BF16 = 1, TF32 = 2, F32 = 3 };

// A grid launch's step trace (RNNFUSE_PERSISTENT_TRACE_CTA; PersistArgs and
// PersistBwdArgs trace): thread 0 of one CTA of the first direction stamps
// its SM's cycle counter (clock64) at each phase of each step it processes,
// so that a GPU run can say where a step's time goes (the exchange's wait,
// the gather, the MMAs, the epilogue, the publication) without a profiler's
// replays. int64 slots: [0] globaltimer ns and [1] clock64 at the CTA's
// start, [2] and [3] at its end (their ratio converts cycles to ns), then
// per step s slots kTraceHeader + s * phases + phase (phases: kTracePhases,
// the backward's kBwdTracePhases); a step the CTA skips (no rows of its
// replica) stays 0.
constexpr int kTraceHeader = 4;
enum TracePhase : int {
  kTraceStart = 0,     // the step begins (before its operand loads)
  kTraceWaited = 1,    // the flags' wait is over (LL: nothing waited yet)
  kTraceGathered = 2,  // h_{t-1}'s first rows are in shared memory (barrier passed)
  kTraceMma = 3,       // the first chunk's MMAs are summed (barrier passed)
  kTraceEpilogue = 4,  // the last chunk's epilogue is stored (barrier passed)
  kTracePublished = 5, // the flag released (LL: the same as the epilogue)
  kTracePhases = 6
};
// The backward's trace (PersistBwdArgs trace; the same header, then per step
// kBwdTracePhases slots): the forward's phases with one more, the K split's
// exchange of partial sums between the MMAs and the epilogue.
enum BwdTracePhase : int {
  kBwdTraceStart = 0,     // the step begins (before its operand loads)
  kBwdTraceWaited = 1,    // the flags' wait is over
  kBwdTraceGathered = 2,  // the gate gradients' first rows are in shared memory
  kBwdTraceMma = 3,       // the first chunk's MMAs are summed (barrier passed)
  kBwdTraceParts = 4,     // K split: the first chunk's sums published, the other
                          // parts' waited for (barrier passed); no split: as
                          // mma; LL partial sums: this part's words stored (its
                          // polls of the others' fall in the epilogue)
  kBwdTraceEpilogue = 5,  // the last chunk's epilogue is stored (barrier passed)
  kBwdTracePublished = 6, // the flag released
  kBwdTracePhases = 7
};

struct PersistArgs {
  Partition part;       // planner's partition (layout.h)
  Schedule sched;       // steps in processing order, run-length encoded
  const void* x_proj;   // (N, G*H) elem: input projections (LSTM: both biases)
  const void* w_hh;     // (G*H, H) elem
  const void* b_hh;     // (G*H) elem or null (GRU only)
  const void* h0;       // (B, H) elem
  void* y;              // (N, H) elem: outputs, and the exchange buffer
  float* c_state;       // (B, H) LSTM: c0 on entry, c at each row's last step on exit
  void* ws;             // (N, 5H) LSTM / (N, 4H) GRU elem, or null (not training)
  unsigned* flags;      // (grid x flag_stride) zeroed: steps each CTA has published
  int flag_stride;      // CTA q's flag is flags[q * flag_stride] (flag_stride_from_env)
  // The exchange with the flag in the data (ll_layout.h GridLl), or null:
  // y and the flags above. Zeroed before the launch (tag 0: never written).
  uint64_t* ll;
  GridLl ll_layout;
  int ll_parity_mask;   // 1; 0 (a fiber test's fault) puts both steps in one buffer
  long long* trace;     // null, or the step trace of CTA trace_cta (kTraceHeader)
  int trace_cta;
  int hbuf_rows;        // batch rows of the shared-memory h buffer
  int vec16;            // 1: y and h0 rows are 16-byte aligned (16-byte gathers)
  uint64_t watchdog_ns; // a flag wait longer than this traps (0: never)
  // Row strides (elements) of x_proj and y: G*H and H for one direction; a
  // bidirectional layer's directions are column blocks of one (N, 2*G*H)
  // projection and one (N, 2*H) output (2*G*H and 2*H).
  int64_t ld_x, ld_y;
};

// What one forward launch runs: one layer-direction, or both directions of
// a bidirectional layer at once (directions = 2: CTAs [d * grid, (d + 1) *
// grid) run dir[d]; the same partition, their own operands, walk and flags).
struct PersistFwdLaunch {
  PersistArgs dir[2];
  int directions;
};

// The operands both backward kernels (grid and cluster tier) read and write.
struct BwdOperandArgs {
  const void* w_hh;     // (G*H, H) elem
  const void* grad_y;   // (N, H) elem
  float* dh_state;      // (B, H): grad_h_n on entry
  float* dc_state;      // (B, H) LSTM: grad_c_n on entry
  const void* ws;       // (N, 5H) LSTM / (N, 4H) GRU elem, from the forward
  const void* c0;       // (B, H) elem, LSTM
  const void* h0;       // (B, H) elem, GRU
  const void* y;        // (N, H) elem, GRU (h_{t-1})
  void* xch;            // gate gradients: LSTM dgates (N, 4H), GRU dhh (N, 3H)
  void* dx;             // (N, 3H) elem, GRU
  uint64_t watchdog_ns; // a flag or mbarrier wait longer than this traps (0: never)
  // Row strides (elements): H, H, G*H, 3H for one direction; a bidirectional
  // layer's grad_y, y, LSTM dgates (xch) and GRU dx are column blocks (2H, 2H,
  // 2*G*H, 6H); GRU's dhh (xch) stays its own (3H).
  int64_t ld_grad_y, ld_y, ld_xch, ld_dx;
};

// The backward kernel's parameters: one layer-direction's reverse walk; the
// gate gradients are exchanged through xch.
struct PersistBwdArgs : BwdOperandArgs {
  BwdPartition part;    // units per CTA and replicas (layout.h)
  Schedule sched;       // the backward walk (the forward's steps reversed)
  unsigned* flags;      // (grid x flag_stride) zeroed
  int flag_stride;      // as PersistArgs
  // K split (part.ksplit > 1), else null: each CTA's partial sums
  // (grid x part.partial_floats()) and its chunk counts (grid, zeroed).
  float* partials;
  unsigned* pflags;
  // Or, K split with the LL exchange (else null; partials and pflags then
  // null): each CTA's partial sums as LL words (grid x part.partial_floats(),
  // zeroed), a float and the tag partial_publish_value(chunk) in one 8-byte
  // word, in slot chunk % ll_slots (2, set with ll_xch; 1 is a fiber test's
  // fault).
  uint64_t* ll_partials;
  int ll_slots;
  // The gate gradients through LL words (ll_layout.h make_grid_ll_bwd), or
  // null: xch and the step flags. Zeroed before the launch. xch is written
  // either way (the weight gradient's GEMM reads it after the loop).
  uint64_t* ll_xch;
  GridLl ll_layout;
  int ll_parity_mask;   // 1; 0 (a fiber test's fault) puts both steps in one buffer
  long long* trace;     // null, or the step trace of CTA trace_cta (BwdTracePhase)
  int trace_cta;
  int hbuf_rows;
  int vec16;            // 1: xch rows 16-byte aligned (16-byte gathers)
};

// One backward launch: one layer-direction or both (as PersistFwdLaunch).
struct PersistBwdLaunch {
  PersistBwdArgs dir[2];
  int directions;
};

// Launch the backward kernel cooperatively (as launch_persist_fwd).
cudaError_t launch_persist_bwd(ElemKind kind, Cell cell, const PersistBwdLaunch& a, size_t smem,
                               int sms, cudaStream_t stream);
cudaError_t persist_bwd_blocks_per_sm(ElemKind kind, Cell cell, size_t smem, int* blocks);

// Launch the forward kernel cooperatively on `stream` (directions x
// part.grid() CTAs). Returns cudaErrorCooperativeLaunchTooLarge (launching
// nothing) when the grid cannot be co-resident on `sms` SMs at this
// shared-memory size; any other error is the launch's own.
cudaError_t launch_persist_fwd(ElemKind kind, Cell cell, const PersistFwdLaunch& a, size_t smem,
                               int sms, cudaStream_t stream);
// CTAs of the forward kernel one SM holds at this shared-memory size.
cudaError_t persist_fwd_blocks_per_sm(ElemKind kind, Cell cell, size_t smem, int* blocks);

// The cluster tier's parameters (sm_90): one cluster per batch replica.
struct PersistClusterArgs {
  ClusterPartition part;  // slices, cluster size, buffers (cluster_layout.h)
  Schedule sched;
  const void* x_proj;     // (N, G*H) elem
  const void* w_hh;       // (G*H, H) elem
  const void* b_hh;       // (G*H) elem or null (GRU only)
  const void* h0;         // (B, H) elem
  void* y;                // (N, H) elem: outputs only (no exchange through global memory)
  float* c_state;         // (B, H) LSTM: c0 on entry, each row's last c on exit
  void* ws;               // (N, 5H) LSTM / (N, 4H) GRU elem, or null: as the grid tier writes it
  int x_async;            // 1: every x_proj row segment is whole, aligned 4-byte words (cp.async)
  uint64_t watchdog_ns;   // an mbarrier wait longer than this traps (0: never)
  int64_t ld_x, ld_y;     // row strides of x_proj and y (PersistArgs's)
};

// One cluster-tier launch: one layer-direction, or both directions of a
// bidirectional layer (directions = 2: clusters [d * replicas, (d + 1) *
// replicas) run dir[d], ClusterPartition::cluster_direction; the same
// partition, their own operands and walk).
struct PersistClusterLaunch {
  PersistClusterArgs dir[2];
  int directions;
};

// The cluster tier's backward parameters (sm_90; cluster_bwd_layout.h): one
// cluster per batch replica; no flags, no gathers (partial sums travel
// through DSMEM; xch is an output only).
struct PersistClusterBwdArgs : BwdOperandArgs {
  ClusterBwdPartition part;
  Schedule sched;       // the backward walk (the forward's steps reversed)
};

// One cluster backward launch (as PersistClusterLaunch).
struct PersistClusterBwdLaunch {
  PersistClusterBwdArgs dir[2];
  int directions;
};

// Kernel parameters are passed by value: at most 32764 bytes (CUDA >= 12.1
// on Volta and later; the schedules make them ~4.5 KB, past the older 4 KB).
static_assert(sizeof(PersistFwdLaunch) <= 32764 && sizeof(PersistBwdLaunch) <= 32764 &&
                  sizeof(PersistClusterLaunch) <= 32764 && sizeof(PersistArgs) <= 32764 &&
                  sizeof(PersistClusterBwdLaunch) <= 32764,
              "a persistent kernel's parameters exceed the 32764-byte limit");

// Lets `kernel` take up to the device's opt-in dynamic shared memory. The
// attribute is per kernel and process-wide: set to each launch's own size,
// another host thread launching the same kernel with a larger size between
// our set and its launch would fail. A higher limit changes nothing else
// (occupancy and the launch use the size they are given).
template <typename Kernel>
cudaError_t allow_optin_smem(Kernel kernel) {
  int device = 0, optin = 0;
  cudaError_t err = cudaGetDevice(&device);
  if (err != cudaSuccess) return err;
  err = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return err;
  cudaFuncAttributes fa{};
  err = cudaFuncGetAttributes(&fa, kernel);
  if (err != cudaSuccess) return err;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                              optin - static_cast<int>(fa.sharedSizeBytes));
}

// A launch configuration of `kernel` (a cluster kernel: the tier's or its
// exchange bench) for clusters of `cluster` CTAs: its attributes set (the
// opt-in shared memory; the non-portable size past 8 CTAs), one cluster in
// cfg (cfg.attrs points at `attr`) and *active, the co-resident clusters
// the occupancy API allows. cudaErrorNotSupported: this build has no sm_90
// code for the kernel (PTX of older targets is a stub).
template <typename Args>
cudaError_t prepare_cluster_launch(void (*kernel)(const Args), int cluster, size_t smem,
                                   cudaLaunchConfig_t& cfg, cudaLaunchAttribute& attr,
                                   int* active) {
  *active = 0;
  cudaFuncAttributes fa{};
  cudaError_t err = cudaFuncGetAttributes(&fa, kernel);
  if (err != cudaSuccess) return err;
  if (fa.binaryVersion < 90 || fa.ptxVersion < 90) return cudaErrorNotSupported;
  err = allow_optin_smem(kernel);
  if (err != cudaSuccess) return err;
  if (cluster > kPortableClusterCtas) {
    err = cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
    if (err != cudaSuccess) return err;
  }
  attr.id = cudaLaunchAttributeClusterDimension;
  attr.val.clusterDim.x = static_cast<unsigned>(cluster);
  attr.val.clusterDim.y = 1;
  attr.val.clusterDim.z = 1;
  cfg = cudaLaunchConfig_t{};
  cfg.gridDim = dim3(static_cast<unsigned>(cluster));
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  return cudaOccupancyMaxActiveClusters(active, kernel, &cfg);
}

// `ctas` CTAs of `kernel` in clusters of `cluster` on `stream`, or
// cudaErrorNotSupported (nothing launched) where the occupancy API allows
// no such cluster now: the caller falls back.
template <typename Args>
cudaError_t launch_clusters(void (*kernel)(const Args), const Args& a, int cluster, int ctas,
                            size_t smem, cudaStream_t stream) {
  cudaLaunchConfig_t cfg;
  cudaLaunchAttribute attr;
  int active = 0;
  const cudaError_t err = prepare_cluster_launch(kernel, cluster, smem, cfg, attr, &active);
  if (err != cudaSuccess) return err;
  if (active < 1) return cudaErrorNotSupported;
  cfg.gridDim = dim3(static_cast<unsigned>(ctas));
  cfg.stream = stream;
  return cudaLaunchKernelEx(&cfg, kernel, a);
}

// Launch the cluster kernel on `stream` with cudaLaunchKernelEx and the
// cluster dimension attribute (directions x cluster_grid() CTAs). Returns
// cudaErrorNotSupported (launching nothing) when this build has no sm_90
// code for it or the occupancy API allows no such cluster now; any other
// error is the launch's own.
cudaError_t launch_persist_cluster(ElemKind kind, Cell cell, const PersistClusterLaunch& a,
                                   size_t smem, cudaStream_t stream);
// Co-resident clusters of `cluster` CTAs at this shared-memory size
// (cudaOccupancyMaxActiveClusters); 0 where refused. cudaErrorNotSupported:
// this build has no sm_90 code for the cluster kernels.
cudaError_t persist_cluster_max_active(ElemKind kind, Cell cell, int cluster, size_t smem,
                                       int* clusters);
// The cluster tier's backward kernel (as launch_persist_cluster; F32, exact
// fp32, has no cluster kernel: cudaErrorNotSupported).
cudaError_t launch_persist_cluster_bwd(ElemKind kind, Cell cell, const PersistClusterBwdLaunch& a,
                                       size_t smem, cudaStream_t stream);
// Co-resident clusters of its kernel for m-tile stride M (as persist_cluster_max_active).
cudaError_t persist_cluster_bwd_max_active(ElemKind kind, Cell cell, int M, int cluster,
                                           size_t smem, int* clusters);
// The cluster exchange alone (no math, bf16): every step each CTA waits for
// its peers' bytes, adds 1 to its units (as 16-bit integers) into its next
// buffer, pushes them to its peers; the last step's rows go to `y`. smem:
// cluster_exchange_smem (two h buffers and the mbarriers).
cudaError_t launch_persist_cluster_exchange(const PersistClusterArgs& a, size_t smem,
                                            cudaStream_t stream);
int64_t cluster_exchange_smem(const ClusterPartition& p);

// The exchange alone (no math): every step each CTA waits for its replica's
// flags, gathers B x H from `y`, writes its slice back; y must hold
// (steps + 1) * B rows of H elements (2-byte). Cooperative like the kernel.
cudaError_t launch_persist_exchange(const PersistArgs& a, size_t smem, int sms,
                                    cudaStream_t stream);

// The exchange with the flag in the data (ll_layout.h, ll_exchange_bench.cu):
// `layout.ctas` CTAs, cooperative; h0 and y as 32-bit pairs of bf16.
struct LlBenchArgs {
  LlExchange layout;
  const uint32_t* h0;  // batch x hidden bf16
  uint32_t* y;         // steps * batch x hidden bf16: each step's rows
  uint64_t* ll;        // layout.words() words, zeroed before the launch
  int64_t steps;
  uint64_t watchdog_ns;
};
cudaError_t launch_persist_ll_exchange(const LlBenchArgs& a, int sms, cudaStream_t stream);

}  // namespace persist
}  // namespace rnnfuse
