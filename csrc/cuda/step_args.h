// Arguments of one fused recurrent step on the GPU, and the launchers' entry
// points. Host code (loops_cuda.cpp) fills these per step with pointers
// already offset to the step's rows (64-bit arithmetic on the host), so the
// kernels only index within one step: row < batch, column < 5 * hidden.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace rnnfuse {
namespace cuda {

// The A operand of a step's GEMM, row by row: rows [0, carry) at a_carry,
// lda_carry elements apart (the previous step's rows of y or of the gate
// gradients), rows [carry, rows) at a_start, lda_start apart (h0), or zero
// when a_start is null. The strides differ in a bidirectional layer, whose y
// rows hold both directions.
struct RowSource {
  const void* a_carry;
  const void* a_start;
  int64_t lda_carry, lda_start;
  int carry;
  int rows;
};

// How a step's tile is chosen: the planner (step_plan.h), or one forced by
// RNNFUSE_STEP_TILE for comparisons: small, large, or threshold (the rule
// before the planner: large above kLargeBatch rows).
enum class TileRule { kPlanner, kSmall, kLarge, kThreshold };

// Which kernel family runs: tensor cores (fp16/bf16, or fp32 as TF32 when
// allowed, on sm_80+) or plain FMA (any dtype, exact fp32/fp64); and what
// the tile planner needs to know of the device.
struct StepConfig {
  bool tensor_cores;
  cudaStream_t stream;
  int sm_count;
  TileRule tile_rule;
  bool deep_chunks;  // tensor-core tiles with twice the k-chunk (RNNFUSE_STEP_CHUNK=deep)
};

struct LstmFwdStepArgs {
  RowSource h_prev;  // (bs, P) previous hidden state
  const void* w_hh;  // (4H, P)
  const void* x;     // (bs, 4H) this step's x_proj rows, ld_x apart
  int64_t ld_x;
  void* c_state;     // (B, H) acc
  void* h_out;       // (bs, ld_out): y rows, or the scratch that the projection reads
  int64_t ld_out;
  void* ws;          // (bs, 5H) in scalar_t, or null
  int hidden, k;     // H, P
};

struct LstmBwdStepArgs {
  RowSource dgates_next;  // (carry_next, 4H) rows of the next processed step
  const void* w_hh_t;     // (P, 4H): w_hh transposed, so each unit's weights are a row
  const void* grad_y;     // (bs, H) this step's output gradient, ld_grad_y apart
  int64_t ld_grad_y;
  const void* dh_direct;  // (bs, H) acc: dh computed on the host (projection), or null
  void* dh_state;         // (B, H) acc
  void* dc_state;         // (B, H) acc
  const void* ws;         // (bs, 5H) in scalar_t, this step
  const void* ws_prev;    // rows [0, carry) of the previous processed step (for c_{t-1})
  const void* c0;         // (B, H)
  int carry;
  void* dgates;           // (bs, 4H) out, ld_dgates apart (dgates_next.lda_carry too)
  int64_t ld_dgates;
  int hidden, k;          // H, K of the GEMM (4H, or 0 with dh_direct)
};

struct GruFwdStepArgs {
  RowSource h_prev;   // (bs, H), lda_carry == ld_y
  const void* w_hh;   // (3H, H)
  const void* b_hh;   // (3H) or null
  const void* x;      // (bs, 3H), ld_x apart
  void* y;            // (bs, H) this step's output rows, ld_y apart
  int64_t ld_x, ld_y;
  void* ws;           // (bs, 4H) in scalar_t, or null
  int hidden;
};

struct GruBwdStepArgs {
  RowSource dhh_next;  // (carry_next, 3H)
  const void* w_hh_t;  // (H, 3H)
  const void* grad_y;  // (bs, H), ld_grad_y apart
  void* dh_state;      // (B, H) acc
  const void* ws;      // (bs, 4H) in scalar_t
  const void* h_prev_rows;  // rows [0, carry) of h_{t-1} (previous step's y), ld_h_prev apart
  const void* h0;           // (B, H)
  int carry;
  void* dx;            // (bs, 3H), ld_dx apart
  void* dhh;           // (bs, 3H), dhh_next.lda_carry apart
  int64_t ld_grad_y, ld_h_prev, ld_dx;
  int hidden;
};

// One launch's work: one step of `count` (1 or 2) directions of a layer,
// direction d on grid.z == d. A bidirectional layer's two directions share
// each launch: the forward direction's step i beside the reverse
// direction's step i (each with its own rows, weights and buffers).
template <typename Args>
struct StepGroup {
  Args dir[2];
  int count;
};

// One launch each, on cfg.stream; defined per dtype in <cell>_<dtype>.cu.
template <typename scalar_t>
void lstm_fwd_step(const StepGroup<LstmFwdStepArgs>& a, const StepConfig& cfg);
template <typename scalar_t>
void lstm_bwd_step(const StepGroup<LstmBwdStepArgs>& a, const StepConfig& cfg);
template <typename scalar_t>
void gru_fwd_step(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg);
template <typename scalar_t>
void gru_bwd_step(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg);

}  // namespace cuda
}  // namespace rnnfuse
