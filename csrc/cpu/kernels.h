// The CPU kernels' interface: raw pointers and sizes only, so the kernels can
// be compiled once per instruction set (kernels_impl.h, built by
// kernels_default.cpp / kernels_avx2.cpp / kernels_avx512.cpp, and for bf16
// kernels_avx512_bf16.cpp) and picked at run time (cpu_kernels<scalar_t>(),
// kernels_dispatch.cpp) the way ATen picks its own CPU kernels.
//
// A time step is split by hidden unit: a "block" is one vector of units
// (Kernels::vec lanes). The forward kernels own every gate of their blocks, so
// the recurrent GEMM, the gate math and the state update of a block happen in
// one pass with the gate pre-activations in registers; the backward kernels
// own a "panel" of Kernels::bwd_vecs blocks. Threads take disjoint ranges of
// blocks (panels), so one step needs no synchronisation inside it.
//
// The forward's recurrent GEMM reads the weights from panels laid out once per
// call (pack_fwd): for each block, the K x (gates x lanes) slice it needs,
// contiguous, in the accumulation type. A call with too few rows to pay for
// that layout computes the same sums as dot products with the weights as
// stored. The backward's GEMM (dgates @ w_hh) reads w_hh's rows as stored:
// a panel's columns are contiguous there already. bf16 with AVX512-BF16 lays
// both out in k-pairs instead (Kernels::pairs) and multiplies bf16 pairs.
//
// Every per-unit formula is gate_math.h's, evaluated lane-wise.
#pragma once

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstdint>
#include <type_traits>

#include "../step.h"

namespace rnnfuse {
namespace cpu {

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same<scalar_t, double>::value, double, float>;

// Rows are time-major (schedule.h). "A rows" are the left operand of a step's
// recurrent GEMM in the accumulation type: row b is prev + b * ld_prev for b
// below the step's carry and h0 + b * (its width) for the rows that start at
// this step. The per-row tensors (x_proj, y, grad_y, dgates, dx) have a row
// stride ld_* of at least their width: a bidirectional layer's two directions
// read and write column blocks of shared buffers (driver_bidir.cpp).

// LSTM forward step (recurrence.h's LstmForward), for blocks [blk0, blk1).
template <typename scalar_t>
struct LstmFwdArgs {
  using acc_t = acc_type<scalar_t>;
  int64_t hidden, out;     // H, P (P != H only with a projection)
  const scalar_t* x_proj;  // (N, 4H), row stride ld_x
  int64_t ld_x, ld_y, ld_prev;
  const acc_t* w_packed;   // pack_fwd(w_hh), or null: dot products with w
  const scalar_t* w_pairs; // bf16 with AVX512-BF16: pack_fwd_pairs(w_hh), used instead of
                           // w_packed with A rows as stored (prev_s, h0_s); else null
  const scalar_t* w;       // w_hh (4H, P) as stored
  const scalar_t* prev_s;  // the A rows as stored: y's rows of the previous step (ld_y)
  const scalar_t* h0_s;    //   and h0 (ld = P)
  const acc_t* prev;       // A rows (ld_prev) continuing from the previous step
  const acc_t* h0;         // A rows (ld = P) starting at this step
  acc_t* c_state;          // (B, H), c_{t-1} in, c_t out
  scalar_t* y;             // (N, P), row stride ld_y, written when h_raw is null
  acc_t* h_raw;            // (B, H): with a projection, h before it; else null
  acc_t* h_next;           // (B, P): h rounded to scalar_t, in acc_t, for the next A rows; or null
  scalar_t* ws;            // (N, 5H) (i, f, g, o, c) rounded to scalar_t, or null
  // A single-step cell (cell_cpu.cpp) either computes its input term in the
  // same pass instead of reading x_proj, x_in @ w_in^T (w_in set; small
  // batches), or has both GEMMs done before the pass: x_proj = x @ w_ih^T and
  // rec = h0 @ w_hh^T (rec set). Either way it adds b_in + b_in2 to the input
  // term (each optional). Both with w_packed and w_pairs null.
  const scalar_t* w_in;    // w_ih (4H, I) as stored, or null: x_proj holds the input term
  const acc_t* x_in;       // (B, I)
  int64_t in_size;         // I
  const scalar_t* rec;     // (B, 4H): the recurrent term, used instead of w; or null
  const acc_t* b_in;       // (4H) or null
  const acc_t* b_in2;      // (4H) or null
};

// LSTM backward step (recurrence.h's LstmBackward), for panels [pan0, pan1).
template <typename scalar_t>
struct LstmBwdArgs {
  using acc_t = acc_type<scalar_t>;
  int64_t hidden, out;      // H, P
  const scalar_t* grad_y;   // (N, P), row stride ld_grad_y
  int64_t ld_grad_y, ld_dgates, ld_next;
  const acc_t* w_panels;    // pack_bwd(w_hh (4H, P)): the recurrent GEMM's weights; or null
  const scalar_t* w_pairs;  // bf16 with AVX512-BF16: pack_bwd_pairs(w_hh), used instead of
                            // w_panels with A rows as stored (next_s); else null
  const scalar_t* next_s;   // the next step's dgates rows as stored (ld_dgates)
  const acc_t* next;        // A rows (ld_next): the next step's dgates
  const acc_t* dh_unit;     // (B, H): with a projection, the whole dh in unit space (no
                            // GEMM here); else null
  const scalar_t* c0;       // (B, H)
  const scalar_t* ws;       // (N, 5H)
  acc_t* dh_state;          // (B, P): added to dh and cleared (without a projection)
  acc_t* dc_state;          // (B, H)
  scalar_t* dgates;         // (N, 4H), row stride ld_dgates
  acc_t* dgates_next;       // (B, 4H): dgates rounded to scalar_t, for the next A rows; or null
};

// GRU forward step (recurrence.h's GruForward), for blocks [blk0, blk1).
template <typename scalar_t>
struct GruFwdArgs {
  using acc_t = acc_type<scalar_t>;
  int64_t hidden;          // H
  const scalar_t* x_proj;  // (N, 3H), row stride ld_x
  int64_t ld_x, ld_y, ld_prev;
  const acc_t* w_packed;   // pack_fwd(w_hh), or null: dot products with w
  const scalar_t* w_pairs; // as for the LSTM
  const scalar_t* w;       // w_hh (3H, H) as stored
  const scalar_t* prev_s;  // as for the LSTM
  const scalar_t* h0_s;
  const acc_t* b_hh;       // (3H), or null
  const acc_t* prev;       // A rows (ld_prev), which are also h_{t-1}
  const acc_t* h0;         // (ld = H)
  scalar_t* y;             // (N, H), row stride ld_y (prev_s too)
  acc_t* h_next;           // (B, H) or null, as for the LSTM
  scalar_t* ws;            // (N, 4H) (r, z, n, hn) rounded to scalar_t, or null
  // As for the LSTM (b_in only; b_hh is added to the recurrent term, rec).
  const scalar_t* w_in;    // w_ih (3H, I) as stored, or null: x_proj holds the input term
  const acc_t* x_in;       // (B, I)
  int64_t in_size;         // I
  const scalar_t* rec;     // (B, 3H): the recurrent term (without b_hh), or null
  const acc_t* b_in;       // (3H) or null
};

// GRU backward step (recurrence.h's GruBackward), for panels [pan0, pan1).
template <typename scalar_t>
struct GruBwdArgs {
  using acc_t = acc_type<scalar_t>;
  int64_t hidden;           // H
  const scalar_t* grad_y;   // (N, H), row stride ld_grad_y
  int64_t ld_grad_y, ld_y, ld_dx;
  const acc_t* w_panels;    // pack_bwd(w_hh (3H, H)), or null
  const scalar_t* w_pairs;  // as for the LSTM
  const scalar_t* next_s;   // the next step's dhh rows as stored (ld = 3H)
  const acc_t* next;        // A rows (ld = 3H): the next step's dhh
  const scalar_t* y;        // (N, H), row stride ld_y: h_{t-1} of continuing rows
  const scalar_t* h0;       // (B, H)
  const scalar_t* ws;       // (N, 4H)
  acc_t* dh_state;          // (B, H)
  scalar_t* dx;             // (N, 3H), row stride ld_dx
  scalar_t* dhh;            // (N, 3H)
  acc_t* dhh_next;          // (B, 3H) or null, as for the LSTM
};

// y = x @ w^T + b (rows of x and y contiguous), the input projection.
template <typename scalar_t>
struct LinearArgs {
  using acc_t = acc_type<scalar_t>;
  int64_t m, n, k;          // x (m, k), w (n, k), y (m, n)
  const acc_t* x;
  const acc_t* w_packed;    // pack_nt(w)
  const acc_t* b;           // (n) or null
  acc_t* y;
};

// C (m, n) = A (m, k) @ B (k, n), or C += A @ B with accumulate: A's element
// (i, kk) at a[i * a_row + kk * a_k] (a_k = 1: A row-major; a_row = 1: A
// given transposed, as for a weight gradient dgates^T @ h), B's row kk at
// b + kk * ldb, C's row i at c + i * ldc. n must be a multiple of the panel
// width (Kernels::gemm_vecs lanes vectors); the gradient GEMMs over all rows.
template <typename scalar_t>
struct GemmArgs {
  int64_t m, n, k;
  const scalar_t* a;
  int64_t a_row, a_k;
  const scalar_t* b;
  int64_t ldb;
  scalar_t* c;
  int64_t ldc;
  bool accumulate;
};

template <typename scalar_t>
struct Kernels {
  using acc_t = acc_type<scalar_t>;
  const char* isa;      // "AVX512", "AVX2" or "DEFAULT"
  int64_t vec;          // lanes of a block
  int64_t bwd_vecs;     // blocks of a backward panel
  // Forward panels of w (gates*H, k): blocks [blk0, blk1) of fwd_packed_size.
  void (*pack_fwd)(const scalar_t* w, int64_t gates, int64_t hidden, int64_t k, acc_t* out,
                   int64_t blk0, int64_t blk1);
  // Linear: panels of linear_vecs vectors of output columns (fp32/fp64 only;
  // null for fp16/bf16).
  int64_t linear_vecs;
  void (*pack_nt)(const scalar_t* w, int64_t n, int64_t k, acc_t* out, int64_t pan0,
                  int64_t pan1);
  void (*linear)(const LinearArgs<scalar_t>&, int64_t pan0, int64_t pan1);
  // bf16 on CPUs with AVX512-BF16: the recurrent GEMMs multiply bf16 pairs
  // into fp32 accumulators (vdpbf16ps) on weights laid out in k-pairs, and
  // read their A rows as stored. pairs is false (and these null) elsewhere.
  bool pairs;
  void (*pack_fwd_pairs)(const scalar_t* w, int64_t gates, int64_t hidden, int64_t k,
                         scalar_t* out, int64_t blk0, int64_t blk1);
  void (*pack_bwd_pairs)(const scalar_t* w, int64_t k, int64_t n, scalar_t* out, int64_t pan0,
                         int64_t pan1);
  // Backward panels of w (k, n), in acc_t: panels [pan0, pan1) of
  // bwd_packed_size, panel p holding columns [p * W, p * W + W) (W =
  // panel_width(), zero past n) of all k rows, contiguous.
  void (*pack_bwd)(const scalar_t* w, int64_t k, int64_t n, acc_t* out, int64_t pan0,
                   int64_t pan1);
  // GemmArgs over C's column panels [pan0, pan1) (fp32/fp64 only).
  int64_t gemm_vecs;
  void (*gemm)(const GemmArgs<scalar_t>&, int64_t pan0, int64_t pan1);
  void (*lstm_fwd)(const LstmFwdArgs<scalar_t>&, const Step&, int64_t blk0, int64_t blk1);
  void (*lstm_bwd)(const LstmBwdArgs<scalar_t>&, const Step&, int64_t pan0, int64_t pan1);
  void (*gru_fwd)(const GruFwdArgs<scalar_t>&, const Step&, int64_t blk0, int64_t blk1);
  void (*gru_bwd)(const GruBwdArgs<scalar_t>&, const Step&, int64_t pan0, int64_t pan1);

  int64_t blocks(int64_t units) const { return (units + vec - 1) / vec; }
  int64_t panel_width() const { return vec * bwd_vecs; }
  int64_t panels(int64_t units) const { return (units + panel_width() - 1) / panel_width(); }
  int64_t fwd_packed_size(int64_t gates, int64_t hidden, int64_t k) const {
    return blocks(hidden) * k * gates * vec;
  }
  int64_t fwd_pairs_size(int64_t gates, int64_t hidden, int64_t k) const {
    return blocks(hidden) * (k + k % 2) * gates * vec;
  }
  int64_t bwd_packed_size(int64_t k, int64_t n) const { return panels(n) * k * panel_width(); }
  int64_t bwd_pairs_size(int64_t k, int64_t n) const {
    return panels(n) * (k + k % 2) * panel_width();
  }
  int64_t linear_panels(int64_t n) const {
    return (n + vec * linear_vecs - 1) / (vec * linear_vecs);
  }
};

// The kernels for the instruction set ATen uses on this machine
// (at::get_cpu_capability(), which honours ATEN_CPU_CAPABILITY), limited to
// those this build compiled.
template <typename scalar_t>
const Kernels<scalar_t>& cpu_kernels();
template <>
const Kernels<c10::BFloat16>& cpu_kernels<c10::BFloat16>();

// One table per instruction set (defined in kernels_<isa>.cpp).
template <typename scalar_t>
Kernels<scalar_t> kernels_default();
template <typename scalar_t>
Kernels<scalar_t> kernels_avx2();
template <typename scalar_t>
Kernels<scalar_t> kernels_avx512();
// bf16 only: the AVX-512 kernels with AVX512-BF16 pair products.
Kernels<c10::BFloat16> kernels_avx512_bf16();

}  // namespace cpu
}  // namespace rnnfuse
