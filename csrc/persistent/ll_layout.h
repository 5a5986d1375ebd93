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

}  // namespace persist
}  // namespace rnnfuse
