// Pieces the forward and backward emulators share: the partition and test
// hooks an emulator call runs with, and the operand value the tensor cores see.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../schedule.h"
#include "cluster_layout.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

struct EmuConfig {
  int units = 0, replicas = 1, hbuf_rows = kChunkRows, elem_bytes = 2;
  bool reverse = false;
  uint64_t seed = 0;
  // Test hook: a deliberately broken wait, so the tests see the protocol
  // checks fire. 0: the kernel's protocol; 1: no wait; 2: wait for one step
  // less; 3: wait only for the CTA's own flag; 4 (backward with K split): no
  // wait for the other parts' partial sums.
  int fault = 0;
  // Exact fp32 (TF32 off): the FMA kernels' slice arithmetic (layout.h's FMA
  // maps) instead of the MMAs'; elem_bytes is 4.
  bool fma = false;
  // Backward only: CTAs splitting each unit group's K (BwdPartition::ksplit).
  int ksplit = 1;
};

inline EmuConfig make_emu_config(int64_t units, int64_t replicas, int64_t hbuf_rows,
                                 int64_t elem_bytes, int64_t seed, int64_t fault, bool reverse,
                                 at::ScalarType dtype, bool fma = false, int64_t ksplit = 1) {
  TORCH_CHECK(ksplit == 1 || ksplit == 2 || ksplit == 4, "emulator: ksplit must be 1, 2 or 4");
  TORCH_CHECK(!fma || ((dtype == at::kFloat || dtype == at::kDouble) && elem_bytes == 4),
              "emulator: the exact-FMA kernels take fp32 (or float64) with elem_bytes 4");
  TORCH_CHECK(units > 0 && replicas > 0, "emulator: units and replicas must be positive");
  const int64_t need = dtype == at::kFloat ? 4 : 2;
  TORCH_CHECK(dtype == at::kDouble ? (elem_bytes == 2 || elem_bytes == 4) : elem_bytes == need,
              "emulator: elem_bytes ", elem_bytes, " does not match dtype ", dtype);
  TORCH_CHECK(hbuf_rows >= 8 && hbuf_rows % 8 == 0,
              "emulator: hbuf_rows must be a positive multiple of 8 (an n-tile)");
  return EmuConfig{int(units), int(replicas), int(hbuf_rows), int(elem_bytes), reverse,
                   static_cast<uint64_t>(seed), int(fault), fma, int(ksplit)};
}

// A bidirectional launch's two directions: the same partition, direction 1
// walking the steps in reverse.
struct BidirConfig {
  EmuConfig dir[2];
};
inline BidirConfig make_bidir_config(int64_t units, int64_t replicas, int64_t hbuf_rows,
                                     int64_t elem_bytes, int64_t seed, at::ScalarType dtype,
                                     bool fma, int64_t ksplit = 1) {
  return BidirConfig{
      {make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, 0, false, dtype, fma, ksplit),
       make_emu_config(units, replicas, hbuf_rows, elem_bytes, seed, 0, true, dtype, fma, ksplit)}};
}

// The cluster tier's emulator configuration (emulate_cluster.cpp; also
// the cluster kernel's host execution, simt_cluster_run.cpp).
struct ClusterEmuConfig {
  int units = 0, replicas = 1, max_cluster = kMaxClusterCtas, elem_bytes = 2;
  bool reverse = false;
  uint64_t seed = 0;
  // Test hook, a deliberately broken protocol: 0 the kernel's; 1 no wait;
  // 2 one row fewer bytes expected; 3 one buffer (and mbarrier) for every
  // step; 4 a CTA skips its last peer; 5 the expected bytes include the
  // CTA's own units; 6 (slice_push) a group leaves one bracket early, before
  // the barrier after its gate math; 7 (slice_push) a chunk's last group
  // leaves after that chunk's brackets instead of at the step's end.
  int fault = 0;
  bool slice_push = true;  // ClusterPartition::slice_push
  int group = 1;           // ClusterPartition::group
  int red_pad = 8;         // ClusterPartition::red_pad
};

inline ClusterEmuConfig make_cluster_emu_config(int64_t units, int64_t replicas, int64_t cluster,
                                                int64_t elem_bytes, int64_t seed, int64_t fault,
                                                bool reverse, at::ScalarType dtype,
                                                bool slice_push = true, int64_t group = 1,
                                                int64_t red_pad = 8) {
  TORCH_CHECK(units > 0 && replicas > 0, "emulator: units and replicas must be positive");
  TORCH_CHECK(cluster >= 2 && cluster <= kMaxClusterCtas, "emulator: clusters of 2 to ",
              kMaxClusterCtas, " CTAs");
  const int64_t need = dtype == at::kFloat ? 4 : 2;
  TORCH_CHECK(dtype == at::kDouble ? (elem_bytes == 2 || elem_bytes == 4) : elem_bytes == need,
              "emulator: elem_bytes ", elem_bytes, " does not match dtype ", dtype);
  TORCH_CHECK(fault >= 0 && fault <= 7, "emulator: fault must be 0..7");
  TORCH_CHECK(fault < 6 || slice_push, "emulator: faults 6 and 7 break the pipelined push");
  return ClusterEmuConfig{int(units),  int(replicas), int(cluster), int(elem_bytes),
                          reverse,     static_cast<uint64_t>(seed), int(fault), slice_push,
                          int(group), int(red_pad)};
}

// The operand value the tensor cores see: fp32 rounded to TF32 with the
// kernel's own function; fp16/bf16 as they are; float64 unrounded.
template <typename scalar_t>
double operand(scalar_t x) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = tf32_round_bits(u);
    float r;
    std::memcpy(&r, &u, 4);
    return r;
  } else {
    return static_cast<double>(x);
  }
}

// An A fragment [lane][a_elems] as the 16 x kk tile it holds (layout.h's A map).
inline void a_tile(int kk, const double* frag, double (&A)[16][16]) {
  const int ae = a_elems(kk);
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < ae; ++e) {
      const Coord a = a_coord(kk, lane, e);
      A[a.row][a.col] = frag[lane * ae + e];
    }
  }
}

// The kk x 8 B tile of k-tile kt whose columns are h buffer rows row0 ..
// row0 + 7 (layout.h's B map), as the tensor cores see the operands.
template <typename scalar_t>
void b_tile(int kk, const scalar_t* hbuf, int pitch, int row0, int kt, double (&Bm)[16][8]) {
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < b_elems(kk); ++e) {
      const Coord bc = b_coord(kk, lane, e);
      Bm[bc.row][bc.col] = operand(hbuf[size_t(row0 + bc.col) * pitch + kt * kk + bc.row]);
    }
  }
}

// One warp's MMAs of a chunk, as the grid kernels compute them (slice.cuh's
// mma_mtiles, all m-tiles at once over a few n-tiles a pass; per output
// the same sums): `frags` holds its
// fragments [f][lane][a_elems] as the kernel's registers, fragment f =
// local k-tile f / mtiles (h buffer k-tile warp + (f / mtiles) * kWarps) of
// m-tile f % mtiles, n_frags of them. Per output, one MMA per k-tile in
// ascending order, each adding its kk products to the running sum in
// mma_t; the sums go through the C map to this warp's tile of `red`
// (red_rows rows, pitch kRedPitch).
template <typename mma_t, typename scalar_t>
void mma_warp_chunk(int kk, int mtiles, int n_frags, int warp, const double* frags,
                    const scalar_t* hbuf, int pitch, int q0, int n_tiles, mma_t* red,
                    int red_rows) {
  std::vector<mma_t> acc(size_t(mtiles) * kChunkNTiles * 16 * 8, mma_t(0));
  auto at = [&](int m, int nt, int i, int n) -> mma_t& {
    return acc[((size_t(m) * kChunkNTiles + nt) * 16 + i) * 8 + n];
  };
  for (int f = 0; f < n_frags; ++f) {
    const int kt = warp + (f / mtiles) * kWarps, m = f % mtiles;
    double A[16][16] = {};
    a_tile(kk, frags + size_t(f) * 32 * a_elems(kk), A);
    for (int nt = 0; nt < n_tiles; ++nt) {
      double Bm[16][8] = {};
      b_tile(kk, hbuf, pitch, q0 + nt * 8, kt, Bm);
      for (int i = 0; i < 16; ++i) {
        for (int n = 0; n < 8; ++n) {
          mma_t s = at(m, nt, i, n);
          for (int k = 0; k < kk; ++k) s += mma_t(A[i][k]) * mma_t(Bm[k][n]);
          at(m, nt, i, n) = s;
        }
      }
    }
  }
  for (int m = 0; m < mtiles; ++m) {
    for (int nt = 0; nt < n_tiles; ++nt) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int e = 0; e < kCElems; ++e) {
          const Coord cc = c_coord(lane, e);
          red[red_index(warp, m * 16 + cc.row, nt * 8 + cc.col, red_rows)] =
              at(m, nt, cc.row, cc.col);
        }
      }
    }
  }
}

// One warp's partial sums of a chunk in exact fp32, as fma_mtiles
// (csrc/cuda/persistent/slice.cuh) computes them, lane by lane with
// layout.h's FMA maps: lane l sums weight(mt, l, kt, e) * h over its k-tiles
// (ascending) and its 4 k (ascending) by fused multiply-adds from zero; lane
// l < 16 adds lane l + 16's sum; the result is the warp's partial sum of row
// mt * 16 + fma_row(l), column n in `red` (red_rows rows per warp). mma_t:
// float (the kernel's arithmetic) or double (float64 inputs: the
// decomposition alone).
template <typename mma_t, typename scalar_t, typename Weight>
void fma_warp_chunk(int mtiles, int n_ktiles, int warp, const Weight& weight,
                    const scalar_t* hbuf, int pitch, int q0, int n_tiles, mma_t* red,
                    int red_rows) {
  const int cols = n_tiles * 8;
  std::vector<mma_t> acc(size_t(32) * mtiles * cols, mma_t(0));
  for (int lane = 0; lane < 32; ++lane) {
    for (int mt = 0; mt < mtiles; ++mt) {
      for (int n = 0; n < cols; ++n) {
        mma_t s = 0;
        for (int i = 0; i < n_ktiles; ++i) {
          const int kt = warp + i * kWarps;
          for (int e = 0; e < kFmaK; ++e) {
            const int k = kt * 8 + fma_k0(lane) + e;
            s = std::fma(mma_t(weight(mt, lane, kt, e)), mma_t(hbuf[size_t(q0 + n) * pitch + k]), s);
          }
        }
        acc[(size_t(lane) * mtiles + mt) * cols + n] = s;
      }
    }
  }
  for (int lane = 0; lane < 16; ++lane) {
    for (int mt = 0; mt < mtiles; ++mt) {
      for (int n = 0; n < cols; ++n) {
        red[red_index(warp, mt * 16 + fma_row(lane), n, red_rows)] =
            acc[(size_t(lane) * mtiles + mt) * cols + n] +
            acc[(size_t(lane + 16) * mtiles + mt) * cols + n];
      }
    }
  }
}

// make_schedule and the kernels' run-length encoded cursor must agree on
// every step (including what the cursor says of the next step).
inline void check_cursor(const std::vector<Step>& steps, const Schedule& sched) {
  StepCursor cur;
  cur.begin(sched);
  for (size_t s = 0; s < steps.size(); ++s, cur.advance(sched)) {
    TORCH_CHECK(cur.valid(sched), "emulator: cursor ended at step ", s);
    const Step& st = steps[s];
    const bool last = s + 1 == steps.size();
    TORCH_CHECK(cur.cur.row0 == st.row0 && cur.cur.bs == st.bs && cur.cur.carry == st.carry &&
                    (s == 0 || cur.cur.prev_row0 == st.prev_row0) &&
                    cur.cur.carry_next == st.carry_next &&
                    (st.carry_next == 0 || cur.cur.next_row0 == st.next_row0) &&
                    cur.cur.bs_next == (last ? 0 : steps[s + 1].bs) &&
                    (last || cur.cur.next_row0 == steps[s + 1].row0),
                "emulator: step cursor disagrees with make_schedule at step ", s, ": row0 ",
                cur.cur.row0, " vs ", st.row0, ", bs ", cur.cur.bs, " vs ", st.bs, ", carry ",
                cur.cur.carry, " vs ", st.carry);
  }
  TORCH_CHECK(!cur.valid(sched), "emulator: cursor runs past the last step");
}

// The flag value a CTA waits for from a producer of its replica before a
// step (0: none), under the kernel's protocol or a test's broken one.
inline uint32_t emu_wait(const EmuConfig& cfg, const StepInfo& st, int rows, bool same_replica,
                         bool is_self) {
  if (!needs_exchange(st, rows) || !same_replica) return 0;
  switch (cfg.fault) {
    case 1: return 0;
    case 2: return wait_value(st.step) - 1;
    case 3: return is_self ? wait_value(st.step) : 0;
    default: return wait_value(st.step);
  }
}

}  // namespace persist
}  // namespace rnnfuse
