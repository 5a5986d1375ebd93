// The cluster tier's backward decomposition (sm_90), as __host__ __device__
// code for the planner, the CPU emulator (emulate_cluster_bwd.cpp) and a
// cluster backward kernel.
//
// The backward step is dh_prev^T = W_hh^T x dgates^T (K = G*H, M = H). The
// grid tier (layout.h's BwdPartition) gives each CTA J output units and
// makes every CTA gather all G*H gate gradients of every row: 4 bytes of h
// per unit per row become G * 2 bytes in the backward (LSTM fp16: 8 B), and
// every CTA reads all of them. A cluster instead splits K where the
// gradients are made (a reduce-scatter):
// - One cluster of P CTAs per batch replica (R replicas). CTA c owns units
//   [c*J, min((c+1)*J, H)) as in the forward: it applies the cell's
//   derivatives to them and so makes their G gate gradients itself. They
//   never leave the CTA (except to global memory for the dW_hh/dx GEMMs):
//   they are the B operand of its MMAs, K local index kl = g*J + jj.
// - Its MMAs take W_hh's rows of its own gates against every output unit:
//   A[j][kl] = W_hh[g*H + c*J + jj][j], M = H (all units, m-tiles of 16),
//   K = G*J. Warp w takes m-tiles w, w + 8, ..., each a chain over the
//   CTA's k-tiles in order; its fragments are stored k-tile by k-tile, its
//   m-tiles inside: fragment f is k-tile f / M, m-tile slot f % M, with the
//   same stride M (mstride) for every warp, so that a kernel templated on M
//   knows each register fragment's accumulator at compile time. M is warp
//   0's m-tile count rounded up to 1, 2, 4 or 6 (the kernel's
//   instantiations; 7 or 8 m-tiles, H > 768, never fit W beside the receive
//   buffers); slots past the last m-tile are holes, never loaded or
//   multiplied. The first kRegFrags fragments sit in registers, the rest in
//   shared memory. So each warp's m-tile chains interleave and no sum
//   crosses warps; a pass covers kBwdAccFloats / (4 M) n-tiles (1 to 4).
// - The result is CTA c's partial dh of every unit: fp32, pushed with
//   st.async to the unit's owner (itself included), into receive buffer
//   (s+1) & 1 at [source c][row n][unit jj], completing bytes on the
//   owner's mbarrier (s+1) & 1. Only rows that continue into the next
//   backward step travel.
// - Step s: wait for mbarrier s & 1 (P * span * carry rows * 4 bytes), then
//   per owned (unit, row): dh = grad_y + carried dh + the P sources' partial
//   sums added in source order 0..P-1 (deterministic), the cell's
//   derivatives (gate_math.h), the gate gradients into global memory and
//   into this CTA's B operand; one barrier; the MMAs; the pushes.
// - Double buffer safety is the forward's argument: a CTA pushes step s's
//   partials only after its wait at step s, which needed every peer's step
//   s-1 push, sent after that peer's last read of its buffer (s+1) & 1.
// Per row and step a CTA sends H * 4 bytes (a reduce-scatter of fp32
// partial sums) where an all-gather of the gate gradients would send
// (P-1) * G*J * elem bytes and need all G*H of them in every CTA's shared
// memory, which at LSTM fp16 H=768 does not fit beside W.
#pragma once

#include "cluster_layout.h"
#include "divider.h"

namespace rnnfuse {
namespace persist {

// Accumulator floats a lane may hold (the forward's SliceAcc: 2 m-tiles x
// 4 n-tiles x 4): a warp's m-tiles x the chunk's n-tiles x 4.
constexpr int kBwdAccFloats = kMTiles * kChunkNTiles * kCElems;

struct ClusterBwdPartition : Partition {
  int hb_rows;  // replica rows rounded up to an n-tile (receive and gradient buffers)
  int chunk;    // batch rows per MMA pass: the accumulators of a warp's m-tiles fit kBwdAccFloats
  int mtiles;   // output m-tiles: ceil(H / 16)
  int mstride;  // M: m-tile slots per warp and k-tile (1, 2, 4 or 6)
  int own_ktiles;  // k-tiles of a CTA's own gradients: ceil(G*J / kk)
  // J as a multiply-high divider: the owner of a unit, a reduction item's
  // row and a k index's gate are quotients by J, many of them per step.
  Divider unit_divider;

  RNNFUSE_PHD int cluster() const { return ctas; }
  RNNFUSE_PHD int cluster_grid() const { return ctas * replicas; }
  RNNFUSE_PHD int cluster_direction(int cluster_id) const { return cluster_id / replicas; }
  RNNFUSE_PHD int cluster_replica(int cluster_id) const { return cluster_id % replicas; }
  RNNFUSE_PHD int unit_begin(int c) const { return c * units; }
  RNNFUSE_PHD int span(int c) const {
    const int n = hidden - c * units;
    return n < units ? n : units;
  }
  RNNFUSE_PHD int owner(int j) const { return unit_divider.quotient(j); }

  // ---- K: CTA c's own gradients, local index kl = g * J + jj
  RNNFUSE_PHD int own_k_padded() const { return own_ktiles * kk; }
  // Row of W_hh behind local k index kl of CTA c, or -1 (padding, or a unit
  // past H in the last CTA).
  RNNFUSE_PHD int64_t own_weight_row(int c, int kl) const {
    if (kl >= gates * units) return -1;
    const int g = unit_divider.quotient(kl), jj = kl - g * units;
    return jj < span(c) ? int64_t(g) * hidden + c * units + jj : -1;
  }
  // The B operand [hb_rows][dg_pitch] (elements): 16 bytes of padding per row.
  RNNFUSE_PHD int dg_pitch(int eb) const { return own_k_padded() + 16 / eb; }

  // ---- M: warp w's m-tiles w, w + kWarps, ...
  RNNFUSE_PHD int warp_mtiles(int w) const {
    return mtiles > w ? (mtiles - w + kWarps - 1) / kWarps : 0;
  }
  RNNFUSE_PHD int warp_mtile(int w, int i) const { return w + i * kWarps; }
  // Fragment slots per warp (holes included), and fragment f's k-tile and m-tile slot.
  RNNFUSE_PHD int warp_frags() const { return mstride * own_ktiles; }
  RNNFUSE_PHD int frag_ktile(int f) const { return f / mstride; }
  RNNFUSE_PHD int frag_mslot(int f) const { return f % mstride; }
  RNNFUSE_PHD int frag_of(int kt, int i) const { return kt * mstride + i; }
  // Is slot i of warp w a real m-tile (not a hole)?
  RNNFUSE_PHD bool real_mslot(int w, int i) const { return warp_mtile(w, i) < mtiles; }
  // Shared-memory fragment slots per warp, and lane 0's 16-byte index of
  // warp w's fragment f >= kRegFrags.
  RNNFUSE_PHD int smem_frags() const {
    const int n = warp_frags() - kRegFrags;
    return n > 0 ? n : 0;
  }
  // Real fragments warp 0 streams from shared memory per pass (holes skipped).
  RNNFUSE_PHD int streamed_frags() const {
    int n = 0;
    for (int f = kRegFrags; f < warp_frags(); ++f) n += real_mslot(0, frag_mslot(f));
    return n;
  }
  RNNFUSE_PHD int w_smem_index(int w, int f) const {
    return (w * smem_frags() + f - kRegFrags) * 32;
  }

  // ---- exchange: receive buffer [source][row][unit] fp32 (rows hb_rows,
  // units J: consecutive threads of the reduction read consecutive units).
  RNNFUSE_PHD int recv_floats() const { return ctas * hb_rows * units; }
  RNNFUSE_PHD int recv_index(int src, int n, int jj) const {
    return (src * hb_rows + n) * units + jj;
  }
  // Bytes CTA c expects at a step with `rows` continuing rows: every
  // source's (itself included) partial sums of its units.
  RNNFUSE_PHD uint32_t expect_bytes(int c, int rows) const {
    return uint32_t(ctas) * uint32_t(span(c)) * uint32_t(rows) * 4u;
  }

  // ---- reduction items: e = n * J + jj, thread e % kThreads, slot e / kThreads.
  RNNFUSE_PHD int items() const { return hb_rows * units; }
  RNNFUSE_PHD int item_row(int e) const { return unit_divider.quotient(e); }
  RNNFUSE_PHD int item_slots() const { return ceil_div(items(), kThreads); }
};

RNNFUSE_PHD ClusterBwdPartition make_cluster_bwd_partition(int gates, int hidden, int batch,
                                                           int units, int replicas,
                                                           int elem_bytes) {
  ClusterBwdPartition p{};
  static_cast<Partition&>(p) = make_partition(gates, hidden, batch, units, replicas, elem_bytes);
  p.hb_rows = ceil_div(p.max_replica_rows(), 8) * 8;
  p.mtiles = ceil_div(hidden, 16);
  p.own_ktiles = ceil_div(gates * units, p.kk);
  p.unit_divider = make_divider(units);
  const int m = p.warp_mtiles(0);
  p.mstride = m <= 2 ? (m < 1 ? 1 : m) : (m + 1) / 2 * 2;
  int n_tiles = kBwdAccFloats / (p.mstride * kCElems);
  n_tiles = n_tiles < 1 ? 1 : n_tiles > kChunkNTiles ? kChunkNTiles : n_tiles;
  p.chunk = n_tiles * 8 < p.hb_rows ? n_tiles * 8 : p.hb_rows;
  return p;
}

// Why a cluster backward kernel cannot run this partition (nullptr: it can).
RNNFUSE_PHD const char* cluster_bwd_partition_error(const ClusterBwdPartition& p) {
  if (p.ctas < 2) return "one CTA: st.async needs a cluster of at least two";
  if (p.ctas > kMaxClusterCtas) return "more than 16 CTAs per cluster";
  if (p.max_replica_rows() < 1) return "a replica without rows";
  if (p.mstride > 6) return "more than 6 output m-tiles per warp (H > 768): no kernel for it";
  return nullptr;
}

// Shared memory of a cluster backward CTA, in bytes from the dynamic base.
struct ClusterBwdSmem {
  int64_t wsm;    // W fragments beyond the registers [kWarps][smem_frags][32] x 16 B
  int64_t recv;   // partial sums received, [2][P][hb_rows][J] fp32
  int64_t dg;     // own gate gradients, the B operand [hb_rows][dg_pitch] elem
  int64_t mbar;   // two mbarriers
  int64_t total;
};

// (The saved activations are read from global memory in the reduction, as
// the grid backward does; the cell does not change the layout.)
RNNFUSE_PHD ClusterBwdSmem cluster_bwd_smem(const ClusterBwdPartition& p, int elem_bytes,
                                            Cell cell) {
  (void)cell;
  ClusterBwdSmem s{};
  int64_t at = 0;
  s.wsm = at;
  at += int64_t(kWarps) * p.smem_frags() * 32 * 16;
  s.recv = at;
  at += align16(2 * int64_t(p.recv_floats()) * 4);
  s.dg = at;
  at += align16(int64_t(p.hb_rows) * p.dg_pitch(elem_bytes) * elem_bytes);
  s.mbar = at;
  at += 16;
  s.total = at;
  return s;
}

}  // namespace persist
}  // namespace rnnfuse
