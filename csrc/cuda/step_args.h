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
// rows [carry, rows) at a_start (or zero when a_start is null).
struct RowSource {
  const void* a_carry;
  const void* a_start;
  int64_t lda;
  int carry;
  int rows;
};

// Which kernel family runs: tensor cores (fp16/bf16, or fp32 as TF32 when
// allowed, on sm_80+) or plain FMA (any dtype, exact fp32/fp64).
struct StepConfig {
  bool tensor_cores;
  cudaStream_t stream;
};

struct LstmFwdStepArgs {
  RowSource h_prev;  // (bs, P) previous hidden state
  const void* w_hh;  // (4H, P)
  const void* x;     // (bs, 4H) this step's x_proj rows
  void* c_state;     // (B, H) acc
  void* h_out;       // (bs, ld_out): y rows, or the scratch that the projection reads
  int64_t ld_out;
  void* ws;          // (bs, 5H) acc, or null
  int hidden, k;     // H, P
};

struct LstmBwdStepArgs {
  RowSource dgates_next;  // (carry_next, 4H) rows of the next processed step
  const void* w_hh_t;     // (P, 4H): w_hh transposed, so each unit's weights are a row
  const void* grad_y;     // (bs, H) this step's output gradient
  const void* dh_direct;  // (bs, H) acc: dh computed on the host (projection), or null
  void* dh_state;         // (B, H) acc
  void* dc_state;         // (B, H) acc
  const void* ws;         // (bs, 5H) acc, this step
  const void* ws_prev;    // rows [0, carry) of the previous processed step (for c_{t-1})
  const void* c0;         // (B, H)
  int carry;
  void* dgates;           // (bs, 4H) out
  int hidden, k;          // H, K of the GEMM (4H, or 0 with dh_direct)
};

struct GruFwdStepArgs {
  RowSource h_prev;   // (bs, H)
  const void* w_hh;   // (3H, H)
  const void* b_hh;   // (3H) or null
  const void* x;      // (bs, 3H)
  void* y;            // (bs, H) this step's output rows
  void* ws;           // (bs, 4H) acc, or null
  int hidden;
};

struct GruBwdStepArgs {
  RowSource dhh_next;  // (carry_next, 3H)
  const void* w_hh_t;  // (H, 3H)
  const void* grad_y;  // (bs, H)
  void* dh_state;      // (B, H) acc
  const void* ws;      // (bs, 4H) acc
  const void* h_prev_rows;  // rows [0, carry) of h_{t-1} (previous step's y)
  const void* h0;           // (B, H)
  int carry;
  void* dx;            // (bs, 3H)
  void* dhh;           // (bs, 3H)
  int hidden;
};

// One launch each, on cfg.stream; defined per dtype in <cell>_<dtype>.cu.
template <typename scalar_t>
void lstm_fwd_step(const LstmFwdStepArgs& a, const StepConfig& cfg);
template <typename scalar_t>
void lstm_bwd_step(const LstmBwdStepArgs& a, const StepConfig& cfg);
template <typename scalar_t>
void gru_fwd_step(const GruFwdStepArgs& a, const StepConfig& cfg);
template <typename scalar_t>
void gru_bwd_step(const GruBwdStepArgs& a, const StepConfig& cfg);

}  // namespace cuda
}  // namespace rnnfuse
