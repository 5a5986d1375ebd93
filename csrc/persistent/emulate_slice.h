// One grid slice's step arithmetic as the CUDA kernels do it
// (csrc/cuda/persistent/slice.cuh), for the CPU emulators of the grid tier
// (emulate.cpp) and the cluster tier (emulate_cluster.cpp): A fragments
// through layout.h's map with the operand rounding the tensor cores see,
// one MMA per (k-tile, m-tile, n-tile) accumulated in fp32 (double for
// float64 inputs), partial sums stored through the C map, added over warps
// 0..7 in order, then gate_math.h.
#pragma once

#include <ATen/OpMathType.h>

#include <type_traits>

#include "../gate_math.h"
#include "emulate_common.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

template <typename scalar_t>
struct SliceEmu {
  using acc_t = at::opmath_type<scalar_t>;
  // Accumulation of the MMAs: fp32 on the GPU; double for float64 inputs.
  using mma_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
  using Acc = mma_t[kMTiles][kChunkNTiles][16][8];

  // Fragment of m-tile mt, k-tile kt of slice c: out[lane * a_elems + e].
  static void frag(const Partition& p, const scalar_t* w, int c, int kt, int mt, double* out) {
    const int kk = p.kk, ae = a_elems(kk);
    for (int lane = 0; lane < 32; ++lane) {
      for (int e = 0; e < ae; ++e) {
        const Coord a = a_coord(kk, lane, e);
        const int64_t row = p.weight_row(c, mt * 16 + a.row);
        const int k = kt * kk + a.col;
        out[lane * ae + e] = row >= 0 && k < p.hidden ? operand(w[row * p.hidden + k]) : 0.0;
      }
    }
  }

  static void zero(Acc& acc) {
    for (int mt = 0; mt < kMTiles; ++mt)
      for (int nt = 0; nt < kChunkNTiles; ++nt)
        for (int i = 0; i < 16; ++i)
          for (int n = 0; n < 8; ++n) acc[mt][nt][i][n] = mma_t(0);
  }

  // acc[mt][nt] += A(mt) x B for k-tile kt: fragments a[mt] ([lane][elem]),
  // B from h buffer rows q0 + nt * 8 + col (B fragment map).
  static void mma_ktile(const Partition& p, const double* a0, const double* a1,
                        const scalar_t* hbuf, int pitch, int q0, int kt, int n_tiles, Acc& acc) {
    const int kk = p.kk;
    double A[kMTiles][16][16] = {};
    a_tile(kk, a0, A[0]);
    a_tile(kk, a1, A[1]);
    for (int nt = 0; nt < n_tiles; ++nt) {
      double Bm[16][8] = {};
      b_tile(kk, hbuf, pitch, q0 + nt * 8, kt, Bm);
      for (int mt = 0; mt < kMTiles; ++mt) {
        for (int i = 0; i < 16; ++i) {
          for (int n = 0; n < 8; ++n) {
            mma_t s = acc[mt][nt][i][n];
            for (int k = 0; k < kk; ++k) s += mma_t(A[mt][i][k]) * mma_t(Bm[k][n]);
            acc[mt][nt][i][n] = s;
          }
        }
      }
    }
  }

  // Through the C fragment map into this warp's tile of `red` (as the kernel).
  static void store_partials(const Acc& acc, mma_t* red, int warp, int n_tiles, int pitch) {
    for (int mt = 0; mt < kMTiles; ++mt) {
      for (int nt = 0; nt < n_tiles; ++nt) {
        for (int lane = 0; lane < 32; ++lane) {
          for (int e = 0; e < kCElems; ++e) {
            const Coord cc = c_coord(lane, e);
            red[red_index(warp, mt * 16 + cc.row, nt * 8 + cc.col, kRows, pitch)] =
                acc[mt][nt][cc.row][cc.col];
          }
        }
      }
    }
  }

  // rows: a warp tile's rows (a grid CTA's Partition::rows()).
  static void sum_partials(const mma_t* red, int G, int J, int jj, int nn, int pitch, acc_t* sum,
                           int rows = kRows) {
    for (int g = 0; g < G; ++g) {
      mma_t s = 0;
      for (int w = 0; w < kWarps; ++w) s += red[red_index(w, g * J + jj, nn, rows, pitch)];
      sum[g] = acc_t(s);
    }
  }

  // One item's cell update: x = the G projections (LSTM: both biases), sum =
  // the recurrent sums, b_hh = GRU's b_hh of this unit's gates (b[g] at g*H)
  // or null; c in/out (LSTM); ws (offset to the unit, rounded to scalar_t
  // as the kernel stores it) or null. Returns h.
  static acc_t cell_item(Cell cell, const acc_t* x, acc_t* sum, const scalar_t* b_hh, int H,
                         acc_t& c, acc_t h_prev, scalar_t* ws) {
    using S = scalar_t;
    if (cell == Cell::LSTM) {
      const auto a = lstm_cell_forward<acc_t>(x[0] + sum[0], x[1] + sum[1], x[2] + sum[2],
                                              x[3] + sum[3], c);
      c = a.c;
      if (ws) ws[0] = S(a.i), ws[H] = S(a.f), ws[2 * H] = S(a.g), ws[3 * H] = S(a.o),
              ws[4 * H] = S(a.c);
      return lstm_hidden(a);
    }
    for (int g = 0; g < 3; ++g) {
      if (b_hh) sum[g] += acc_t(b_hh[g * H]);
    }
    const auto a = gru_cell_forward<acc_t>(x[0], x[1], x[2], sum[0], sum[1], sum[2]);
    if (ws) ws[0] = S(a.r), ws[H] = S(a.z), ws[2 * H] = S(a.n), ws[3 * H] = S(a.hn);
    return gru_hidden(a, h_prev);
  }
};

}  // namespace persist
}  // namespace rnnfuse
