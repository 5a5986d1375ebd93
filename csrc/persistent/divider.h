// Division by a divisor fixed per launch, by multiply-high and shift
// (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994). A 32-bit division by a runtime value compiles to
// about 35 instructions, most of them dependent (I2F.RP, MUFU.RCP, ...);
// the quotient here is three (IMAD.HI, IADD, SHF). The host computes the
// multiplier once, into a partition; the kernel and the CPU emulator divide
// through it, and tests/test_persistent_divider.py checks it against
// Python's // (every divisor to 4096, exhaustively for small numerators,
// and the extremes).
//
// With l = ceil(log2 d) and m' = floor(2^(32+l) / d) + 1, the product
// m' d lies in (2^(32+l), 2^(32+l) + 2^l], so floor(n m' / 2^(32+l)) =
// floor(n / d) for every n < 2^32. m' exceeds 32 bits; m = m' - 2^32 is
// stored, and n m' / 2^32 = umulhi(n, m) + n (exact in 32 bits for
// n < 2^31, the range of the int indices divided here).
#pragma once

#include <cstdint>

#include "layout.h"

namespace rnnfuse {
namespace persist {

struct Divider {
  uint32_t divisor;     // d >= 1
  uint32_t multiplier;  // m = floor(2^32 (2^l - d) / d) + 1
  uint32_t shift;       // l = ceil(log2 d)

  // floor(n / d) for 0 <= n < 2^31.
  RNNFUSE_PHD int quotient(int n) const {
#if defined(__CUDA_ARCH__)
    const uint32_t hi = __umulhi(uint32_t(n), multiplier);
#else
    const uint32_t hi = uint32_t((uint64_t(uint32_t(n)) * multiplier) >> 32);
#endif
    return int((hi + uint32_t(n)) >> shift);
  }
};

// The divider of d (1 <= d < 2^31).
RNNFUSE_PHD Divider make_divider(int d) {
  Divider v{};
  v.divisor = uint32_t(d);
  v.shift = uint32_t(ceil_log2(d));
  v.multiplier =
      uint32_t((uint64_t(1) << 32) * ((uint64_t(1) << v.shift) - uint64_t(d)) / uint64_t(d) + 1);
  return v;
}

}  // namespace persist
}  // namespace rnnfuse
