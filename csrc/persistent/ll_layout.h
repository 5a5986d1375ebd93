// The LL exchange microbenchmark's layout (ll_exchange_bench.cu): the grid
// tier's exchange with the flag in the data, as NCCL's LL protocol. Each
// 8-byte word holds two bf16 of h (the low 4 bytes) and the number of the
// step that wrote them plus one (the high 4), written by one 64-bit store,
// which is single-copy atomic: a reader that sees the tag sees the data
// stored with it, with no fence, no flag and no acquire. Two buffers by
// step parity: a CTA writes step t + 2 only after gathering step t + 1
// from every CTA, which each writes only after gathering step t, so no
// reader of step t is still polling a word when it is overwritten.
// Plain C++ for the host (tests, the op) and the kernel.
#pragma once

#include <cstdint>

#include "divider.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

struct LlExchange {
  int hidden = 0, batch = 0, ctas = 0;
  int units = 0;  // per CTA: hidden / ctas, even
  RNNFUSE_PHD int words_per_row() const { return hidden / 2; }
  RNNFUSE_PHD int cta_words() const { return units / 2; }
  // Words a CTA gathers each step, read two at a time (16-byte loads).
  RNNFUSE_PHD int pairs() const { return batch * words_per_row() / 2; }
  // Word w of row b in the buffer of parity s (0, 1).
  RNNFUSE_PHD int64_t word(int s, int b, int w) const {
    return (int64_t(s) * batch + b) * words_per_row() + w;
  }
  RNNFUSE_PHD int64_t words() const { return 2 * int64_t(batch) * words_per_row(); }
  // The tag step t's words carry (0: never written).
  RNNFUSE_PHD static uint32_t tag(int64_t t) { return uint32_t(t + 1); }
  // The gathered h in shared memory, all rows: batch x hidden bf16.
  RNNFUSE_PHD int64_t smem_bytes() const { return int64_t(batch) * hidden * 2; }
};

RNNFUSE_PHD LlExchange make_ll_exchange(int hidden, int batch, int ctas) {
  LlExchange x;
  x.hidden = hidden;
  x.batch = batch;
  x.ctas = ctas;
  x.units = ctas > 0 ? hidden / ctas : 0;
  return x;
}

// Why the bench cannot run this layout (nullptr: it can).
RNNFUSE_PHD const char* ll_exchange_error(const LlExchange& x) {
  if (x.hidden < 4 || x.batch < 1 || x.ctas < 1) return "hidden >= 4, batch >= 1, ctas >= 1";
  if (x.hidden % 4 != 0) return "hidden must be a multiple of 4 (16-byte reads of two words)";
  if (x.hidden % x.ctas != 0 || x.units % 2 != 0) {
    return "each CTA must own an even number of units: 2 * ctas must divide hidden";
  }
  if (x.smem_bytes() > 200 * 1024) return "batch x hidden bf16 exceed the shared memory";
  return nullptr;
}

// ---- The grid forward kernel's exchange with the flag in the data
// (kernel.cuh, plan.ll; RNNFUSE_PERSISTENT_EXCHANGE=ll). The same protocol
// as the bench above, over the kernel's own decomposition (layout.h): word
// (s, r, m, j) holds unit j of replica r's local rows m * rows_per_word ...
// (16-bit elements: two rows, 2m in the low half and 2m + 1 in the high
// half of the low 4 bytes; fp32: row m), with the tag of the step that
// wrote it in the high 4 bytes. Rows, not units, are paired: the epilogue's
// items of rows 2m and 2m + 1 of a unit sit on neighbouring lanes of one
// warp (Partition::item_row), so one shuffle completes a word. A CTA reads
// two neighbouring units' words per 16-byte load, so H must be even.
// Why two buffers suffice: a CTA writes row m's word of step s + 2 only
// after it gathered row m of step s + 1 from every CTA of its replica (each
// CTA owns some units, and every carried row is gathered whole), and each
// of those wrote its step s + 1 word of row m only after its own gather of
// row m at step s (a barrier between). A CTA that sees a word's tag past
// the one it waits for traps (the protocol broken), as a wait past the
// watchdog does.
// Trivial (no member initializers): a kernel parameter, cleared with the
// launch's memset.
struct GridLl {
  int hidden, replicas;
  int rows_per_word;  // 2 (16-bit elements) or 1 (fp32)
  int word_rows;      // per replica and buffer: ceil(max replica rows / rows_per_word)
  Divider pairs;          // of a word row: hidden / 2 (16-byte loads of two words)
  Divider by_replicas;    // R: Partition::replica_rows without a division on the step's path
  // Replica r's local rows among the first `bs` batch rows (replica_rows).
  RNNFUSE_PHD int replica_rows(int r, int bs) const {
    return bs > r ? by_replicas.quotient(bs - r + replicas - 1) : 0;
  }
  RNNFUSE_PHD int64_t word(int s, int r, int m, int j) const {
    return ((int64_t(s) * replicas + r) * word_rows + m) * hidden + j;
  }
  RNNFUSE_PHD int64_t words() const { return 2 * int64_t(replicas) * word_rows * hidden; }
  // The tag the words of step s carry (0: never written).
  RNNFUSE_PHD static uint32_t tag(int32_t s) { return uint32_t(s) + 1u; }
};

RNNFUSE_PHD GridLl make_grid_ll(const Partition& p, int elem_bytes) {
  GridLl x{};
  x.hidden = p.hidden;
  x.replicas = p.replicas;
  x.rows_per_word = elem_bytes == 2 ? 2 : 1;
  x.word_rows = (p.max_replica_rows() + x.rows_per_word - 1) / x.rows_per_word;
  x.pairs = make_divider(p.hidden / 2 > 0 ? p.hidden / 2 : 1);
  x.by_replicas = make_divider(p.replicas > 0 ? p.replicas : 1);
  return x;
}

// Why the grid forward cannot exchange through LL words (nullptr: it can).
RNNFUSE_PHD const char* grid_ll_error(const Partition& p) {
  if (p.hidden % 2 != 0) return "odd hidden size: a 16-byte read takes two units' words";
  // exchange.cuh poll_ll_rows addresses a replica's words by 32-bit offsets.
  if (int64_t(p.max_replica_rows()) * p.hidden >= (int64_t(1) << 31)) {
    return "a replica's LL words exceed 32-bit offsets";
  }
  return nullptr;
}

// ---- The grid backward's exchange of gate gradients through LL words
// (kernel_bwd.cuh with PersistBwdArgs::ll_xch; plan.ll): the forward's
// protocol over the G*H columns of the gate gradients (GridLl with hidden =
// G*H): word (s, r, m, k) holds column k (gate k / H of unit k % H) of
// replica r's local rows m * rows_per_word ..., the tag of the walk step
// that wrote it in the high 4 bytes. A CTA polls its part's columns
// [part_k0, part_k0 + part_width), two per 16-byte load.
// Why two buffers suffice (a CTA reads only its part's columns, so the
// forward's argument needs one more link): a CTA R reads row m of step t at
// step t + 1; what it read goes into its partial sums of row m (or, whole K,
// into its own words of row m), which the parts of its unit group owning row
// m's items wait for before they write their words of row m of step t + 1;
// every CTA's unit group reads all G*H columns over its parts, so the writer
// of any word of row m of step t + 2 first waited, through its own part or
// its siblings' partial sums, for words of row m of step t + 1 that depend
// on R's read.
RNNFUSE_PHD GridLl make_grid_ll_bwd(const BwdPartition& p, int elem_bytes) {
  GridLl x = make_grid_ll(p, elem_bytes);
  x.hidden = p.k_width();
  x.pairs = make_divider(x.hidden / 2 > 0 ? x.hidden / 2 : 1);
  return x;
}

// Why the grid backward cannot exchange through LL words (nullptr: it can).
// 16-bit words pair rows 2m and 2m + 1 of an item column on neighbouring
// lanes; a K-split part's items start at an even item since each part owns
// whole units (bwd_partition_error: units a multiple of ksplit).
RNNFUSE_PHD const char* grid_bwd_ll_error(const BwdPartition& p) {
  if (p.hidden % 2 != 0) return "odd hidden size: a 16-byte read takes two columns' words";
  if (int64_t(p.max_replica_rows()) * p.k_width() >= (int64_t(1) << 31)) {
    return "a replica's LL words exceed 32-bit offsets";
  }
  return nullptr;
}

}  // namespace persist
}  // namespace rnnfuse
