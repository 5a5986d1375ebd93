// The persistent tier's decomposition, as __host__ __device__ index maps: the
// CUDA kernel (csrc/cuda/persistent/) and the CPU emulator (emulate.cpp) both
// call exactly these functions, so what the CPU tests prove about ownership,
// fragment layouts, the step schedule and the flag protocol is what the GPU
// runs. No ATen, no CUDA headers: it compiles with g++ and nvcc alike.
//
// The decomposition (one launch runs one layer-direction over all steps):
// - R batch replicas x P CTAs each. CTA c of replica r owns hidden units
//   [c*J, min((c+1)*J, H)) and all G gates of them, for the batch rows
//   b = n*R + r of that replica (round-robin, so shrinking packed batches
//   stay balanced). Its weight rows are gate-major: local row g*J + jj is
//   W_hh row g*H + c*J + jj, zero-padded to MT*16 rows.
// - The step GEMM is gates^T = W_slice (M = MT*16) x h^T (N = batch, K = H),
//   with mma.sync (m16n8k16 for fp16/bf16, m16n8k8 for TF32). The 8 warps
//   split K: warp w takes k-tiles w, w+8, w+16, ... Its W fragments stay in
//   registers for the whole sequence. Partial sums are added over warps
//   0..7 in that order (deterministic).
// - Exchange: a CTA writes its h_t slice into y (y is the exchange buffer),
//   then publishes flag[q] = s+1 (release, gpu scope) for processing step s.
//   At step s > 0 a CTA with active rows waits until every CTA q of its
//   replica has flag[q] >= s (acquire), then gathers h_{t-1} from y (L2).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define RNNFUSE_PHD __host__ __device__ __forceinline__
#else
#define RNNFUSE_PHD inline
#endif

namespace rnnfuse {
namespace persist {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMTiles = 2;        // MT: 16-row MMA tiles of a slice (32 weight rows)
constexpr int kRows = kMTiles * 16;
constexpr int kMaxFwdMTiles = 4;  // a grid-tier forward CTA: up to 64 weight rows (J = 16)
constexpr int kChunkNTiles = 4;   // n-tiles (8 batch rows each) per accumulation chunk
constexpr int kChunkRows = kChunkNTiles * 8;
constexpr int kChunkBits = 5;     // log2(kChunkRows)
static_assert(kChunkRows == 1 << kChunkBits, "kChunkBits is log2(kChunkRows)");
constexpr int kRegFrags = 32;     // A fragments (4 x 32-bit registers each) a warp can hold
constexpr int kItemSlots = 2;     // epilogue items per thread and chunk
// Pitch (floats) of a warp's partial-sum tile (red_index): +8 keeps the
// float2 stores of a half-warp on distinct banks.
constexpr int kRedPitch = kChunkRows + 8;
constexpr int kMaxRuns = 256;     // batch-size runs a packed schedule may have

enum class Cell : int { LSTM = 0, GRU = 1 };

RNNFUSE_PHD int gates_of(Cell cell) { return cell == Cell::LSTM ? 4 : 3; }
RNNFUSE_PHD int ceil_div(int a, int b) { return (a + b - 1) / b; }
// The least l with 2^l >= x (x >= 1). The kernels split indices by shift
// and mask over counts padded to a power of two, where a runtime division
// would put its ~35 mostly dependent instructions on a step's path (one
// FLO on the device); the partitions' power-of-two fields use it too.
RNNFUSE_PHD int ceil_log2(int x) {
#if defined(__CUDA_ARCH__)
  return x <= 1 ? 0 : 32 - __clz(x - 1);
#else
  return x <= 1 ? 0 : 32 - __builtin_clz(static_cast<unsigned>(x - 1));
#endif
}

// ---- a grid CTA's MMA passes (slice.cuh mma_mtiles): all of its MT m-tiles
// at once over NG n-tiles a pass, each B fragment feeding MT MMAs. A lane
// holds MT x NG x 4 sums besides its W fragments; with kMmaSums = 32 the
// grid forward and backward kernels stay within 255 registers with no stack
// (sm_80 and sm_90).
constexpr int kMmaSums = 32;
// N-tiles a pass sums at once for MT m-tiles in mma_mtiles' instantiation
// for NT n-tiles (1, or kChunkNTiles): the most (a power of two up to NT)
// whose MT x NG x 4 sums fit kMmaSums.
RNNFUSE_PHD constexpr int mma_pass_ntiles(int mt, int nt) {
  int ng = nt;
  while (ng > 1 && mt * ng * 4 > kMmaSums) ng /= 2;
  return ng;
}
// Passes over a chunk of n_tiles n-tiles: each runs a warp's k-tiles as
// MT x NG independent chains of dependent MMAs, one pass after another (a
// chunk of one n-tile takes the one-n-tile instantiation: one pass).
RNNFUSE_PHD constexpr int mma_passes(int mt, int n_tiles) {
  const int ng = mma_pass_ntiles(mt, n_tiles == 1 ? 1 : kChunkNTiles);
  return (n_tiles + ng - 1) / ng;
}

// Floats of the 8 warps' partial-sum tiles (red_index) of a grid CTA whose
// warp tiles have `rows` rows: the forward's and the backward's shared memory
// both start with them.
RNNFUSE_PHD int grid_red_floats(int rows) { return kWarps * rows * kRedPitch; }

// Storage element of the MMA operands: 2-byte (fp16/bf16, k = 16 per MMA)
// or 4-byte fp32 rounded to TF32 (k = 8 per MMA).
RNNFUSE_PHD int mma_k(int elem_bytes) { return elem_bytes == 2 ? 16 : 8; }

// fp32 -> TF32 as cvt.rna.tf32.f32 rounds: to nearest, ties away from zero,
// 10 mantissa bits kept; the low 13 bits are cleared (the tensor cores ignore
// them). Inf and NaN pass unchanged. Integer arithmetic, so the kernel and
// the emulator round bit-identically.
RNNFUSE_PHD uint32_t tf32_round_bits(uint32_t u) {
  if ((u & 0x7f800000u) == 0x7f800000u) return u;
  return (u + 0x1000u) & 0xffffe000u;
}

// ------------------------------------------------------------- partition
struct Partition {
  int gates;     // G
  int hidden;    // H (= K of the step GEMM)
  int batch;     // B
  int units;     // J: hidden units per CTA
  int ctas;      // P: CTAs per replica
  int replicas;  // R
  int kk;        // k per MMA: 16 or 8
  int ktiles;    // KT = ceil(H / kk)

  RNNFUSE_PHD int grid() const { return ctas * replicas; }
  // CTA index q in the grid (and in the flag array) of CTA c of replica r.
  RNNFUSE_PHD int cta_index(int r, int c) const { return r * ctas + c; }
  RNNFUSE_PHD int replica_of(int q) const { return q / ctas; }
  RNNFUSE_PHD int cta_of(int q) const { return q % ctas; }

  // ---- rows of the weight slice
  RNNFUSE_PHD int first_unit(int c) const { return c * units; }
  // Hidden unit of local row rr of CTA c, or -1 for a padding row.
  RNNFUSE_PHD int row_unit(int c, int rr) const {
    if (rr >= gates * units) return -1;
    const int j = c * units + rr % units;
    return j < hidden ? j : -1;
  }
  RNNFUSE_PHD int row_gate(int rr) const { return rr / units; }
  // Row of W_hh (gate-major, as torch.nn stores it), or -1 for padding.
  RNNFUSE_PHD int64_t weight_row(int c, int rr) const {
    const int j = row_unit(c, rr);
    return j < 0 ? -1 : int64_t(row_gate(rr)) * hidden + j;
  }

  // ---- batch rows of a replica (round-robin)
  RNNFUSE_PHD int64_t replica_row(int r, int n) const { return int64_t(n) * replicas + r; }
  // Rows of replica r among the first `bs` batch rows.
  RNNFUSE_PHD int replica_rows(int r, int bs) const {
    return bs > r ? (bs - r + replicas - 1) / replicas : 0;
  }
  RNNFUSE_PHD int max_replica_rows() const { return replica_rows(0, batch); }

  // ---- m-tiles: a slice's G x J rows in 16-row tiles, at least kMTiles
  // (the cluster tier's slices, and the grid tier's CTAs of up to 8 LSTM or
  // 10 GRU units); a grid-tier CTA of up to 16 units has 3 or 4.
  RNNFUSE_PHD int mtiles() const {
    const int m = ceil_div(gates * units, 16);
    return m > kMTiles ? m : kMTiles;
  }
  RNNFUSE_PHD int rows() const { return mtiles() * 16; }

  // ---- k split over warps
  // k-tiles of warp w: w, w + kWarps, ...; how many there are.
  RNNFUSE_PHD int warp_ktiles(int w) const { return ktiles > w ? (ktiles - w + kWarps - 1) / kWarps : 0; }
  RNNFUSE_PHD int warp_ktile(int w, int i) const { return w + i * kWarps; }
  // Fragment f of a warp holds k-tile i = f / MT of m-tile mt = f % MT.
  RNNFUSE_PHD int warp_frags(int w) const { return warp_ktiles(w) * mtiles(); }
  RNNFUSE_PHD int max_warp_frags() const { return warp_frags(0); }

  // Width K of the gathered rows (the forward gathers h: H).
  RNNFUSE_PHD int k_width() const { return hidden; }

  // ---- shared-memory h buffer: rows of kk-padded K, plus 16 bytes, so that
  // rows stay 16-byte aligned and B-fragment reads hit distinct banks. It
  // holds hbuf_rows batch rows of the replica per gather (a multiple of 8:
  // kChunkRows or more where the shared memory allows, else 16 or 8),
  // processed in chunks of at most kChunkRows.
  RNNFUSE_PHD int k_padded() const { return ktiles * kk; }
  RNNFUSE_PHD int h_pitch(int elem_bytes) const { return k_padded() + 16 / elem_bytes; }

  // ---- epilogue items of a chunk of n_rows batch rows: item e = jj << bits
  // | nn, bits = item_bits(n_rows) (the rows rounded up to a power of two),
  // thread e % kThreads, slot e / kThreads (so each thread has at most
  // kItemSlots). Packed so that a chunk of few rows keeps its items on the
  // first warps, whole: at 8 rows and 16 units, 4 warps with one item each
  // (with 32 per unit it was all 8 warps with two, 8 lanes of 32 busy).
  RNNFUSE_PHD static int item_bits(int n_rows) { return ceil_log2(n_rows); }
  RNNFUSE_PHD int chunk_items(int bits = kChunkBits) const { return units << bits; }
  RNNFUSE_PHD static int item_unit(int e, int bits) { return e >> bits; }
  RNNFUSE_PHD static int item_row(int e, int bits) { return e & ((1 << bits) - 1); }
  // Rows of a step's first chunk (its first gather's, at most hbuf_rows, cut
  // to kChunkRows): a grid kernel loads their epilogue operands before the
  // step's wait, and packs them by these rows, as the chunk's epilogue does.
  RNNFUSE_PHD static int first_chunk_rows(int hbuf_rows, int rows) {
    const int gathered = hbuf_rows < rows ? hbuf_rows : rows;
    return gathered < kChunkRows ? gathered : kChunkRows;
  }

  // ---- the grid kernel's shared memory: the warps' partial-sum tiles
  // (red_index with rows() rows), the GRU's b_hh slice [rows()] fp32, then
  // the h buffer at hbuf_offset() bytes (16-byte aligned: rows() is a
  // multiple of 16).
  RNNFUSE_PHD int red_floats() const { return grid_red_floats(rows()); }
  RNNFUSE_PHD int hbuf_offset() const { return (red_floats() + rows()) * 4; }
};

// Why the grid forward kernel cannot run partition p (nullptr: it can).
RNNFUSE_PHD const char* grid_partition_error(const Partition& p) {
  if (p.units < 1 || p.mtiles() > kMaxFwdMTiles) {
    return "a forward CTA owns 1 to 64 weight rows (G x J)";
  }
  if (p.chunk_items() > kItemSlots * kThreads) {
    return "more than 16 units: a chunk's epilogue items exceed the threads' slots";
  }
  if (p.max_warp_frags() > kRegFrags) return "the W slice exceeds a warp's register fragments";
  if (p.ctas > kThreads) {
    return "more CTAs per replica than a CTA has threads to wait on their flags";
  }
  return nullptr;
}

// The forward partition of `units` units per CTA (all their gates' rows, K =
// H) in `replicas` batch replicas, k-tiles of the elem_bytes' MMA.
RNNFUSE_PHD Partition make_partition(int gates, int hidden, int batch, int units, int replicas,
                                     int elem_bytes) {
  Partition p{};
  p.gates = gates;
  p.hidden = hidden;
  p.batch = batch;
  p.units = units;
  p.ctas = ceil_div(hidden, units);
  p.replicas = replicas;
  p.kk = mma_k(elem_bytes);
  p.ktiles = ceil_div(hidden, p.kk);
  return p;
}

// ------------------------------------------------- backward partition
// The backward step is dh^T = W_hh^T slice x dgates_next^T: a unit group of
// J units (MT = ceil(J / 16) m-tiles of 16 rows, rows = units), K = G*H over
// the gate gradients of the step processed before (in backward order), which
// the CTAs exchange as the forward exchanges h. A[jj][kr] = W_hh[kr][first_unit + jj].
// Every CTA gathers its part of K for all its batch rows, so the gathered
// bytes of a step are (H / J) x B x G*H: a larger J gathers less. J > 16 needs
// K split (the registers hold J x G*H / S) and J <= 16 S (a part's epilogue
// items fit its threads' kItemSlots).
// Split K (ksplit = S > 1, where one CTA's registers cannot hold J x G*H):
// S CTAs share a unit group, CTA c being part c % S of group c / S; part s
// holds and gathers k-tiles [s * KTs, (s + 1) * KTs) (KTs = ceil(KT / S)),
// so each keeps 1/S of the fragments. Per chunk each part writes its
// recurrent partial sums (its warps added in order) to global memory and
// publishes a chunk count (release); each then waits for the other parts'
// counts (acquire) and adds the parts' sums in order 0..S-1, so every part
// sees the same bits; part s applies the epilogue to its share of the
// chunk's items (part_item). A part's partial sums live in two slots
// (chunk count % 2): a part overwrites a slot only after the others have
// published the chunk after the one that read it.
// Everything else (replicas, k split over warps, chunks, items, flags) is
// Partition's; `ktiles` counts k-tiles of K = G*H, `ctas` the groups x S.
constexpr int kMaxBwdMTiles = 4;
constexpr int kBwdMaxRows = kMaxBwdMTiles * 16;
constexpr int kMaxKSplit = 4;
constexpr int kPartialSlots = 2;

struct BwdPartition : Partition {
  int ksplit;  // S: CTAs per unit group

  RNNFUSE_PHD int k_width() const { return gates * hidden; }
  RNNFUSE_PHD int groups() const { return ceil_div(hidden, units); }
  // log2(ksplit): ksplit is 1, 2 or 4 (bwd_partition_error), so the maps
  // below shift and mask. The kernels evaluate them per item every step,
  // where a division by the runtime ksplit cost a division sequence (about
  // 35 mostly dependent instructions) each time.
  RNNFUSE_PHD int ksplit_bits() const { return ksplit == 4 ? 2 : ksplit == 2 ? 1 : 0; }
  RNNFUSE_PHD int group_of(int c) const { return c >> ksplit_bits(); }
  RNNFUSE_PHD int kpart_of(int c) const { return c & (ksplit - 1); }
  // CTA c of the same replica holding part s of c's unit group.
  RNNFUSE_PHD int part_cta(int c, int s) const { return group_of(c) * ksplit + s; }
  RNNFUSE_PHD int first_unit(int c) const { return group_of(c) * units; }
  RNNFUSE_PHD int row_unit(int c, int rr) const {
    const int j = first_unit(c) + rr;
    return rr < units && j < hidden ? j : -1;
  }

  // ---- this CTA's k range: k-tiles [part_kt0, part_kt0 + part_ktiles_of)
  RNNFUSE_PHD int part_ktiles() const { return (ktiles + ksplit - 1) >> ksplit_bits(); }
  RNNFUSE_PHD int part_kt0(int c) const { return kpart_of(c) * part_ktiles(); }
  RNNFUSE_PHD int part_ktiles_of(int c) const {
    const int n = ktiles - part_kt0(c);
    return n < 0 ? 0 : n < part_ktiles() ? n : part_ktiles();
  }
  // Columns of the gate gradients it gathers: [part_k0, part_k0 + part_width).
  RNNFUSE_PHD int part_k0(int c) const { return part_kt0(c) * kk; }
  RNNFUSE_PHD int part_width(int c) const {
    const int n = k_width() - part_k0(c), w = part_ktiles_of(c) * kk;
    return n < 0 ? 0 : n < w ? n : w;
  }
  // Warp w's k-tiles are local k-tiles w, w + kWarps, ... of its part.
  RNNFUSE_PHD int warp_ktiles(int c, int w) const {
    const int n = part_ktiles_of(c);
    return n > w ? (n - w + kWarps - 1) / kWarps : 0;
  }
  // m-tiles of 16 unit rows; fragment f of a warp holds local k-tile f / MT
  // of m-tile f % MT.
  RNNFUSE_PHD int mtiles() const { return ceil_div(units, 16); }
  RNNFUSE_PHD int rows() const { return mtiles() * 16; }
  RNNFUSE_PHD int warp_frags(int c, int w) const { return warp_ktiles(c, w) * mtiles(); }
  RNNFUSE_PHD int max_warp_frags() const { return warp_frags(0, 0); }
  // Every part has k-tiles (the planner only splits where this holds).
  RNNFUSE_PHD bool parts_nonempty() const { return ksplit >= 1 && (ksplit - 1) * part_ktiles() < ktiles; }

  // ---- h buffer: one part's k-tiles per row
  RNNFUSE_PHD int k_padded() const { return part_ktiles() * kk; }
  RNNFUSE_PHD int h_pitch(int elem_bytes) const { return k_padded() + 16 / elem_bytes; }

  // ---- epilogue items (Partition's, packed by `bits`): part s takes items
  // [s * part_items, (s + 1) * part_items) of a chunk; its thread t, slot i:
  // item s * part_items + t + i * kThreads (-1 if none).
  RNNFUSE_PHD int part_items(int bits = kChunkBits) const {
    return (chunk_items(bits) + ksplit - 1) >> ksplit_bits();
  }
  RNNFUSE_PHD int part_item(int c, int tid, int slot, int bits) const {
    const int local = tid + slot * kThreads;
    const int e = kpart_of(c) * part_items(bits) + local;
    return local < part_items(bits) && e < chunk_items(bits) ? e : -1;
  }
  // Floats of one CTA's partial sums (both slots): index
  // (slot * rows + jj) * kChunkRows + nn.
  RNNFUSE_PHD int partial_floats() const { return kPartialSlots * rows() * kChunkRows; }
  RNNFUSE_PHD int partial_index(int slot, int jj, int nn) const {
    return (slot * rows() + jj) * kChunkRows + nn;
  }
  // Floats of the warps' partial-sum tiles in shared memory (red_index with
  // rows() rows); the h buffer follows them.
  RNNFUSE_PHD int red_floats() const { return grid_red_floats(rows()); }
  RNNFUSE_PHD int hbuf_offset() const { return red_floats() * 4; }
};

// Why the kernels cannot run backward partition p (nullptr: they can).
RNNFUSE_PHD const char* bwd_partition_error(const BwdPartition& p) {
  if (p.units < 1 || p.mtiles() > kMaxBwdMTiles) return "a backward CTA owns 1 to 64 units";
  if (p.ksplit != 1 && p.ksplit != 2 && p.ksplit != 4) return "ksplit must be 1, 2 or 4";
  if (!p.parts_nonempty()) return "the K split leaves a part without k-tiles";
  if (p.part_items() > kItemSlots * kThreads) {
    return "more than 16 x ksplit units: a part's epilogue items exceed its threads' slots";
  }
  // With J a multiple of S, part s owns units [s J / S, (s + 1) J / S) at
  // every chunk size. Otherwise an item's part changes with the chunk's rows (part_item), and
  // a part would read the dh and dc state another part wrote the step before
  // with nothing ordering the two (the fibers gave wrong gradients for
  // J = 5, S = 2 on a packed batch).
  if (p.units % p.ksplit != 0) return "units must be a multiple of ksplit";
  if (p.max_warp_frags() > kRegFrags) return "the W^T slice exceeds a warp's register fragments";
  return nullptr;
}

RNNFUSE_PHD BwdPartition make_bwd_partition(int gates, int hidden, int batch, int units,
                                            int replicas, int elem_bytes, int ksplit = 1) {
  BwdPartition p{};
  p.gates = gates;
  p.hidden = hidden;
  p.batch = batch;
  p.units = units;
  p.ksplit = ksplit;
  p.ctas = ceil_div(hidden, units) * ksplit;
  p.replicas = replicas;
  p.kk = mma_k(elem_bytes);
  p.ktiles = ceil_div(gates * hidden, p.kk);
  return p;
}

// Publish / wait values of a split group's partial sums: after its n-th
// chunk (from 0) a part publishes n + 1.
RNNFUSE_PHD uint32_t partial_publish_value(uint32_t chunk) { return chunk + 1u; }
RNNFUSE_PHD int partial_slot(uint32_t chunk) { return int(chunk % kPartialSlots); }

// ------------------------------------------------ mma.sync fragment maps
// From the PTX ISA ("Matrix fragments for mma.m16n8k16" with .f16/.bf16 and
// "mma.m16n8k8" with .tf32). lane = 32*warp-relative thread, g = lane / 4,
// t = lane % 4. Element e of a fragment: for 2-byte types register e / 2
// holds elements e (low half) and e + 1; for TF32 register e holds element e.
struct Coord {
  int row, col;
};

// A (16 x kk, row-major: row = weight row, col = k).
RNNFUSE_PHD Coord a_coord(int kk, int lane, int e) {
  const int g = lane >> 2, t = lane & 3;
  if (kk == 16) {  // a0..a7
    return {g + ((e & 2) ? 8 : 0), 2 * t + (e & 1) + ((e & 4) ? 8 : 0)};
  }
  return {g + ((e & 1) ? 8 : 0), t + ((e & 2) ? 4 : 0)};  // a0..a3, TF32
}
RNNFUSE_PHD int a_elems(int kk) { return kk == 16 ? 8 : 4; }

// B (kk x 8: row = k, col = n, the batch row within the n-tile).
RNNFUSE_PHD Coord b_coord(int kk, int lane, int e) {
  const int g = lane >> 2, t = lane & 3;
  if (kk == 16) return {2 * t + (e & 1) + ((e & 2) ? 8 : 0), g};  // b0..b3
  return {t + ((e & 1) ? 4 : 0), g};                              // b0, b1, TF32
}
RNNFUSE_PHD int b_elems(int kk) { return kk == 16 ? 4 : 2; }

// C/D (16 x 8 fp32: row = weight row, col = n).
RNNFUSE_PHD Coord c_coord(int lane, int e) {
  const int g = lane >> 2, t = lane & 3;
  return {g + ((e & 2) ? 8 : 0), 2 * t + (e & 1)};
}
constexpr int kCElems = 4;

// One warp's partial-sum tile [rows][kChunkRows], pitch kRedPitch.
// `rows`: weight rows per warp tile (a cluster slice's kRows; a grid CTA's
// Partition::rows() forward, BwdPartition::rows() backward).
// `pitch`: the cluster kernel's tiles are as wide as its chunk (cluster_red_pitch).
RNNFUSE_PHD int red_index(int warp, int row, int n, int rows = kRows, int pitch = kRedPitch) {
  return (warp * rows + row) * pitch + n;
}

// ------------------------------------------- exact fp32 (FMA) slice maps
// fp32 with TF32 off runs the same Partition / BwdPartition (k-tiles of 8,
// the same k split over warps and the same register budget) with CUDA-core
// FMAs instead of MMAs. Per k-tile, lane l of a warp holds 4 consecutive k,
// kt * 8 + fma_k0(l) .. + 3, of row fma_row(l) of each 16-row m-tile: one
// "fragment" of 4 registers per (k-tile, m-tile), as TF32's. Each lane sums
// its products k-tile by k-tile (ascending), k ascending within, by fmaf from
// zero; then lane l < 16 adds lane l + 16's sum (the other k half) to its
// own, and stores the warp's partial sum of (row, column). The partial sums
// are added over warps 0..7 as for the MMAs.
constexpr int kFmaK = 4;  // k per lane and k-tile
RNNFUSE_PHD int fma_row(int lane) { return lane & 15; }
RNNFUSE_PHD int fma_k0(int lane) { return (lane >> 4) * kFmaK; }

// ------------------------------------------------------------- schedule
// The steps of a layer-direction in processing order, run-length encoded by
// batch size (a packed batch has at most one run per distinct length), small
// enough for the kernel's parameters. Mirrors make_schedule (schedule.h).
struct StepRun {
  int32_t bs;     // active rows in each step of the run
  int32_t steps;  // how many consecutive steps
};

struct Schedule {
  int64_t n_rows;  // N: rows of x_proj / y
  int32_t n_steps;
  int32_t n_runs;
  int32_t reverse;
  StepRun runs[kMaxRuns];
};

struct StepInfo {
  int64_t row0;       // first row of this step
  int64_t prev_row0;  // first row of the step processed before
  int64_t next_row0;  // first row of the step processed after (0 at the last)
  int32_t bs;         // active rows [0, bs)
  int32_t carry;      // rows [0, carry) continue, [carry, bs) start from h0
  int32_t carry_next; // rows [0, carry_next) continue into the next step
  int32_t bs_next;    // active rows of the next step (0 at the last)
  int32_t step;       // processing index s
};

// Walks a Schedule step by step (forward: rows ascend; reverse: descend).
struct StepCursor {
  StepInfo cur;
  int32_t run, left;

  RNNFUSE_PHD void begin(const Schedule& sc) {
    run = 0;
    left = sc.n_runs > 0 ? sc.runs[0].steps : 0;
    cur.step = 0;
    cur.bs = sc.n_runs > 0 ? sc.runs[0].bs : 0;
    cur.row0 = sc.reverse ? sc.n_rows - cur.bs : 0;
    cur.prev_row0 = 0;
    cur.carry = 0;
    peek(sc);
  }
  RNNFUSE_PHD bool valid(const Schedule& sc) const { return cur.step < sc.n_steps; }
  // The step after this one: next_row0 and carry_next (as make_schedule).
  RNNFUSE_PHD void peek(const Schedule& sc) {
    int32_t bs_next = 0;
    if (cur.step + 1 < sc.n_steps) {
      bs_next = left > 1 ? sc.runs[run].bs : sc.runs[run + 1].bs;
    }
    cur.next_row0 = bs_next == 0 ? 0 : sc.reverse ? cur.row0 - bs_next : cur.row0 + cur.bs;
    cur.carry_next = bs_next < cur.bs ? bs_next : cur.bs;
    cur.bs_next = bs_next;
  }
  RNNFUSE_PHD void advance(const Schedule& sc) {
    const int32_t bs_prev = cur.bs;
    if (--left == 0 && run + 1 < sc.n_runs) {
      ++run;
      left = sc.runs[run].steps;
    }
    const int32_t bs = sc.runs[run].bs;
    cur.prev_row0 = cur.row0;
    cur.row0 = sc.reverse ? cur.row0 - bs : cur.row0 + bs_prev;
    cur.carry = bs_prev < bs ? bs_prev : bs;
    cur.bs = bs;
    ++cur.step;
    peek(sc);
  }
};

// ------------------------------------------------------- flag protocol
// flag[q] holds the number of steps CTA q has published.
RNNFUSE_PHD uint32_t publish_value(int32_t step) { return uint32_t(step) + 1u; }
// What every producer of the replica must have published before a CTA may
// gather h for `step`; 0 means no wait (step 0 starts from h0).
RNNFUSE_PHD uint32_t wait_value(int32_t step) { return uint32_t(step); }
// Does a CTA with `rows` active replica rows at this step read other CTAs' h?
RNNFUSE_PHD bool needs_exchange(const StepInfo& st, int rows) { return st.step > 0 && rows > 0; }

}  // namespace persist
}  // namespace rnnfuse
