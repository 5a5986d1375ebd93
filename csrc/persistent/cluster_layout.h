// The cluster tier's decomposition (sm_90), on top of layout.h's grid
// partition, as __host__ __device__ code: the cluster kernel
// (csrc/cuda/persistent/cluster_kernel.cuh), its CPU emulator
// (emulate_cluster.cpp) and the planner all call these functions.
//
// - One thread-block cluster per batch replica holds all of W_hh. The
//   replica's grid slices (Partition: `ctas` slices of `units` units, each
//   exactly one grid-tier CTA's slice) are dealt to the cluster's CTAs in
//   runs of `slices`: CTA c (its rank in the cluster) runs slices
//   c*NG .. min((c+1)*NG, P) - 1 one after another, each with the grid
//   kernel's fragments, k split, reduction order and gate math. So the
//   cluster tier's results equal the grid tier's bit for bit at the same
//   units and replicas.
// - A warp's A fragments of all its slices, in order (slice g, k-tile ks),
//   form "pairs" (the two m-tiles of one k-tile): the first kRegPairs live
//   in registers, the rest in shared memory.
// - Exchange (no global memory, no grid-wide flags): each CTA holds two h
//   buffers (all H units of its replica's rows) and two mbarriers. Step s
//   reads buffer s & 1. A CTA writes its own units of h_s into its buffer
//   (s+1) & 1 and pushes them with st.async into every peer's buffer
//   (s+1) & 1, completing bytes on the peer's mbarrier (s+1) & 1; before
//   step s+1 it waits for that mbarrier's phase, having declared the bytes
//   its peers send (expect_bytes). Only rows that continue (carry) travel.
// - Pipelined push (slice_push): a slice's words go out as soon as every
//   thread can see them (the bracket after its gate math), overlapping the
//   later slices' MMAs; the last slice's words (of every chunk of rows)
//   after the step's last barrier. A peer's phase still completes only with
//   those bytes, which leave after every read of this CTA's current buffer,
//   so the double buffer stays safe. (Sending a chunk's last slice after
//   that chunk's brackets would not be: with a shrinking packed batch the
//   continuing rows can all lie in an earlier chunk than the last one read;
//   the emulator catches it.) Otherwise (slice_push = 0) all words at the
//   step's end.
// - Slice groups (`group` = 1, 2 or 4 slices per bracket): a bracket runs
//   the MMAs of `group` consecutive slices, each in its own accumulator
//   slots (slice d of the group: slots d * (kChunkNTiles / group) + nt), so
//   their k-tile chains are independent and interleave; one epilogue pass
//   serves the whole group with more of its lanes busy, and a step has
//   ceil(NG / group) + 1 brackets per chunk instead of NG + 1. A warp's
//   pairs are stored group by group, k-tile by k-tile, slice by slice
//   (w_pair), so each group is one run of pairs in which pair i belongs to
//   slice i % group of the group: compile-time in the kernel's unrolled
//   register loop. Every output is still one slice's k-tiles per warp in
//   order, warps added in order: the bits do not depend on the group.
//   Pushes go by group (a group's words once its epilogue is visible).
#pragma once

#include "layout.h"

namespace rnnfuse {
namespace persist {

constexpr int kMaxClusterCtas = 16;              // sm_90 with the non-portable opt-in
constexpr int kPortableClusterCtas = 8;
constexpr int kRegPairs = kRegFrags / kMTiles;   // k-tiles (both m-tiles) kept in registers

// Words [w0, w1) of a CTA's units that one push sends, and their
// 16-byte-aligned middle [v0, v1) (ClusterPartition::word_span).
struct alignas(16) PushSpan {
  int w0, v0, v1, w1;
};

struct ClusterPartition : Partition {
  int slices;   // NG: grid slices per CTA
  int cluster;  // CTAs per cluster (the launch's cluster dimension)
  int hb_rows;  // rows of each h buffer: replica rows rounded up to an n-tile
  int chunk;    // batch rows per accumulation chunk (multiple of 8, <= kChunkRows)
  int slice_push;  // 1: push each group's words as they are ready; 0: all at the step's end
  int group;    // slices per bracket: 1, 2 or 4, with group * chunk <= kChunkRows
  int red_pad;  // floats of padding per partial-sum tile row: 8 (fewer bank conflicts) or 0
  int col_bits;  // log2 of a unit's epilogue columns: group * chunk rounded up to a power of two

  RNNFUSE_PHD int cluster_grid() const { return cluster * replicas; }
  // A launch of one or both directions of a layer (a bidirectional layer's
  // column blocks, through row strides): cluster id i runs direction
  // i / replicas, replica i % replicas of it. Directions share nothing.
  RNNFUSE_PHD int cluster_direction(int cluster_id) const { return cluster_id / replicas; }
  RNNFUSE_PHD int cluster_replica(int cluster_id) const { return cluster_id % replicas; }
  // Slices CTA c runs (the last CTA may run fewer).
  RNNFUSE_PHD int cta_slices(int c) const {
    const int n = ctas - c * slices;
    return n < slices ? n : slices;
  }
  RNNFUSE_PHD int slice_of(int c, int g) const { return c * slices + g; }
  // Hidden units [unit_begin, unit_end) of CTA c.
  RNNFUSE_PHD int unit_begin(int c) const { return c * slices * units; }
  RNNFUSE_PHD int unit_end(int c) const {
    const int e = (c + 1) * slices * units;
    return e < hidden ? e : hidden;
  }
  RNNFUSE_PHD int span(int c) const { return unit_end(c) - unit_begin(c); }

  // ---- slice groups: group b of CTA c is slices [b * group, b * group + group_len).
  RNNFUSE_PHD int groups(int c) const { return ceil_div(cta_slices(c), group); }
  RNNFUSE_PHD int group_len(int c, int b) const {
    const int n = cta_slices(c) - b * group;
    return n < group ? n : group;
  }
  // Slice d of a group: accumulator slots d * (kChunkNTiles / group) + nt,
  // partial-sum tile columns [d * chunk, (d + 1) * chunk) (slice.cuh).

  // ---- W storage: warp w's pair for (slice g, k-tile ks): group by group,
  // then k-tile, then the slice within the group (a short last group leaves
  // its missing slices' pairs unused). group = 1: g * warp_ktiles(w) + ks.
  RNNFUSE_PHD int w_pair(int w, int g, int ks) const {
    return (g / group) * group * warp_ktiles(w) + ks * group + g % group;
  }
  // The inverse: slice (>= cta_slices: a hole) and k-tile step of warp w's pair i.
  RNNFUSE_PHD int pair_slice(int w, int i) const {
    const int run = group * (warp_ktiles(w) > 0 ? warp_ktiles(w) : 1);
    return i / run * group + i % group;
  }
  RNNFUSE_PHD int pair_ks(int w, int i) const {
    const int run = group * (warp_ktiles(w) > 0 ? warp_ktiles(w) : 1);
    return i % run / group;
  }
  // Pairs per warp including a short last group's holes (warp 0 has the most k-tiles).
  RNNFUSE_PHD int stored_pairs() const { return ceil_div(slices, group) * group * warp_ktiles(0); }
  // Shared-memory pairs per warp.
  RNNFUSE_PHD int smem_pairs() const {
    const int n = stored_pairs() - kRegPairs;
    return n > 0 ? n : 0;
  }
  // Index (in 16-byte units) of lane 0's fragment of m-tile mt of warp w's
  // pair >= kRegPairs. Pair-major, [pair - kRegPairs][warp][mt][lane], so
  // the kernel's shared-memory MMA loop addresses it with the pair and
  // constants: warp-major needed smem_pairs(), a division by the runtime
  // group, which the register-bound kernel recomputed per iteration.
  RNNFUSE_PHD int w_smem_index(int w, int pair, int mt) const {
    return (((pair - kRegPairs) * kWarps + w) * kMTiles + mt) * 32;
  }

  // ---- exchange: CTA c sends each continuing row's units as 4-byte words
  // (16-byte vectors where aligned) to every other CTA of its cluster.
  RNNFUSE_PHD int push_words(int c, int eb) const { return (span(c) * eb + 3) / 4; }
  // Pipelined push: words [push_word_begin, push_word_end) of CTA c's units
  // are complete once its slice g is: the words its first g + 1 slices
  // cover entirely (a word straddling two slices waits for the second), the
  // last slice everything up to push_words (a pad element travels with it).
  RNNFUSE_PHD int push_word_end(int c, int g, int eb) const {
    if (g >= cta_slices(c) - 1) return push_words(c, eb);
    return (g + 1) * units * eb / 4;
  }
  RNNFUSE_PHD int push_word_begin(int c, int g, int eb) const {
    return g == 0 ? 0 : push_word_end(c, g - 1, eb);
  }
  // Pipelined push by group: the words group b of CTA c completes.
  RNNFUSE_PHD int group_word_begin(int c, int b, int eb) const {
    return push_word_begin(c, b * group, eb);
  }
  RNNFUSE_PHD int group_word_end(int c, int b, int eb) const {
    return push_word_end(c, b * group + group_len(c, b) - 1, eb);
  }
  // Words [w0, w1) of CTA c's units and their 16-byte-aligned middle
  // [v0, v1) (rows are whole 16-byte units: h_pitch), sent as vectors; the
  // words before and after it go one by one. The middle is empty (v0 = v1 =
  // w1) where no whole vector fits, so a slice of 10 words still sends 2
  // vectors.
  RNNFUSE_PHD PushSpan word_span(int c, int w0, int w1, int eb) const {
    const int row_word = unit_begin(c) * eb / 4;  // whole words: cluster_partition_error
    const int a = w0 + (4 - (row_word + w0) % 4) % 4;
    const int b = w1 - (row_word + w1) % 4;
    return a < b ? PushSpan{w0, a, b, w1} : PushSpan{w0, w1, w1, w1};
  }
  // CTA c's push b of a chunk: with slice_push group b's words (bracket
  // b + 2 sends them; the last group's leave at the step's end), without it
  // every word at the step's end (b = groups(c) - 1). The kernel makes its
  // CTA's spans once, into shared memory (push_spans() slots): made at every
  // bracket, they were about 130 instructions ahead of the bracket's MMAs.
  RNNFUSE_PHD PushSpan push_span(int c, int b, int eb) const {
    return slice_push ? word_span(c, group_word_begin(c, b, eb), group_word_end(c, b, eb), eb)
                      : word_span(c, 0, push_words(c, eb), eb);
  }
  RNNFUSE_PHD int push_spans() const { return ceil_div(slices, group); }

  // Bytes CTA c expects from its peers at a step with `rows` continuing rows.
  RNNFUSE_PHD uint32_t expect_bytes(int c, int rows, int eb) const {
    uint32_t words = 0;
    for (int q = 0; q < cluster; ++q) {
      if (q != c) words += uint32_t(push_words(q, eb));
    }
    return uint32_t(rows) * words * 4u;
  }

  // ---- shared-memory tiles
  // Partial sums [kWarps][kRows][pitch]: a group's chunks side by side,
  // plus red_pad floats (8 as the grid kernel's; at 8 or 24 columns a
  // half-warp's float2 stores meet 2-way bank conflicts, a few stores per
  // bracket, cheaper than the shared memory a wider pitch takes from W at
  // LSTM H=768; 0 where a group's tiles would not fit otherwise).
  RNNFUSE_PHD int red_pitch() const { return group * chunk + red_pad; }

  // ---- a group's epilogue items: item e is unit epilogue_unit(e) at
  // partial-sum tile column epilogue_col(e) = d * chunk + nn (slice d of the
  // group, chunk row nn), thread e % kThreads. Columns per unit are group *
  // chunk padded to a power of two, not kChunkRows: a group of one slice in
  // chunks of 8 rows has 64 items on warps 0-1, where 32 columns per unit
  // put 8 of them on lanes 0-7 of every warp and all 8 warps ran the gate
  // math.
  RNNFUSE_PHD int epilogue_items() const { return units << col_bits; }
  RNNFUSE_PHD int epilogue_unit(int e) const { return e >> col_bits; }
  RNNFUSE_PHD int epilogue_col(int e) const { return e & ((1 << col_bits) - 1); }
  // Staged x_proj rows [hb_rows][gates][x_pitch] (elements): a CTA's widest
  // span rounded up to 16 bytes.
  RNNFUSE_PHD int x_pitch(int eb) const {
    const int per16 = 16 / eb;
    return ceil_div(slices * units, per16) * per16;
  }
};

// Step s reads h buffer and mbarrier s & 1; it waits for its peers only
// when it has continuing rows (at step 0 every row starts from h0).
RNNFUSE_PHD int cluster_buffer(int32_t step) { return step & 1; }
RNNFUSE_PHD bool cluster_waits(const StepInfo& st, int carry_rows) {
  return st.step > 0 && carry_rows > 0;
}

RNNFUSE_PHD ClusterPartition make_cluster_partition(int gates, int hidden, int batch, int units,
                                                    int replicas, int max_cluster, int elem_bytes,
                                                    bool slice_push = true, int group = 1,
                                                    int red_pad = 8) {
  ClusterPartition p{};
  static_cast<Partition&>(p) = make_partition(gates, hidden, batch, units, replicas, elem_bytes);
  p.slices = ceil_div(p.ctas, max_cluster);
  p.cluster = ceil_div(p.ctas, p.slices);
  p.hb_rows = ceil_div(p.max_replica_rows(), 8) * 8;
  p.chunk = p.hb_rows < kChunkRows ? p.hb_rows : kChunkRows;
  p.slice_push = slice_push ? 1 : 0;
  p.group = group;
  p.red_pad = red_pad;
  p.col_bits = ceil_log2(group * p.chunk);
  return p;
}

// Why the cluster kernel cannot run this partition (nullptr: it can).
RNNFUSE_PHD const char* cluster_partition_error(const ClusterPartition& p, int elem_bytes) {
  if (p.gates * p.units > kRows) return "units x gates exceed a slice's rows";
  if (p.cluster < 2) return "one CTA: st.async needs a cluster of at least two";
  if (p.cluster > kMaxClusterCtas) return "more than 16 CTAs per cluster";
  // Every CTA's units start on a 4-byte boundary of an h row (whole words).
  if ((p.slices * p.units * elem_bytes) % 4 != 0) return "a CTA's units are not whole 4-byte words";
  if (p.max_replica_rows() < 1) return "a replica without rows";
  if (p.group != 1 && p.group != 2 && p.group != 4) return "a slice group is not 1, 2 or 4 slices";
  if (p.group * p.chunk > kChunkRows) return "a slice group's chunks exceed the accumulator slots";
  if (p.group > p.slices) return "a slice group larger than a CTA's slices";
  if (p.red_pad != 0 && p.red_pad != 8) return "the partial-sum tile's padding is not 0 or 8";
  return nullptr;
}

// Shared memory of a cluster-tier CTA, in bytes from the dynamic base.
struct ClusterSmem {
  int64_t wsm;   // W pairs beyond the registers [smem_pairs][kWarps][kMTiles][32] x 16 B
  int64_t red;   // partial sums, two tiles (one per slice in flight)
  int64_t hbuf;  // h buffers [2][hb_rows][h_pitch] elem
  int64_t xs;    // staged x_proj [2][hb_rows][gates][x_pitch] elem
  int64_t cst;   // LSTM cell state [hb_rows][slices*units] fp32
  int64_t bias;  // GRU b_hh [slices][kRows] fp32
  int64_t push;  // push spans [push_spans()] x 16 B
  int64_t mbar;  // two mbarriers
  int64_t total;
};

RNNFUSE_PHD int64_t align16(int64_t x) { return (x + 15) / 16 * 16; }

RNNFUSE_PHD ClusterSmem cluster_smem(const ClusterPartition& p, int elem_bytes, Cell cell) {
  ClusterSmem s{};
  int64_t at = 0;
  s.wsm = at;
  at += int64_t(kWarps) * p.smem_pairs() * kMTiles * 32 * 16;
  s.red = at;
  at += align16(2 * int64_t(kWarps) * kRows * p.red_pitch() * 4);
  s.hbuf = at;
  at += align16(2 * int64_t(p.hb_rows) * p.h_pitch(elem_bytes) * elem_bytes);
  s.xs = at;
  at += align16(2 * int64_t(p.hb_rows) * p.gates * p.x_pitch(elem_bytes) * elem_bytes);
  s.cst = at;
  at += cell == Cell::LSTM ? align16(int64_t(p.hb_rows) * p.slices * p.units * 4) : 0;
  s.bias = at;
  at += cell == Cell::GRU ? align16(int64_t(p.slices) * kRows * 4) : 0;
  s.push = at;
  at += int64_t(p.push_spans()) * int64_t(sizeof(PushSpan));
  s.mbar = at;
  at += 16;
  s.total = at;
  return s;
}

}  // namespace persist
}  // namespace rnnfuse
