// The CPU kernels (kernels.h), written once over ATen's at::vec::Vectorized
// and compiled once per instruction set: the including file defines
// CPU_CAPABILITY (DEFAULT, AVX2, AVX512) and, for AVX2/AVX512, is compiled
// with that instruction set's flags (setup.py). Everything here lives in the
// inline namespace CPU_CAPABILITY, as ATen's own per-ISA code does, so the
// copies never collide.
#pragma once

#ifndef CPU_CAPABILITY
#error "define CPU_CAPABILITY (DEFAULT, AVX2 or AVX512) before including kernels_impl.h"
#endif

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstring>

#include "../gate_math.h"
#include "kernels.h"

namespace rnnfuse {
namespace cpu {
inline namespace CPU_CAPABILITY {

using at::vec::Vectorized;

// ------------------------------------------------------------ lane type
// Lanes<T> lets gate_math.h's templates run on a whole vector: the same
// expressions, evaluated lane by lane, with exp/tanh from ATen's vectorised
// (Sleef) implementations. exp_acc/tanh_acc are found by argument-dependent
// lookup when gate_math.h's templates are instantiated with Lanes.
template <typename T>
struct Lanes {
  Vectorized<T> v;
  Lanes() = default;
  Lanes(const Vectorized<T>& x) : v(x) {}  // NOLINT(google-explicit-constructor)
  explicit Lanes(T s) : v(s) {}
};
template <typename T>
inline Lanes<T> operator+(const Lanes<T>& a, const Lanes<T>& b) { return a.v + b.v; }
template <typename T>
inline Lanes<T> operator-(const Lanes<T>& a, const Lanes<T>& b) { return a.v - b.v; }
template <typename T>
inline Lanes<T> operator*(const Lanes<T>& a, const Lanes<T>& b) { return a.v * b.v; }
template <typename T>
inline Lanes<T> operator/(const Lanes<T>& a, const Lanes<T>& b) { return a.v / b.v; }
template <typename T>
inline Lanes<T> operator-(const Lanes<T>& a) { return a.v.neg(); }
template <typename T>
inline Lanes<T> exp_acc(const Lanes<T>& x) { return x.v.exp(); }

// exp of float lanes in the way of Cephes' expf: n = round(x / ln 2), r = x -
// n ln 2 in two parts, exp(r) by its degree-7 polynomial (1 + r + r^2 P(r)),
// times 2^n built in the exponent bits. Within 1 ulp of the exact exp over
// [-87.3, 88.3] (x is clamped to that range: sigmoid and tanh read 0 or 1
// there either way), NaN gives NaN. Inline, unlike ATen's exp (a call into
// Sleef per vector): with five per LSTM row the calls and the registers they
// spilled were most of the gate math's time.
inline Vectorized<float> exp_float(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  using VI = Vectorized<int32_t>;
  const V xc = at::vec::minimum(at::vec::maximum(x, V(-87.3365447f)), V(88.3762626f));
  const V n = (xc * V(1.44269504088896341f)).round();
  V r = at::vec::fmadd(n, V(-0.693359375f), xc);
  r = at::vec::fmadd(n, V(2.12194440e-4f), r);
  V p(1.9875691500e-4f);
  p = at::vec::fmadd(p, r, V(1.3981999507e-3f));
  p = at::vec::fmadd(p, r, V(8.3334519073e-3f));
  p = at::vec::fmadd(p, r, V(4.1665795894e-2f));
  p = at::vec::fmadd(p, r, V(1.6666665459e-1f));
  p = at::vec::fmadd(p, r, V(5.0000001201e-1f));
  const V e = at::vec::fmadd(p, r * r, r) + V(1.f);
  const VI two_n = (at::vec::convert_to_int_of_same_size(n) + VI(127)) << VI(23);
  return e * at::vec::cast<float>(two_n);
}
inline Lanes<float> exp_acc(const Lanes<float>& x) { return exp_float(x.v); }

// tanh of float lanes in the way of Cephes' tanhf: for |x| < 0.625 the odd
// polynomial x + x^3 P(x^2), above it 1 - 2 / (exp(2|x|) + 1), sign restored.
// Within 1.3 ulp of the exact tanh over all floats in [-12, 12] (Sleef's u10
// tanh, which ATen's Tensor.tanh uses: 1.0 ulp) at about 40% of its cost; it
// was the largest part of an LSTM step's gate math. NaN gives NaN, +-inf +-1.
inline Vectorized<float> tanh_float(const Vectorized<float>& x) {
  using V = Vectorized<float>;
  const V z = x.abs();
  const V z2 = z * z;
  V p(-5.70498872745e-3f);
  p = at::vec::fmadd(p, z2, V(2.06390887954e-2f));
  p = at::vec::fmadd(p, z2, V(-5.37397155531e-2f));
  p = at::vec::fmadd(p, z2, V(1.33314422036e-1f));
  p = at::vec::fmadd(p, z2, V(-3.33332819422e-1f));
  const V small = at::vec::fmadd(p * z2, z, z);
  const V big = V(1.f) - V(2.f) / (exp_float(z + z) + V(1.f));
  return V::blendv(small, big, z >= V(0.625f)) | (x & V(-0.f));
}
inline Lanes<float> tanh_acc(const Lanes<float>& x) { return tanh_float(x.v); }
inline Lanes<double> tanh_acc(const Lanes<double>& x) { return x.v.tanh(); }

// ------------------------------------------------- loads and stores
// n <= lanes values; lanes past n load as zero and are never stored.
template <typename acc_t>
inline Vectorized<acc_t> load(const acc_t* p, int64_t n) {
  using V = Vectorized<acc_t>;
  return n == V::size() ? V::loadu(p) : V::loadu(p, n);
}

template <typename acc_t, typename scalar_t>
inline Vectorized<acc_t> load_acc(const scalar_t* p, int64_t n) {
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    return load(p, n);
  } else {
    using V = Vectorized<acc_t>;
    V out;
    if (n == V::size()) {
      at::vec::load_to_float(p, out);
    } else {
      scalar_t tmp[V::size()] = {};
      std::memcpy(tmp, p, n * sizeof(scalar_t));
      at::vec::load_to_float(tmp, out);
    }
    return out;
  }
}

template <typename acc_t>
inline void store(acc_t* p, const Vectorized<acc_t>& v, int64_t n) {
  if (n == Vectorized<acc_t>::size()) {
    v.store(p);
  } else {
    v.store(p, n);
  }
}

template <typename scalar_t, typename acc_t>
inline void store_as(scalar_t* p, const Vectorized<acc_t>& v, int64_t n) {
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    store(p, v, n);
  } else {
    at::vec::convert_from_float<scalar_t>(v, v).store(p, n);
  }
}

// v rounded to scalar_t and back: what the next step reads from a stored row.
template <typename scalar_t, typename acc_t>
inline Vectorized<acc_t> rounded(const Vectorized<acc_t>& v) {
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    return v;
  } else {
    return std::get<0>(at::vec::convert_to_float<scalar_t>(at::vec::convert_from_float<scalar_t>(v, v)));
  }
}

// ------------------------------------------------------------- GEMM
// Register budget of a microkernel: MR rows x NV vectors of accumulators,
// NV vectors of the weight panel and one broadcast of A.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kVecRegs = 32;
#else
constexpr int kVecRegs = 16;
#endif
constexpr int tile_rows(int nv) {
  return std::max(1, std::min(8, (kVecRegs - nv - 2) / nv));
}

// Blocks per backward panel: as many as keep MR >= 4 rows in the registers.
constexpr int kBwdVecs = kVecRegs >= 32 ? 4 : 2;

// acc[i][v] = sum_k a[i][k * sa] * b[k][v] for MR rows, then epi(i, acc[i]).
// b's row k (NV x lanes values) starts at b + k * ldb. Summation runs in k
// order. kUnitA: sa is 1 (rows of A contiguous), known at compile time.
template <int MR, int NV, bool kUnitA, typename T, typename Epi>
inline void tile(const T* const* a, int64_t sa, int64_t K, const T* __restrict b_mat, int64_t ldb,
                 const Epi& epi) {
  using V = Vectorized<T>;
  V acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = V(T(0));
  }
  for (int64_t k = 0; k < K; ++k) {
    V b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = V::loadu(b_mat + k * ldb + v * V::size());
    const int64_t ka = kUnitA ? k : k * sa;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const V ai(a[i][ka]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = at::vec::fmadd(ai, b[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) epi(i, acc[i]);
}

// Rows [r, r + MR) with MR counting down to the remainder.
template <int MR, int NV, bool kUnitA, typename T, typename RowPtr, typename Epi>
inline void tail_rows(int64_t r, int64_t left, const RowPtr& row, int64_t sa, int64_t K,
                      const T* b_mat, int64_t ldb, const Epi& epi) {
  if constexpr (MR > 0) {
    if (left == MR) {
      const T* a[MR];
      for (int i = 0; i < MR; ++i) a[i] = row(r + i);
      tile<MR, NV, kUnitA>(a, sa, K, b_mat, ldb,
                           [&](int i, const Vectorized<T>* acc) { epi(r + i, acc); });
    } else {
      tail_rows<MR - 1, NV, kUnitA>(r, left, row, sa, K, b_mat, ldb, epi);
    }
  }
}

// The GEMM of rows [0, rows) against one panel of NV vectors of columns, row
// tile by row tile; the panel stays in cache across the tiles. epi(b, acc)
// gets each row's NV vectors. Row b of A is row(b), its k-th value at
// row(b)[k * sa] (sa = 1 unless kUnitA is false).
template <int NV, bool kUnitA = true, typename T, typename RowPtr, typename Epi>
inline void gemm_rows(int64_t rows, const RowPtr& row, int64_t K, const T* b_mat, int64_t ldb,
                      const Epi& epi, int64_t sa = 1) {
  constexpr int MR = tile_rows(NV);
  int64_t r = 0;
  for (; r + MR <= rows; r += MR) {
    const T* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = row(r + i);
    tile<MR, NV, kUnitA>(a, sa, K, b_mat, ldb,
                         [&](int i, const Vectorized<T>* acc) { epi(r + i, acc); });
  }
  if (r < rows) tail_rows<MR - 1, NV, kUnitA>(r, rows - r, row, sa, K, b_mat, ldb, epi);
}

// ---------------------------------------------------------- blocked GEMM
// C (+)= A @ B for the gradient GEMMs over all rows (kernels.h's GemmArgs):
// threads take panels of kGemmVecs vectors of C's columns; each walks K in
// blocks of kGemmKc and C's rows in blocks of kGemmMc, so the A block (kept in
// L2) serves all of the thread's panels and C is read and written once per K
// block.
constexpr int kGemmVecs = 4;
constexpr int64_t kGemmKc = 512;
constexpr int64_t kGemmMc = 120;

template <typename T, bool kUnitA>
void gemm_blocked(const GemmArgs<T>& g, int64_t pan0, int64_t pan1) {
  using V = Vectorized<T>;
  constexpr int64_t VW = V::size();
  constexpr int64_t W = kGemmVecs * VW;
  for (int64_t k0 = 0; k0 < g.k; k0 += kGemmKc) {
    const int64_t kc = std::min(kGemmKc, g.k - k0);
    const bool store = k0 == 0 && !g.accumulate;
    for (int64_t i0 = 0; i0 < g.m; i0 += kGemmMc) {
      const int64_t mc = std::min(kGemmMc, g.m - i0);
      const auto row = [&](int64_t i) { return g.a + (i0 + i) * g.a_row + k0 * g.a_k; };
      for (int64_t p = pan0; p < pan1; ++p) {
        T* c = g.c + i0 * g.ldc + p * W;
        const auto epi = [&](int64_t i, const V* acc) {
          T* ci = c + i * g.ldc;
#pragma GCC unroll 4
          for (int v = 0; v < kGemmVecs; ++v) {
            (store ? acc[v] : acc[v] + V::loadu(ci + v * VW)).store(ci + v * VW);
          }
        };
        gemm_rows<kGemmVecs, kUnitA>(mc, row, kc, g.b + k0 * g.ldb + p * W, g.ldb, epi, g.a_k);
      }
    }
  }
}

template <typename scalar_t>
void gemm(const GemmArgs<scalar_t>& g, int64_t pan0, int64_t pan1) {
  if constexpr (std::is_same<scalar_t, acc_type<scalar_t>>::value) {
    if (g.a_k == 1) {
      gemm_blocked<scalar_t, true>(g, pan0, pan1);
    } else {
      gemm_blocked<scalar_t, false>(g, pan0, pan1);
    }
  }
}

// Row a's NV gate vectors of the block of units [j0, j0 + n) as dot products
// with the weights as stored (w: row g * H + j holds unit j of gate g, K
// contiguous values), for calls too short to pay for pack_fwd. Per gate, one
// accumulator per unit runs over k; a transpose then sums every unit's lanes
// at once. Summation order: lanes of k mod lanes, then across them.
template <int NV, typename scalar_t, typename T>
inline void dot_gates(const scalar_t* w, int64_t H, int64_t K, int64_t j0, int64_t n, const T* a,
                      Vectorized<T>* out) {
  using V = Vectorized<T>;
  constexpr int VW = V::size();
  alignas(64) T part[VW * VW];
  alignas(64) T part_t[VW * VW];
  const int64_t k_full = K - K % VW;
  for (int g = 0; g < NV; ++g) {
    for (int l = 0; l < VW; ++l) {
      V s(T(0));
      if (l < n) {
        const scalar_t* row = w + (g * H + j0 + l) * K;
        for (int64_t k = 0; k < k_full; k += VW) {
          s = at::vec::fmadd(load_acc<T>(row + k, VW), V::loadu(a + k), s);
        }
        if (k_full < K) {
          s = at::vec::fmadd(load_acc<T>(row + k_full, K - k_full), load(a + k_full, K - k_full), s);
        }
      }
      s.store(part + l * VW);
    }
    at::vec::transpose_mxn<T, VW, VW>(part, VW, part_t, VW);
    V sum = V::loadu(part_t);
    for (int l = 1; l < VW; ++l) sum = sum + V::loadu(part_t + l * VW);
    out[g] = sum;
  }
}

// ------------------------------------------------- bf16 pair products
// With AVX512-BF16 (vdpbf16ps), bf16 GEMMs multiply pairs of bf16 along k
// into fp32 accumulators: twice the products per instruction of the fp32
// path, the same fp32 accumulation (each bf16 x bf16 product is exact in
// fp32). The weights are laid out in k-pairs: element (k, c) of a panel of W
// columns at (k / 2 * W + c) * 2 + k % 2, zero for an odd K's last k; the A
// rows are read as stored, a k-pair at a time.
#if defined(CPU_CAPABILITY_AVX512) && defined(__AVX512BF16__)
constexpr bool kPairs = true;

template <int MR, int NV, typename Epi>
inline void tile_pairs(const c10::BFloat16* const* a, int64_t K, const c10::BFloat16* panel,
                       const Epi& epi) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_setzero_ps();
  }
  // Full pairs, then an odd K's last value paired with zero.
  const auto step = [&](int64_t kp, auto pair_of) {
    __m512i b[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_si512(panel + (kp * NV + v) * 32);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512i ai = _mm512_set1_epi32(pair_of(a[i] + 2 * kp));
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        acc[i][v] = _mm512_dpbf16_ps(acc[i][v], (__m512bh)ai, (__m512bh)b[v]);
      }
    }
  };
  const int64_t full = K / 2;
  for (int64_t kp = 0; kp < full; ++kp) {
    step(kp, [](const c10::BFloat16* p) {
      int32_t pr;
      std::memcpy(&pr, p, 4);
      return pr;
    });
  }
  if (K % 2) {
    step(full, [](const c10::BFloat16* p) {
      uint16_t lo;
      std::memcpy(&lo, p, 2);
      return static_cast<int32_t>(lo);
    });
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    Vectorized<float> out[NV];
    for (int v = 0; v < NV; ++v) out[v] = acc[i][v];
    epi(i, out);
  }
}

template <int MR, int NV, typename RowPtr, typename Epi>
inline void tail_rows_pairs(int64_t r, int64_t left, const RowPtr& row, int64_t K,
                            const c10::BFloat16* panel, const Epi& epi) {
  if constexpr (MR > 0) {
    if (left == MR) {
      const c10::BFloat16* a[MR];
      for (int i = 0; i < MR; ++i) a[i] = row(r + i);
      tile_pairs<MR, NV>(a, K, panel, [&](int i, const Vectorized<float>* acc) { epi(r + i, acc); });
    } else {
      tail_rows_pairs<MR - 1, NV>(r, left, row, K, panel, epi);
    }
  }
}

// gemm_rows for bf16 pairs: rows [0, rows) of A (row(b): bf16 as stored)
// against one k-paired panel of NV vectors of columns.
template <int NV, typename RowPtr, typename Epi>
inline void gemm_rows_pairs(int64_t rows, const RowPtr& row, int64_t K, const c10::BFloat16* panel,
                            const Epi& epi) {
  constexpr int MR = tile_rows(NV);
  int64_t r = 0;
  for (; r + MR <= rows; r += MR) {
    const c10::BFloat16* a[MR];
    for (int i = 0; i < MR; ++i) a[i] = row(r + i);
    tile_pairs<MR, NV>(a, K, panel, [&](int i, const Vectorized<float>* acc) { epi(r + i, acc); });
  }
  if (r < rows) tail_rows_pairs<MR - 1, NV>(r, rows - r, row, K, panel, epi);
}

// dot_gates for bf16 with pair products: w's rows and the A row (bf16 as
// stored) are already pairs in memory order, so each 32 values of k are one
// vdpbf16ps per unit; the lanes are then summed as in dot_gates.
template <int NV>
inline void dot_gates_pairs(const c10::BFloat16* w, int64_t H, int64_t K, int64_t j0, int64_t n,
                            const c10::BFloat16* a, Vectorized<float>* out) {
  using V = Vectorized<float>;
  constexpr int VW = V::size();
  alignas(64) float part[VW * VW];
  alignas(64) float part_t[VW * VW];
  const int64_t k_full = K - K % 32;
  const __mmask32 tail = static_cast<__mmask32>((uint64_t(1) << (K - k_full)) - 1);
  for (int g = 0; g < NV; ++g) {
    for (int l = 0; l < VW; ++l) {
      __m512 s = _mm512_setzero_ps();
      if (l < n) {
        const c10::BFloat16* row = w + (g * H + j0 + l) * K;
        for (int64_t k = 0; k < k_full; k += 32) {
          s = _mm512_dpbf16_ps(s, (__m512bh)_mm512_loadu_si512(row + k),
                               (__m512bh)_mm512_loadu_si512(a + k));
        }
        if (k_full < K) {
          s = _mm512_dpbf16_ps(s, (__m512bh)_mm512_maskz_loadu_epi16(tail, row + k_full),
                               (__m512bh)_mm512_maskz_loadu_epi16(tail, a + k_full));
        }
      }
      _mm512_store_ps(part + l * VW, s);
    }
    at::vec::transpose_mxn<float, VW, VW>(part, VW, part_t, VW);
    V sum = V::loadu(part_t);
    for (int l = 1; l < VW; ++l) sum = sum + V::loadu(part_t + l * VW);
    out[g] = sum;
  }
}

// Block u's forward panel in k-pairs: columns (g, l) are w's row g * H + u *
// lanes + l (zero past H).
inline void pack_fwd_pairs(const c10::BFloat16* w, int64_t gates, int64_t hidden, int64_t k_dim,
                    c10::BFloat16* out, int64_t blk0, int64_t blk1) {
  constexpr int64_t VW = Vectorized<float>::size();
  const int64_t width = gates * VW;
  const int64_t pairs = (k_dim + 1) / 2;
  for (int64_t u = blk0; u < blk1; ++u) {
    uint32_t* panel = reinterpret_cast<uint32_t*>(out + u * pairs * 2 * width);
    for (int64_t g = 0; g < gates; ++g) {
      for (int64_t l = 0; l < VW; ++l) {
        const int64_t j = u * VW + l;
        const c10::BFloat16* src = w + (g * hidden + j) * k_dim;
        uint32_t* dst = panel + g * VW + l;
        for (int64_t kp = 0; kp < pairs; ++kp) {
          uint32_t pr = 0;
          if (j < hidden) std::memcpy(&pr, src + 2 * kp, 2 * kp + 1 == k_dim ? 2 : 4);
          dst[kp * width] = pr;
        }
      }
    }
  }
}

// Backward panel p in k-pairs: columns c are w's columns p * W + c (zero past
// n), rows k of w (k, n) paired: (w[2kp][c], w[2kp + 1][c]).
inline void pack_bwd_pairs(const c10::BFloat16* w, int64_t k_dim, int64_t n, c10::BFloat16* out,
                    int64_t pan0, int64_t pan1) {
  constexpr int64_t W = kBwdVecs * Vectorized<float>::size();
  const int64_t pairs = (k_dim + 1) / 2;
  // Interleaves two rows' 32 values (lo: row 2kp, hi: row 2kp + 1).
  alignas(64) static const uint16_t kLo[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                               37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                               11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  alignas(64) static const uint16_t kHi[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21,
                                               53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58,
                                               27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  const __m512i idx_lo = _mm512_load_si512(kLo), idx_hi = _mm512_load_si512(kHi);
  for (int64_t p = pan0; p < pan1; ++p) {
    c10::BFloat16* panel = out + p * pairs * 2 * W;
    const int64_t c0 = p * W, cols = std::min(W, n - c0);
    for (int64_t kp = 0; kp < pairs; ++kp) {
      const c10::BFloat16* r0 = w + 2 * kp * n + c0;
      const c10::BFloat16* r1 = 2 * kp + 1 < k_dim ? r0 + n : nullptr;
      c10::BFloat16* dst = panel + kp * 2 * W;
      for (int64_t c = 0; c < W; c += 32) {
        const int64_t m = std::max<int64_t>(0, std::min<int64_t>(32, cols - c));
        const __mmask32 mask = m == 32 ? ~__mmask32(0) : (__mmask32(1) << m) - 1;
        const __m512i lo = _mm512_maskz_loadu_epi16(mask, r0 + c);
        const __m512i hi = r1 ? _mm512_maskz_loadu_epi16(mask, r1 + c) : _mm512_setzero_si512();
        _mm512_storeu_si512(dst + 2 * c, _mm512_permutex2var_epi16(lo, idx_lo, hi));
        _mm512_storeu_si512(dst + 2 * c + 32, _mm512_permutex2var_epi16(lo, idx_hi, hi));
      }
    }
  }
}
#else
constexpr bool kPairs = false;
// Declared, never defined or called: the discarded `if constexpr (kPairs &&
// ...)` branches below name them, and C++17 (torch < 2.12 builds extensions
// as C++17; the GPU machine has torch 2.11) needs a declared template there.
template <int NV, typename RowPtr, typename Epi>
void gemm_rows_pairs(int64_t rows, const RowPtr& row, int64_t K, const c10::BFloat16* panel,
                     const Epi& epi);
template <int NV>
void dot_gates_pairs(const c10::BFloat16* w, int64_t H, int64_t K, int64_t j0, int64_t n,
                     const c10::BFloat16* a, Vectorized<float>* out);
#endif

// ------------------------------------------------------------- packing
// panel[k][g * VW + l] = w[row_of(g, l)][k] for g < gates, l < VW, and 0 where
// row_of gives -1: a transpose of VW x VW tiles through two small buffers
// (which also convert fp16/bf16 to float).
template <typename scalar_t, typename RowOf>
void pack_panel(const scalar_t* w, int64_t k_dim, int64_t gates, const RowOf& row_of,
                acc_type<scalar_t>* panel) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  constexpr int VW = V::size();
  const int64_t width = gates * VW;
  alignas(64) acc_t tile_in[VW * VW];
  alignas(64) acc_t tile_t[VW * VW];
  for (int64_t g = 0; g < gates; ++g) {
    for (int64_t k0 = 0; k0 < k_dim; k0 += VW) {
      const int64_t kk = std::min<int64_t>(VW, k_dim - k0);
      for (int64_t l = 0; l < VW; ++l) {
        const int64_t r = row_of(g, l);
        const V row = r >= 0 ? load_acc<acc_t>(w + r * k_dim + k0, kk) : V(acc_t(0));
        row.store(tile_in + l * VW);
      }
      at::vec::transpose_mxn<acc_t, VW, VW>(tile_in, VW, tile_t, VW);
      for (int64_t c = 0; c < kk; ++c) {
        V::loadu(tile_t + c * VW).store(panel + (k0 + c) * width + g * VW);
      }
    }
  }
}

// Block u's panel of the gates of units [u * VW, u * VW + VW):
// panel[k][g * VW + l] = w[g * H + u * VW + l][k], zero past H.
template <typename scalar_t>
void pack_fwd(const scalar_t* w, int64_t gates, int64_t hidden, int64_t k_dim,
              acc_type<scalar_t>* out, int64_t blk0, int64_t blk1) {
  constexpr int64_t VW = Vectorized<acc_type<scalar_t>>::size();
  for (int64_t u = blk0; u < blk1; ++u) {
    const auto row_of = [&](int64_t g, int64_t l) {
      return u * VW + l < hidden ? g * hidden + u * VW + l : int64_t(-1);
    };
    pack_panel(w, k_dim, gates, row_of, out + u * k_dim * gates * VW);
  }
}

// Backward panel p of w (k_dim, n): columns [p * W, p * W + W) of every row,
// W = kBwdVecs lanes vectors, contiguous (zero past n). Read in place, a
// panel's rows lie n values apart: at n = 512 fp32 that stride maps a panel's
// 2048 rows onto one eighth of L2's sets, so the panel, re-read by every row
// tile of every step, missed L2 at a quarter of its size; laid out it is
// one stream and stays there.
template <typename scalar_t>
void pack_bwd(const scalar_t* w, int64_t k_dim, int64_t n, acc_type<scalar_t>* out, int64_t pan0,
              int64_t pan1) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  constexpr int64_t VW = V::size();
  constexpr int64_t W = kBwdVecs * VW;
  for (int64_t p = pan0; p < pan1; ++p) {
    acc_t* panel = out + p * k_dim * W;
    for (int64_t k = 0; k < k_dim; ++k) {
      for (int64_t v = 0; v < kBwdVecs; ++v) {
        const int64_t c0 = p * W + v * VW;
        const V x = c0 < n ? load_acc<acc_t>(w + k * n + c0, std::min(VW, n - c0)) : V(acc_t(0));
        x.store(panel + k * W + v * VW);
      }
    }
  }
}

// ------------------------------------------------------------- linear
// Panels of kLinearVecs vectors of consecutive output columns.
constexpr int kLinearVecs = 4;

// Panel p of w (n, k) for y = x @ w^T: columns [p * W, p * W + W), W =
// kLinearVecs * lanes, zero past n.
template <typename scalar_t>
void pack_nt(const scalar_t* w, int64_t n, int64_t k_dim, acc_type<scalar_t>* out, int64_t pan0,
             int64_t pan1) {
  constexpr int64_t VW = Vectorized<acc_type<scalar_t>>::size();
  constexpr int64_t W = kLinearVecs * VW;
  for (int64_t p = pan0; p < pan1; ++p) {
    const auto row_of = [&](int64_t g, int64_t l) {
      const int64_t c = p * W + g * VW + l;
      return c < n ? c : int64_t(-1);
    };
    pack_panel(w, k_dim, kLinearVecs, row_of, out + p * k_dim * W);
  }
}

// y[r] = x[r] @ w^T + b for rows [row0, row1) and the columns of panels
// [pan0, pan1) of pack_nt(w). fp32/fp64 only (x is read as the GEMM's A).
template <typename scalar_t>
void linear_nt(const LinearArgs<scalar_t>& a, int64_t pan0, int64_t pan1) {
  using acc_t = acc_type<scalar_t>;
  if constexpr (std::is_same<scalar_t, acc_t>::value) {
    using V = Vectorized<acc_t>;
    constexpr int64_t VW = V::size();
    constexpr int64_t W = kLinearVecs * VW;
    const int64_t n = a.n, k_dim = a.k;
    // Rows in chunks that stay in L2 while this thread's panels pass by.
    const int64_t chunk = std::max<int64_t>(48, (int64_t(256) << 10) / (k_dim * sizeof(acc_t)) / 24 * 24);
    for (int64_t r0 = 0; r0 < a.m; r0 += chunk) {
      const int64_t rows = std::min(chunk, a.m - r0);
      const auto row = [&](int64_t r) { return a.x + (r0 + r) * k_dim; };
      for (int64_t p = pan0; p < pan1; ++p) {
        V bias[kLinearVecs];
        for (int v = 0; v < kLinearVecs; ++v) {
          const int64_t c0 = p * W + v * VW;
          bias[v] = a.b && c0 < n ? load(a.b + c0, std::min(VW, n - c0)) : V(acc_t(0));
        }
        const auto epi = [&](int64_t r, const V* acc) {
          for (int v = 0; v < kLinearVecs; ++v) {
            const int64_t c0 = p * W + v * VW;
            if (c0 >= n) break;
            store(a.y + (r0 + r) * n + c0, acc[v] + bias[v], std::min(VW, n - c0));
          }
        };
        gemm_rows<kLinearVecs>(rows, row, k_dim, a.w_packed + p * k_dim * W, W, epi);
      }
    }
  }
}


// Row b's input term of a forward block's G gates (units [j0, j0 + n)): a
// single-step cell's dot products with w_in (w_in set), else x_proj's row r;
// then a cell's biases (null in a layer, whose x_proj has them).
template <int G, typename Args, typename T>
inline void input_term(const Args& a, int64_t H, int64_t b, int64_t r, int64_t j0, int64_t n,
                       const T* b_in2, Vectorized<T>* in) {
  if (a.w_in) {
    dot_gates<G>(a.w_in, H, a.in_size, j0, n, a.x_in + b * a.in_size, in);
  } else {
    for (int g = 0; g < G; ++g) in[g] = load_acc<T>(a.x_proj + r * a.ld_x + g * H + j0, n);
  }
  for (int g = 0; g < G; ++g) {
    if (a.b_in) in[g] = in[g] + load(a.b_in + g * H + j0, n);
    if (b_in2) in[g] = in[g] + load(b_in2 + g * H + j0, n);
  }
}

// A cell's recurrent term of row b from rec (its GEMM's result), as a
// forward block's G accumulators.
template <int G, typename scalar_t, typename T>
inline void rec_term(const scalar_t* rec, int64_t H, int64_t b, int64_t j0, int64_t n,
                     Vectorized<T>* acc) {
  for (int g = 0; g < G; ++g) acc[g] = load_acc<T>(rec + b * G * H + g * H + j0, n);
}

// Every row's recurrent term of forward block u (G gates, K = the width of
// h), handed to epi(b, acc): from a cell's rec, else the step's GEMM (bf16
// pair products, the laid-out panels, or dot products with w as stored). A
// rows: row(b) in the accumulation type, row_s(b) as stored.
template <int G, typename scalar_t, typename Args, typename Row, typename RowS, typename Epi>
inline void recurrent_terms(const Args& a, const Step& st, int64_t u, int64_t H, int64_t K,
                            const Row& row, const RowS& row_s, const Epi& epi) {
  using V = Vectorized<acc_type<scalar_t>>;
  constexpr int64_t VW = V::size();
  const int64_t j0 = u * VW, n = std::min(VW, H - j0);
  if (a.rec) {
    for (int64_t b = 0; b < st.bs; ++b) {
      V acc[G];
      rec_term<G>(a.rec, H, b, j0, n, acc);
      epi(b, acc);
    }
    return;
  }
  if constexpr (kPairs && std::is_same<scalar_t, c10::BFloat16>::value) {
    if (a.w_pairs) {
      gemm_rows_pairs<G>(st.bs, row_s, K, a.w_pairs + u * (K + K % 2) * G * VW, epi);
    } else {
      for (int64_t b = 0; b < st.bs; ++b) {
        V acc[G];
        dot_gates_pairs<G>(a.w, H, K, j0, n, row_s(b), acc);
        epi(b, acc);
      }
    }
    return;
  }
  if (a.w_packed) {
    gemm_rows<G>(st.bs, row, K, a.w_packed + u * K * G * VW, G * VW, epi);
  } else {
    for (int64_t b = 0; b < st.bs; ++b) {
      V acc[G];
      dot_gates<G>(a.w, H, K, j0, n, row(b), acc);
      epi(b, acc);
    }
  }
}

// ------------------------------------------------------------- LSTM
template <typename scalar_t>
void lstm_fwd(const LstmFwdArgs<scalar_t>& a, const Step& st, int64_t blk0, int64_t blk1) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  using L = Lanes<acc_t>;
  constexpr int64_t VW = V::size();
  const int64_t H = a.hidden, P = a.out;
  const auto row = [&](int64_t b) { return b < st.carry ? a.prev + b * a.ld_prev : a.h0 + b * P; };
  const auto row_s = [&](int64_t b) {
    return b < st.carry ? a.prev_s + b * a.ld_y : a.h0_s + b * P;
  };
  for (int64_t u = blk0; u < blk1; ++u) {
    const int64_t j0 = u * VW, n = std::min(VW, H - j0);
    // acc: row b's recurrent term of the block's four gates.
    const auto epi = [&](int64_t b, const V* acc) {
      const int64_t r = st.row0 + b;
      V in[4];
      input_term<4>(a, H, b, r, j0, n, a.b_in2, in);
      acc_t* c = a.c_state + b * H + j0;
      const auto act = lstm_cell_forward(L(acc[0] + in[0]), L(acc[1] + in[1]),
                                         L(acc[2] + in[2]), L(acc[3] + in[3]), L(load(c, n)));
      store(c, act.c.v, n);
      const L h = lstm_hidden(act);
      if (a.h_raw) {
        store(a.h_raw + b * H + j0, h.v, n);
      } else {
        store_as(a.y + r * a.ld_y + j0, h.v, n);
        if (a.h_next) store(a.h_next + b * P + j0, rounded<scalar_t>(h.v), n);
      }
      if (a.ws) {
        scalar_t* w = a.ws + r * 5 * H + j0;
        store_as(w, act.i.v, n), store_as(w + H, act.f.v, n), store_as(w + 2 * H, act.g.v, n);
        store_as(w + 3 * H, act.o.v, n), store_as(w + 4 * H, act.c.v, n);
      }
    };
    recurrent_terms<4, scalar_t>(a, st, u, H, P, row, row_s, epi);
  }
}

template <typename scalar_t>
void lstm_bwd(const LstmBwdArgs<scalar_t>& a, const Step& st, int64_t pan0, int64_t pan1) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  using L = Lanes<acc_t>;
  constexpr int64_t VW = V::size();
  constexpr int NVB = kBwdVecs;
  const int64_t H = a.hidden, P = a.out;
  const auto row = [&](int64_t b) { return a.next + b * a.ld_next; };
  for (int64_t p = pan0; p < pan1; ++p) {
    // acc: the recurrent term of dh for this panel's blocks, or null.
    const auto epi = [&](int64_t b, const V* acc) {
      const int64_t r = st.row0 + b;
      for (int v = 0; v < NVB; ++v) {
        const int64_t j0 = (p * NVB + v) * VW;
        if (j0 >= H) break;
        const int64_t n = std::min(VW, H - j0);
        L dh;
        if (a.dh_unit) {
          dh = L(load(a.dh_unit + b * H + j0, n));
        } else {
          acc_t* dhs = a.dh_state + b * P + j0;
          V d = load_acc<acc_t>(a.grad_y + r * a.ld_grad_y + j0, n) + load(dhs, n);
          if (acc) d = d + acc[v];
          dh = L(d);
          store(dhs, V(acc_t(0)), n);
        }
        const scalar_t* w = a.ws + r * 5 * H + j0;
        const auto ld = [&](const scalar_t* p) { return L(load_acc<acc_t>(p, n)); };
        const LstmActs<L> act{ld(w), ld(w + H), ld(w + 2 * H), ld(w + 3 * H), ld(w + 4 * H)};
        const L c_prev = b < st.carry ? ld(a.ws + (st.prev_row0 + b) * 5 * H + 4 * H + j0)
                                      : ld(a.c0 + b * H + j0);
        acc_t* dc = a.dc_state + b * H + j0;
        const auto g = lstm_cell_backward(act, c_prev, dh, L(load(dc, n)));
        store(dc, g.dc_prev.v, n);
        scalar_t* dg = a.dgates + r * a.ld_dgates + j0;
        store_as(dg, g.di.v, n), store_as(dg + H, g.df.v, n), store_as(dg + 2 * H, g.dg.v, n);
        store_as(dg + 3 * H, g.d_o.v, n);
        if (a.dgates_next) {
          acc_t* dn = a.dgates_next + b * 4 * H + j0;
          store(dn, rounded<scalar_t>(g.di.v), n), store(dn + H, rounded<scalar_t>(g.df.v), n);
          store(dn + 2 * H, rounded<scalar_t>(g.dg.v), n);
          store(dn + 3 * H, rounded<scalar_t>(g.d_o.v), n);
        }
      }
    };
    int64_t b = 0;
    if (!a.dh_unit) {
      // Rows carrying into the next step: their recurrent GEMM (none in a
      // call's last step, or anywhere in a one-step call, whose weights the
      // driver then leaves unset).
      bool done = st.carry_next == 0;
      if constexpr (kPairs && std::is_same<scalar_t, c10::BFloat16>::value) {
        if (!done && a.w_pairs) {
          const auto row_s = [&](int64_t b) { return a.next_s + b * a.ld_dgates; };
          gemm_rows_pairs<NVB>(st.carry_next, row_s, 4 * H,
                               a.w_pairs + p * (4 * H + 4 * H % 2) * NVB * VW, epi);
          done = true;
        }
      }
      if (!done) {
        gemm_rows<NVB>(st.carry_next, row, 4 * H, a.w_panels + p * 4 * H * NVB * VW, NVB * VW,
                       epi);
      }
      b = st.carry_next;
    }
    for (; b < st.bs; ++b) epi(b, nullptr);
  }
}

// -------------------------------------------------------------- GRU
template <typename scalar_t>
void gru_fwd(const GruFwdArgs<scalar_t>& a, const Step& st, int64_t blk0, int64_t blk1) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  using L = Lanes<acc_t>;
  constexpr int64_t VW = V::size();
  const int64_t H = a.hidden;
  const auto row = [&](int64_t b) { return b < st.carry ? a.prev + b * a.ld_prev : a.h0 + b * H; };
  const auto row_s = [&](int64_t b) {
    return b < st.carry ? a.prev_s + b * a.ld_y : a.h0_s + b * H;
  };
  for (int64_t u = blk0; u < blk1; ++u) {
    const int64_t j0 = u * VW, n = std::min(VW, H - j0);
    V bias[3] = {V(acc_t(0)), V(acc_t(0)), V(acc_t(0))};
    if (a.b_hh) {
      for (int g = 0; g < 3; ++g) bias[g] = load(a.b_hh + g * H + j0, n);
    }
    // acc: row b's recurrent term of the block's three gates (b_hh still to add).
    const auto epi = [&](int64_t b, const V* acc) {
      const int64_t r = st.row0 + b;
      V in[3];
      input_term<3>(a, H, b, r, j0, n, static_cast<const acc_t*>(nullptr), in);
      const auto act = gru_cell_forward(L(in[0]), L(in[1]), L(in[2]), L(acc[0] + bias[0]),
                                        L(acc[1] + bias[1]), L(acc[2] + bias[2]));
      const L h = gru_hidden(act, L(load(row(b) + j0, n)));
      store_as(a.y + r * a.ld_y + j0, h.v, n);
      if (a.h_next) store(a.h_next + b * H + j0, rounded<scalar_t>(h.v), n);
      if (a.ws) {
        scalar_t* w = a.ws + r * 4 * H + j0;
        store_as(w, act.r.v, n), store_as(w + H, act.z.v, n), store_as(w + 2 * H, act.n.v, n);
        store_as(w + 3 * H, act.hn.v, n);
      }
    };
    recurrent_terms<3, scalar_t>(a, st, u, H, H, row, row_s, epi);
  }
}

template <typename scalar_t>
void gru_bwd(const GruBwdArgs<scalar_t>& a, const Step& st, int64_t pan0, int64_t pan1) {
  using acc_t = acc_type<scalar_t>;
  using V = Vectorized<acc_t>;
  using L = Lanes<acc_t>;
  constexpr int64_t VW = V::size();
  constexpr int NVB = kBwdVecs;
  const int64_t H = a.hidden;
  const auto row = [&](int64_t b) { return a.next + b * 3 * H; };
  for (int64_t p = pan0; p < pan1; ++p) {
    const auto epi = [&](int64_t b, const V* acc) {
      const int64_t r = st.row0 + b;
      for (int v = 0; v < NVB; ++v) {
        const int64_t j0 = (p * NVB + v) * VW;
        if (j0 >= H) break;
        const int64_t n = std::min(VW, H - j0);
        acc_t* dhs = a.dh_state + b * H + j0;
        V d = load_acc<acc_t>(a.grad_y + r * a.ld_grad_y + j0, n) + load(dhs, n);
        if (acc) d = d + acc[v];
        const scalar_t* w = a.ws + r * 4 * H + j0;
        const auto ld = [&](const scalar_t* p) { return L(load_acc<acc_t>(p, n)); };
        const GruActs<L> act{ld(w), ld(w + H), ld(w + 2 * H), ld(w + 3 * H)};
        const L h_prev =
            b < st.carry ? L(load_acc<acc_t>(a.y + (st.prev_row0 + b) * a.ld_y + j0, n))
                         : L(load_acc<acc_t>(a.h0 + b * H + j0, n));
        const auto g = gru_cell_backward(act, h_prev, L(d));
        store(dhs, g.dh_prev.v, n);
        scalar_t* dx = a.dx + r * a.ld_dx + j0;
        scalar_t* dhh = a.dhh + r * 3 * H + j0;
        store_as(dx, g.dr.v, n), store_as(dx + H, g.dz.v, n), store_as(dx + 2 * H, g.dn.v, n);
        store_as(dhh, g.dr.v, n), store_as(dhh + H, g.dz.v, n), store_as(dhh + 2 * H, g.dhn.v, n);
        if (a.dhh_next) {
          acc_t* dn = a.dhh_next + b * 3 * H + j0;
          store(dn, rounded<scalar_t>(g.dr.v), n), store(dn + H, rounded<scalar_t>(g.dz.v), n);
          store(dn + 2 * H, rounded<scalar_t>(g.dhn.v), n);
        }
      }
    };
    // As in lstm_bwd: no recurrent GEMM without carried rows.
    bool done = st.carry_next == 0;
    if constexpr (kPairs && std::is_same<scalar_t, c10::BFloat16>::value) {
      if (!done && a.w_pairs) {
        const auto row_s = [&](int64_t b) { return a.next_s + b * 3 * H; };
        gemm_rows_pairs<NVB>(st.carry_next, row_s, 3 * H,
                             a.w_pairs + p * (3 * H + 3 * H % 2) * NVB * VW, epi);
        done = true;
      }
    }
    if (!done) {
      gemm_rows<NVB>(st.carry_next, row, 3 * H, a.w_panels + p * 3 * H * NVB * VW, NVB * VW, epi);
    }
    for (int64_t b = st.carry_next; b < st.bs; ++b) epi(b, nullptr);
  }
}

template <typename scalar_t>
Kernels<scalar_t> make_kernels(const char* isa) {
  Kernels<scalar_t> k;
  k.isa = isa;
  k.vec = Vectorized<acc_type<scalar_t>>::size();
  k.bwd_vecs = kBwdVecs;
  k.pack_fwd = &pack_fwd<scalar_t>;
  k.pack_bwd = &pack_bwd<scalar_t>;
  k.pairs = false;
  k.pack_fwd_pairs = nullptr;
  k.pack_bwd_pairs = nullptr;
  k.linear_vecs = kLinearVecs;
  k.gemm_vecs = kGemmVecs;
  if constexpr (std::is_same<scalar_t, acc_type<scalar_t>>::value) {
    k.pack_nt = &pack_nt<scalar_t>;
    k.linear = &linear_nt<scalar_t>;
    k.gemm = &gemm<scalar_t>;
  } else {
    k.gemm = nullptr;
    k.pack_nt = nullptr;
    k.linear = nullptr;
  }
  k.lstm_fwd = &lstm_fwd<scalar_t>;
  k.lstm_bwd = &lstm_bwd<scalar_t>;
  k.gru_fwd = &gru_fwd<scalar_t>;
  k.gru_bwd = &gru_bwd<scalar_t>;
  return k;
}

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace rnnfuse

// Defines kernels_<isa><scalar_t>() for the four dtypes.
#define RNNFUSE_DEFINE_CPU_KERNELS(fn, isa_name)                                 \
  namespace rnnfuse {                                                            \
  namespace cpu {                                                                \
  template <>                                                                    \
  Kernels<float> fn<float>() { return make_kernels<float>(isa_name); }           \
  template <>                                                                    \
  Kernels<double> fn<double>() { return make_kernels<double>(isa_name); }        \
  template <>                                                                    \
  Kernels<c10::BFloat16> fn<c10::BFloat16>() {                                   \
    return make_kernels<c10::BFloat16>(isa_name);                                \
  }                                                                              \
  template <>                                                                    \
  Kernels<c10::Half> fn<c10::Half>() { return make_kernels<c10::Half>(isa_name); } \
  }                                                                              \
  }
