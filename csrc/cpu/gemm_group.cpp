#include "gemm_group.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <cmath>

#include "cpu_common.h"
#include "gemm_cpu.h"

namespace rnnfuse {
namespace {

// A piece of one task: its output columns [col0, col1), computed by one
// thread.
struct Piece {
  size_t task;
  int64_t col0, col1;
  double macs;
};

// ATen's products with fewer rows or a shorter k than this (a matrix-vector
// product, an outer product: a cell's backward at batch 1) are not split:
// the group then runs one task after another, as the cells did before it.
// Run one-threaded inside the region, oneDNN's bf16 ones made a GRUCell
// call take 1.2 instead of 0.64-0.69 ms in some processes (H = 512; 4 of 8
// then, 0 of 3 in a later rerun: cpu-2core_2026-11-28_cell-gemms/NOTES.md).
constexpr int64_t kMinThinSide = 16;

int64_t rows(const GemmTask& t) { return t.a.size(0); }
int64_t depth(const GemmTask& t) { return t.a.size(1); }
int64_t cols(const GemmTask& t) { return t.b.size(1); }

// The kernels' panel width where their GEMM takes the task, else 0.
int64_t kernel_width(const GemmTask& t) {
  return t.c.scalar_type() == t.a.scalar_type() ? gemm_panel_width(t.a, t.b) : 0;
}

// Columns [col0, col1) of task t: the kernels' panels col0 / width ..
// col1 / width, or at::mm on the slice.
void run_piece(const GemmTask& t, int64_t width, int64_t col0, int64_t col1) {
  if (width > 0) {
    gemm_panels(t.a, t.b, t.c, t.accumulate, col0 / width, col1 / width);
    return;
  }
  auto c = t.c.narrow(1, col0, col1 - col0);
  const auto b = t.b.narrow(1, col0, col1 - col0);
  if (t.accumulate) {
    c.addmm_(t.a, b);
  } else {
    at::mm_out(c, t.a, b);
  }
}

}  // namespace

void gemm_group(const std::vector<GemmTask>& tasks) {
  std::vector<int64_t> widths(tasks.size());
  double total = 0;
  bool thin_aten = false;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const GemmTask& t = tasks[i];
    TORCH_CHECK(t.a.dim() == 2 && t.b.dim() == 2 && t.c.dim() == 2 &&
                    t.a.size(1) == t.b.size(0) && t.c.size(0) == t.a.size(0) &&
                    t.c.size(1) == t.b.size(1) && t.c.stride(1) == 1,
                "rnnfuse: gemm_group got a ", t.a.sizes(), " @ ", t.b.sizes(), " into ",
                t.c.sizes(), " with strides ", t.c.strides());
    widths[i] = kernel_width(t);
    total += double(rows(t)) * depth(t) * cols(t);
    thin_aten |= widths[i] == 0 && std::min(rows(t), depth(t)) < kMinThinSide;
  }
  const int threads = at::get_num_threads();
  if (threads == 1 || total < double(kMinParallelMacs) || thin_aten || at::in_parallel_region()) {
    // One task after another, each on all the threads it pays to wake: the
    // kernels' panels split as for one GEMM, ATen's product whole.
    for (size_t i = 0; i < tasks.size(); ++i) {
      const GemmTask& t = tasks[i];
      if (t.c.numel() == 0) continue;
      if (widths[i] == 0) {
        run_piece(t, 0, 0, cols(t));
        continue;
      }
      const int64_t w = widths[i];
      parallel_blocks(cols(t) / w, rows(t) * depth(t) * cols(t),
                      [&](int64_t p0, int64_t p1) { run_piece(t, w, p0 * w, p1 * w); });
    }
    return;
  }
  // Kernel tasks split into their panels; the others into about as many
  // column slices as their share of the threads (MKL runs a slice at its
  // one-thread rate; a slice narrower than a panel would only add calls).
  std::vector<Piece> pieces;
  const double per_thread = total / threads;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const GemmTask& t = tasks[i];
    const int64_t n = cols(t);
    if (t.c.numel() == 0) continue;
    const double col_macs = double(rows(t)) * depth(t);
    int64_t slices = 0;
    if (widths[i] > 0) {
      slices = n / widths[i];
    } else {
      const int64_t most = std::max<int64_t>(1, n / 64);
      slices = std::clamp<int64_t>(std::llround(col_macs * n / per_thread), 1, most);
    }
    for (int64_t s = 0; s < slices; ++s) {
      int64_t col0 = n * s / slices, col1 = n * (s + 1) / slices;
      if (widths[i] > 0) col0 = s * widths[i], col1 = col0 + widths[i];
      pieces.push_back({i, col0, col1, col_macs * (col1 - col0)});
    }
  }
  // Thread t takes the pieces whose middle falls in its share of the work,
  // in order: contiguous runs, decided before any runs.
  std::vector<int> owner(pieces.size());
  double done = 0;
  for (size_t p = 0; p < pieces.size(); ++p) {
    const double mid = done + pieces[p].macs / 2;
    owner[p] = std::min(threads - 1, int(mid / total * threads));
    done += pieces[p].macs;
  }
  // The workers run ATen ops: give them the caller's dispatch state (below
  // autograd, inference mode), not a fresh thread's.
  const at::ThreadLocalState state;
  at::parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
    const at::ThreadLocalStateGuard guard(state);
    for (size_t p = 0; p < pieces.size(); ++p) {
      if (owner[p] >= t0 && owner[p] < t1) {
        const Piece& piece = pieces[p];
        run_piece(tasks[piece.task], widths[piece.task], piece.col0, piece.col1);
      }
    }
  });
}

}  // namespace rnnfuse
