// One grid slice's step arithmetic (kRows weight rows x K = H, the k-tiles
// split over 8 warps, partial sums added over warps 0..7 in order, then
// gate_math.h), shared by the grid kernel (kernel.cuh) and the cluster
// kernel (cluster_kernel.cuh), which runs several slices per CTA: both
// tiers compute every slice with exactly these functions, so they agree
// bit for bit. The grid kernels run all of a CTA's m-tiles (the forward: 2
// to 4; the backward: 1 to 4) at once over a few n-tiles a pass
// (mma_mtiles), and their exact-fp32 FMAs over a few columns a pass
// (fma_mtiles), with the same per-output arithmetic whatever the grouping.
// Index maps are layout.h's. Plain CUDA + gate_math.h.
#pragma once

#include <type_traits>

#include "../../gate_math.h"
#include "../../persistent/layout.h"
#include "ptx.cuh"

namespace rnnfuse {
namespace persist {

template <typename E>
__device__ __forceinline__ uint32_t elem_bits(E x);
template <>
__device__ __forceinline__ uint32_t elem_bits<__half>(__half x) { return __half_as_ushort(x); }
template <>
__device__ __forceinline__ uint32_t elem_bits<__nv_bfloat16>(__nv_bfloat16 x) {
  return __bfloat16_as_ushort(x);
}
template <>
__device__ __forceinline__ uint32_t elem_bits<float>(float x) {
  return tf32_round_bits(__float_as_uint(x));  // the operand the tensor cores see
}

using SliceAcc = float[kMTiles][kChunkNTiles][4];

// A fragment's registers through layout.h's A map: element (row, col) of
// the 16 x kk tile is bits(row, col), the operand's bits (0 for padding).
template <typename E, typename Bits>
__device__ __forceinline__ void pack_a_frag(int lane, uint32_t (&f)[4], Bits bits) {
  constexpr int kk = Elem<E>::kBytes == 2 ? 16 : 8;
#pragma unroll
  for (int i = 0; i < 4; ++i) f[i] = 0u;
#pragma unroll
  for (int e = 0; e < (kk == 16 ? 8 : 4); ++e) {
    const Coord co = a_coord(kk, lane, e);
    const uint32_t b = bits(co.row, co.col);
    if constexpr (kk == 16) {
      f[e / 2] |= b << (16 * (e & 1));
    } else {
      f[e] = b;
    }
  }
}

// A fragment of m-tile mt, k-tile kt of slice c (layout.h's A map); zero
// for padding rows and k >= H.
template <typename E>
__device__ __forceinline__ void load_a_frag(const Partition& p, const E* w, int c, int kt, int mt,
                                            int lane, uint32_t (&f)[4]) {
  constexpr int kk = Elem<E>::kBytes == 2 ? 16 : 8;
  const int H = p.hidden;
  pack_a_frag<E>(lane, f, [&](int r, int col) {
    const int64_t row = p.weight_row(c, mt * 16 + r);
    const int k = kt * kk + col;
    return row >= 0 && k < H ? elem_bits(w[row * H + k]) : 0u;
  });
}

__device__ __forceinline__ void zero_acc(SliceAcc& acc) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
    for (int nt = 0; nt < kChunkNTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;
}

// The B fragment of k-tile kt for the n-tile whose columns are h buffer
// rows row0 .. row0 + 7 (layout.h's B map).
template <typename E>
__device__ __forceinline__ void load_b_frag(const E* hbuf, int pitch, int row0, int kt, int lane,
                                            uint32_t (&b)[2]) {
  constexpr int kk = Elem<E>::kBytes == 2 ? 16 : 8;
#pragma unroll
  for (int v = 0; v < 2; ++v) {
    // 2-byte: elements 2v, 2v+1 (adjacent k) in one register.
    const Coord co = b_coord(kk, lane, kk == 16 ? 2 * v : v);
    const E* src = hbuf + (row0 + co.col) * pitch + kt * kk + co.row;
    if constexpr (kk == 16) {
      b[v] = *reinterpret_cast<const uint32_t*>(src);
    } else {
      b[v] = elem_bits(*src);
    }
  }
}

// One pair's MMAs (both m-tiles of k-tile kt, the chunk's first n_tiles
// n-tiles, B fragments from h buffer rows q0 + nt * 8 + col) for slice d of
// a group of GS slices (the cluster tier, cluster_layout.h): accumulator
// slots d * (kChunkNTiles / GS) + nt. d must be a compile-time constant
// where this is inlined, so the slots stay in registers and a group's
// slices form independent chains. GS = 1, d = 0: one slice (the grid
// kernels' mma_mtiles does the same sums for each of its m-tiles).
// NT: the most n-tiles the caller may pass (fewer: fewer predicated
// instructions issued for nothing).
template <typename E, int GS, int NT = kChunkNTiles / GS>
__device__ __forceinline__ void pair_mma(SliceAcc& acc, int d, const uint32_t (&a0)[4],
                                         const uint32_t (&a1)[4], const E* hbuf, int pitch, int q0,
                                         int kt, int n_tiles, int lane) {
  constexpr int kSlots = kChunkNTiles / GS;
  static_assert(NT >= 1 && NT <= kSlots, "n-tiles of a slot range");
#pragma unroll
  for (int nt = 0; nt < NT; ++nt) {
    if (nt < n_tiles) {
      uint32_t b[2];
      load_b_frag(hbuf, pitch, q0 + nt * 8, kt, lane, b);
      mma<E>(acc[0][d * kSlots + nt], a0, b[0], b[1]);
      mma<E>(acc[1][d * kSlots + nt], a1, b[0], b[1]);
    }
  }
}

// This warp's partial sums into its tile [kRows][pitch] of `red` (C map):
// slice d (< glen) of a group of GS at columns d * chunk + nt * 8 .. + 7.
template <int GS>
__device__ __forceinline__ void store_group(const SliceAcc& acc, float* red, int warp, int lane,
                                            int n_tiles, int glen, int chunk, int pitch) {
  constexpr int kSlots = kChunkNTiles / GS;
#pragma unroll
  for (int d = 0; d < GS; ++d) {
    if (d < glen) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int nt = 0; nt < kSlots; ++nt) {
          if (nt < n_tiles) {
#pragma unroll
            for (int h = 0; h < 2; ++h) {  // elements (2h, 2h+1): one row, adjacent n
              const Coord co = c_coord(lane, 2 * h);
              *reinterpret_cast<float2*>(
                  red + red_index(warp, mt * 16 + co.row, d * chunk + nt * 8 + co.col, kRows,
                                  pitch)) =
                  make_float2(acc[mt][d * kSlots + nt][2 * h], acc[mt][d * kSlots + nt][2 * h + 1]);
            }
          }
        }
      }
    }
  }
}

// ---- exact fp32 (TF32 off): layout.h's FMA maps.

// This lane's 4 fp32 weights (bits) of k-tile kt, m-tile mt of slice c: row
// mt * 16 + fma_row(lane), k = kt * 8 + fma_k0(lane) + e; zero for padding
// rows and k >= H.
__device__ __forceinline__ void load_w_fma(const Partition& p, const float* w, int c, int kt,
                                           int mt, int lane, uint32_t (&f)[4]) {
  const int64_t row = p.weight_row(c, mt * 16 + fma_row(lane));
#pragma unroll
  for (int e = 0; e < kFmaK; ++e) {
    const int k = kt * 8 + fma_k0(lane) + e;
    f[e] = row >= 0 && k < p.hidden ? __float_as_uint(w[row * p.hidden + k]) : 0u;
  }
}

// ---- a grid CTA's m-tiles: the forward's (up to 16 units: 2 to 4 m-tiles)
// and the backward's (up to 64 units) MMAs, and every grid CTA's exact-fp32
// FMAs, all m-tiles at once over a few n-tiles (or columns) a pass. Per
// output the MMAs are pair_mma's arithmetic (its k-tiles ascending), so the
// bits do not depend on how many m-tiles a CTA has or how they are grouped.

// The MMAs of a chunk for a CTA of MT m-tiles (a compile-time count:
// chunk_products dispatches on the partition's), over the chunk's first
// n_tiles <= NT n-tiles, NG = mma_pass_ntiles (layout.h) a pass: each B
// fragment is loaded once per k-tile and n-tile (not once per m-tile pass)
// and feeds all MT m-tiles' MMAs, MT x NG independent chains (pair_mma's
// arithmetic). Stored through the C map to this warp's tile of `red`
// (red_rows rows, pitch kRedPitch). Fragment i * MT + m (the
// warp's i-th k-tile, h buffer k-tile warp + i * kWarps, of m-tile m:
// Partition::warp_ktile) is a static register index, and the k-tiles end
// in an early exit at n_ktiles, so nothing issues for other m-tiles'
// fragments or past the warp's last k-tile. (Testing a runtime-MT mask per
// fragment instead cost about 4 instructions for each of the 32 fragments
// per m-tile group, and all NT slots of each active one, predicated.)
template <typename E, int MT, int NT>
__device__ __forceinline__ void mma_mtiles(const uint32_t (&wf)[kRegFrags][4], int n_ktiles,
                                           int warp, int lane, const E* hbuf, int pitch, int q0,
                                           int n_tiles, float* red, int red_rows) {
  static_assert(MT >= 1 && MT <= kMaxBwdMTiles && kMaxFwdMTiles <= kMaxBwdMTiles,
                "a grid CTA's m-tiles");
  static_assert(NT >= 1 && NT <= kChunkNTiles, "n-tiles of a chunk");
  static_assert(MT * 4 <= kMmaSums, "a lane holds one n-tile's sums of every m-tile");
  constexpr int NG = mma_pass_ntiles(MT, NT);
  constexpr int kMaxK = kRegFrags / MT;  // the most k-tiles a warp's registers hold
#pragma unroll
  for (int n0 = 0; n0 < NT; n0 += NG) {
    if (n0 >= n_tiles) break;
    float acc[MT][NG][4];
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int g = 0; g < NG; ++g)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[t][g][v] = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxK; ++i) {
      if (i >= n_ktiles) break;
      const int kt = warp + i * kWarps;
#pragma unroll
      for (int g = 0; g < NG; ++g) {
        if (n0 + g < n_tiles) {
          uint32_t b[2];
          load_b_frag(hbuf, pitch, q0 + (n0 + g) * 8, kt, lane, b);
#pragma unroll
          for (int t = 0; t < MT; ++t) mma<E>(acc[t][g], wf[i * MT + t], b[0], b[1]);
        }
      }
    }
#pragma unroll
    for (int t = 0; t < MT; ++t) {
#pragma unroll
      for (int g = 0; g < NG; ++g) {
        if (n0 + g < n_tiles) {
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const Coord co = c_coord(lane, 2 * h);
            *reinterpret_cast<float2*>(red + red_index(warp, t * 16 + co.row,
                                                       (n0 + g) * 8 + co.col, red_rows)) =
                make_float2(acc[t][g][2 * h], acc[t][g][2 * h + 1]);
          }
        }
      }
    }
  }
}

// f(std::integral_constant<int, V>{}) for the first V of Vs equal to v, else
// the last: a loop that indexes registers or accumulator slots by v needs
// it at compile time (the grid loops' m-tile count, the cluster kernel's
// group size).
template <int V, int... Vs, typename F>
__device__ __forceinline__ void with_constant(int v, F&& f) {
  if constexpr (sizeof...(Vs) > 0) {
    if (v != V) {
      with_constant<Vs...>(v, f);
      return;
    }
  }
  f(std::integral_constant<int, V>{});
}

// mma_mtiles for a chunk of n_tiles n-tiles: a chunk of one (8 batch rows or
// fewer per replica, as the grid plans at B <= 16 mostly run, e.g. LSTM
// H = 1024) takes its own instantiation, which issues that n-tile's B loads
// and MMAs only, not kChunkNTiles predicated slots. Same arithmetic per
// output either way.
template <typename E, int MT>
__device__ __forceinline__ void mma_chunk(const uint32_t (&wf)[kRegFrags][4], int n_ktiles,
                                          int warp, int lane, const E* hbuf, int pitch, int q0,
                                          int n_tiles, float* red, int red_rows) {
  if (n_tiles == 1) {
    mma_mtiles<E, MT, 1>(wf, n_ktiles, warp, lane, hbuf, pitch, q0, n_tiles, red, red_rows);
  } else {
    mma_mtiles<E, MT, kChunkNTiles>(wf, n_ktiles, warp, lane, hbuf, pitch, q0, n_tiles, red,
                                    red_rows);
  }
}

// Sums a lane of an exact-fp32 grid kernel holds at once besides its W
// fragments: with 16, the forward and the backward kernels stay within 255
// registers with no stack (sm_80 and sm_90).
constexpr int kFmaSums = 16;

// Columns of an n-tile that a pass of fma_mtiles sums at once: the most (a
// power of two up to 8) whose MT x NN sums fit kFmaSums.
template <int MT>
constexpr int fma_pass_cols() {
  static_assert(MT <= kFmaSums / 4, "a pass sums at least 4 columns (float4 stores)");
  int nn = 8;
  while (MT * nn > kFmaSums) nn /= 2;
  return nn;
}

// The exact-fp32 FMAs of a chunk for a CTA of MT m-tiles (compile time, as
// mma_mtiles): all MT m-tiles at once, NN = fma_pass_cols columns per pass
// (8, or 4 for 3 or 4 m-tiles), so that each 16-byte h load feeds MT x 4
// FMAs, not 4 per m-tile pass over the same loads. Per output: lane l's k-tiles ascending, 4 fmaf per k-tile from zero, then lane
// l + 16's k half added (layout.h's FMA maps); the sums go to rows m * 16 +
// fma_row of this warp's tile of `red`. How the columns and m-tiles are
// grouped changes no output's arithmetic, so no bit. Fragment i * MT + m is
// a static register index and the k-tiles end in an early exit at n_ktiles,
// as in mma_mtiles.
template <int MT>
__device__ __forceinline__ void fma_mtiles(const uint32_t (&wf)[kRegFrags][4], int n_ktiles,
                                           int warp, int lane, const float* hbuf, int pitch,
                                           int q0, int n_tiles, float* red, int red_rows) {
  constexpr int NN = fma_pass_cols<MT>();
  constexpr int kMaxK = kRegFrags / MT;  // the most k-tiles a warp's registers hold
  const int row = fma_row(lane);
  const float* h_warp = hbuf + q0 * pitch + warp * 8 + fma_k0(lane);
#pragma unroll 1
  for (int col = 0; col < n_tiles * 8; col += NN) {
    float acc[MT][NN];
#pragma unroll
    for (int t = 0; t < MT; ++t)
#pragma unroll
      for (int n = 0; n < NN; ++n) acc[t][n] = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxK; ++i) {
      if (i >= n_ktiles) break;
      const float* hk = h_warp + col * pitch + i * kWarps * 8;
#pragma unroll
      for (int n = 0; n < NN; ++n) {
        const float4 h = *reinterpret_cast<const float4*>(hk + n * pitch);
#pragma unroll
        for (int t = 0; t < MT; ++t) {
          const uint32_t(&w)[4] = wf[i * MT + t];
          float s = acc[t][n];
          s = fmaf(__uint_as_float(w[0]), h.x, s);
          s = fmaf(__uint_as_float(w[1]), h.y, s);
          s = fmaf(__uint_as_float(w[2]), h.z, s);
          s = fmaf(__uint_as_float(w[3]), h.w, s);
          acc[t][n] = s;
        }
      }
    }
#pragma unroll
    for (int t = 0; t < MT; ++t) {
#pragma unroll
      for (int n = 0; n < NN; ++n) acc[t][n] += __shfl_down_sync(0xffffffffu, acc[t][n], 16);
    }
    if (lane < 16) {
#pragma unroll
      for (int t = 0; t < MT; ++t) {
#pragma unroll
        for (int n = 0; n < NN; n += 4) {
          *reinterpret_cast<float4*>(red + red_index(warp, t * 16 + row, col + n, red_rows)) =
              make_float4(acc[t][n], acc[t][n + 1], acc[t][n + 2], acc[t][n + 3]);
        }
      }
    }
  }
}

// A chunk's products for the partition's `mtiles` m-tiles, one of kMTs
// (the forward: 2, 3, 4; the backward: 1 to 4), all at once: the MMAs
// (mma_mtiles), or with FMA (exact fp32) the FMAs (fma_mtiles), into this
// warp's tile of `red`.
template <typename E, bool FMA, int... kMTs>
__device__ __forceinline__ void chunk_products(const uint32_t (&wf)[kRegFrags][4], int mtiles,
                                               int n_ktiles, int warp, int lane, const E* hbuf,
                                               int pitch, int q0, int n_tiles, float* red,
                                               int red_rows) {
  with_constant<kMTs...>(mtiles, [&](auto mt) {
    constexpr int kMT = decltype(mt)::value;
    if constexpr (FMA) {
      fma_mtiles<kMT>(wf, n_ktiles, warp, lane, reinterpret_cast<const float*>(hbuf), pitch, q0,
                      n_tiles, red, red_rows);
    } else {
      mma_chunk<E, kMT>(wf, n_ktiles, warp, lane, hbuf, pitch, q0, n_tiles, red, red_rows);
    }
  });
}

// Gate g of unit jj, batch column nn: the 8 warps' partial sums in order
// (warp tiles of `rows` rows). kUnroll: how many of the 8 loads to unroll
// (a register-pressure knob; the order of the additions is the same for any
// value).
template <int G, int kUnroll = kWarps>
__device__ __forceinline__ void sum_partials(const float* red, int rows, int J, int jj, int nn,
                                             int pitch, float (&sum)[G]) {
#pragma unroll
  for (int g = 0; g < G; ++g) {
    float t = 0.0f;
#pragma unroll kUnroll
    for (int w = 0; w < kWarps; ++w) t += red[red_index(w, g * J + jj, nn, rows, pitch)];
    sum[g] = t;
  }
}

// One (unit, row) item's cell update from its projections x (LSTM: both
// biases included) and recurrent sums; GRU adds its b_hh slice (bias[g*J +
// jj]). LSTM: c in/out. Writes the training workspace row in the operand
// type (ws: already offset to the item's unit, or null); returns h.
template <Cell CELL, int G, typename E>
__device__ __forceinline__ float cell_item(const float (&x)[G], const float (&sum)[G],
                                           const float* bias, int J, int jj, float& c,
                                           float h_prev, E* ws, int H) {
  using X = Elem<E>;
  if constexpr (CELL == Cell::LSTM) {
    const LstmActs<float> act =
        lstm_cell_forward<float>(x[0] + sum[0], x[1] + sum[1], x[2] + sum[2], x[3] + sum[3], c);
    c = act.c;
    if (ws != nullptr) {
      ws[0] = X::from_float(act.i);
      ws[H] = X::from_float(act.f);
      ws[2 * H] = X::from_float(act.g);
      ws[3 * H] = X::from_float(act.o);
      ws[4 * H] = X::from_float(act.c);
    }
    return lstm_hidden(act);
  } else {
    const GruActs<float> act =
        gru_cell_forward<float>(x[0], x[1], x[2], sum[0] + bias[jj], sum[1] + bias[J + jj],
                                sum[2] + bias[2 * J + jj]);
    if (ws != nullptr) {
      ws[0] = X::from_float(act.r);
      ws[H] = X::from_float(act.z);
      ws[2 * H] = X::from_float(act.n);
      ws[3 * H] = X::from_float(act.hn);
    }
    return gru_hidden(act, h_prev);
  }
}

// An item's saved workspace row (cell_item's, in E: i f g o c, or r z n
// hn), converted for the backward's derivatives.
template <typename E>
__device__ __forceinline__ LstmActs<float> lstm_saved_acts(const E* v) {
  using X = Elem<E>;
  return {X::to_float(v[0]), X::to_float(v[1]), X::to_float(v[2]), X::to_float(v[3]),
          X::to_float(v[4])};
}
template <typename E>
__device__ __forceinline__ GruActs<float> gru_saved_acts(const E* v) {
  using X = Elem<E>;
  return {X::to_float(v[0]), X::to_float(v[1]), X::to_float(v[2]), X::to_float(v[3])};
}

}  // namespace persist
}  // namespace rnnfuse
