// The GEMM half of a fused step: one thread block computes a BM x BN tile
//   C[m][c] = sum_k A[m0 + m][k] * W[row(c)][k]
// into shared memory (accumulation dtype), where the epilogue that follows
// reads all gates of a hidden unit from one place. A's rows come from a
// RowSource (previous step's outputs, h0, or nothing); tile column c maps to
// weight row (c / J) * gate_stride + j0 + c % J, so a block owns every gate
// of hidden units [j0, j0 + J). Out-of-range rows, columns and k read as 0,
// so any batch and hidden size works.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "step_args.h"

namespace rnnfuse {
namespace cuda {

template <typename scalar_t>
struct TileOperands {
  RowSource src;
  const scalar_t* w;
  int k;            // reduction length (row length of A and W)
  int units;        // hidden units available (columns beyond are 0)
  int gate_stride;  // distance in W rows between two gates of a unit
  int j0, m0;       // first unit and first batch row of this block

  // Host too: the CPU emulator of the step launches (step_emulate.cu) maps
  // rows and columns with these same functions.
  template <int J>
  __host__ __device__ __forceinline__ const scalar_t* w_row(int c) const {
    const int j = j0 + c % J;
    if (j >= units) return nullptr;
    return w + static_cast<int64_t>((c / J) * gate_stride + j) * k;
  }
  __host__ __device__ __forceinline__ const scalar_t* a_row(int m) const {
    const int b = m0 + m;
    if (b >= src.rows) return nullptr;
    if (b < src.carry) return static_cast<const scalar_t*>(src.a_carry) + b * src.lda_carry;
    if (src.a_start == nullptr) return nullptr;
    return static_cast<const scalar_t*>(src.a_start) + b * src.lda_start;
  }
};

// Stages one k-chunk of ROWS operand rows through registers. Every load of
// a chunk is issued before any is stored, and the next chunk's loads are
// issued before the current chunk's math: a step then pays about one L2
// round trip per chunk instead of one per element a thread loads (the
// loads are otherwise serialised behind the shared-memory stores). Element
// by element (the FMA tiles, which convert to the accumulation type as they
// stage). Host too (tid: the thread's index): the step emulator stages its
// tiles through it.
template <typename reg_t, int ROWS, int BK, int THREADS>
struct ChunkStage {
  static constexpr int kIters = (ROWS * BK + THREADS - 1) / THREADS;
  reg_t v[kIters];

  // row_of(r): operand row r, or null for a row of zeros.
  template <typename RowFn, typename Convert>
  __host__ __device__ __forceinline__ void load(RowFn row_of, Convert convert, reg_t zero, int k0,
                                                int k_len, int tid) {
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int e = tid + i * THREADS;
      const int r = e / BK, kk = e % BK;
      reg_t x = zero;
      if (e < ROWS * BK && kk < k_len) {
        const auto* row = row_of(r);
        if (row != nullptr) x = convert(row[k0 + kk]);
      }
      v[i] = x;
    }
  }

  // index(r, kk): where element (r, kk) goes in shared memory.
  template <typename Index>
  __host__ __device__ __forceinline__ void store(reg_t* smem, Index index, int tid) const {
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int e = tid + i * THREADS;
      if (e < ROWS * BK) smem[index(e / BK, e % BK)] = v[i];
    }
  }
};

// 16 bytes, or the bits of one 2- or 4-byte element, at p: one load on the
// device; memcpy on the host (the emulator), where the cast would break
// strict aliasing.
template <typename T>
__host__ __device__ __forceinline__ uint4 load_vec16(const T* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint4*>(p);
#else
  uint4 x;
  std::memcpy(&x, p, sizeof(x));
  return x;
#endif
}
template <typename T>
__host__ __device__ __forceinline__ void store_vec16(T* p, const uint4& x) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<uint4*>(p) = x;
#else
  std::memcpy(p, &x, sizeof(x));
#endif
}
template <typename T>
__host__ __device__ __forceinline__ unsigned load_bits(const T* p) {
  static_assert(sizeof(T) == 2 || sizeof(T) == 4, "2- or 4-byte elements");
  using bits_t = std::conditional_t<sizeof(T) == 2, unsigned short, unsigned>;
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const bits_t*>(p);
#else
  bits_t b;
  std::memcpy(&b, p, sizeof(b));
  return b;
#endif
}

// As ChunkStage, for the tensor-core tiles, whose operands stage unconverted:
// 16 bytes at a time (8 fp16/bf16, 4 fp32). A thread loads a whole vector of
// a row in one instruction where it lies within k and is 16-byte aligned,
// element by element otherwise (rows whose stride is not a multiple of 16
// bytes, k's tail), zeros past k and for null rows (all-zero bits are +0 in
// every element type); it stores each vector whole (the tiles' rows are a
// multiple of 16 bytes apart).
template <typename elem_t, int ROWS, int BK, int THREADS>
struct VecChunkStage {
  static constexpr int kVec = 16 / static_cast<int>(sizeof(elem_t));
  static constexpr int kVecsPerRow = BK / kVec;
  static constexpr int kVecs = ROWS * kVecsPerRow;
  static constexpr int kIters = (kVecs + THREADS - 1) / THREADS;
  static_assert(BK % kVec == 0, "a chunk holds whole 16-byte vectors");
  uint4 v[kIters];

  template <typename RowFn>
  __host__ __device__ __forceinline__ void load(RowFn row_of, int k0, int k_len, int tid) {
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int e = tid + i * THREADS;
      const int r = e / kVecsPerRow, kk = e % kVecsPerRow * kVec;
      uint4 x = make_uint4(0u, 0u, 0u, 0u);
      const elem_t* row = e < kVecs && kk < k_len ? row_of(r) : nullptr;
      if (row != nullptr) {
        const elem_t* p = row + k0 + kk;
        if (kk + kVec <= k_len && reinterpret_cast<uintptr_t>(p) % 16 == 0) {
          x = load_vec16(p);
        } else {
          unsigned w[4] = {0u, 0u, 0u, 0u};
#pragma unroll
          for (int t = 0; t < kVec; ++t) {
            constexpr int kBytes = static_cast<int>(sizeof(elem_t));
            if (kk + t < k_len) w[t * kBytes / 4] |= load_bits(p + t) << (8 * (t * kBytes % 4));
          }
          x = make_uint4(w[0], w[1], w[2], w[3]);
        }
      }
      v[i] = x;
    }
  }

  // index(r, kk): where element (r, kk) goes in shared memory (16-byte
  // aligned for kk a multiple of kVec).
  template <typename Index>
  __host__ __device__ __forceinline__ void store(elem_t* smem, Index index, int tid) const {
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int e = tid + i * THREADS;
      if (e < kVecs) store_vec16(smem + index(e / kVecsPerRow, e % kVecsPerRow * kVec), v[i]);
    }
  }
};

// ------------------------------------------------------------ plain FMA path
// Each thread owns a TM x TN micro-tile (rows and columns interleaved so a
// warp reads consecutive shared-memory words). Exact in the accumulation type.
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct SimtGemm {
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int kThreads = (BM / TM_) * (BN / TN_);
  static constexpr int LDC = BN + 1;
  static_assert(BM % TM_ == 0 && BN % TN_ == 0, "tile must divide");

  template <typename acc_t>
  static constexpr size_t smem_bytes() {
    const size_t tiles = size_t(BK) * ((BM + 1) + (BN + 1)) * sizeof(acc_t);
    const size_t out = size_t(BM) * LDC * sizeof(acc_t);
    return tiles > out ? tiles : out;
  }

  // The staging of A's and W's chunks, converted to acc_t, into the tiles
  // As [BK][BM + 1] and Bs [BK][BN + 1]. Host too: the step emulator builds
  // its tiles with these.
  template <typename acc_t>
  using AStage = ChunkStage<acc_t, BM, BK, kThreads>;
  template <typename acc_t>
  using BStage = ChunkStage<acc_t, BN, BK, kThreads>;
  __host__ __device__ static constexpr int a_index(int m, int kk) { return kk * (BM + 1) + m; }
  __host__ __device__ static constexpr int b_index(int c, int kk) { return kk * (BN + 1) + c; }

  // Returns C in shared memory, row stride LDC; ends with a barrier.
  template <int J, typename acc_t, typename scalar_t>
  static __device__ acc_t* run(const TileOperands<scalar_t>& op, unsigned char* smem) {
    acc_t* As = reinterpret_cast<acc_t*>(smem);  // [BK][BM + 1]
    acc_t* Bs = As + BK * (BM + 1);              // [BK][BN + 1]
    constexpr int kColThreads = BN / TN_;
    const int tid = threadIdx.x;
    const int tn = tid % kColThreads, tm = tid / kColThreads;
    acc_t acc[TM_][TN_];
#pragma unroll
    for (int i = 0; i < TM_; ++i)
#pragma unroll
      for (int j = 0; j < TN_; ++j) acc[i][j] = acc_t(0);

    AStage<acc_t> a_stage;
    BStage<acc_t> b_stage;
    const auto a_row = [&](int m) { return op.a_row(m); };
    const auto w_row = [&](int c) { return op.template w_row<J>(c); };
    const auto to_acc = [](scalar_t x) { return static_cast<acc_t>(x); };
    const auto a_at = [](int m, int kk) { return a_index(m, kk); };
    const auto b_at = [](int c, int kk) { return b_index(c, kk); };
    if (op.k > 0) {
      a_stage.load(a_row, to_acc, acc_t(0), 0, min(BK, op.k), tid);
      b_stage.load(w_row, to_acc, acc_t(0), 0, min(BK, op.k), tid);
    }
    for (int k0 = 0; k0 < op.k; k0 += BK) {
      const int k_len = min(BK, op.k - k0);
      a_stage.store(As, a_at, tid);
      b_stage.store(Bs, b_at, tid);
      __syncthreads();
      if (k0 + BK < op.k) {  // in flight during this chunk's math
        a_stage.load(a_row, to_acc, acc_t(0), k0 + BK, min(BK, op.k - k0 - BK), tid);
        b_stage.load(w_row, to_acc, acc_t(0), k0 + BK, min(BK, op.k - k0 - BK), tid);
      }
#pragma unroll 4
      for (int kk = 0; kk < k_len; ++kk) {
        acc_t a[TM_], b[TN_];
#pragma unroll
        for (int i = 0; i < TM_; ++i) a[i] = As[kk * (BM + 1) + tm + i * (BM / TM_)];
#pragma unroll
        for (int j = 0; j < TN_; ++j) b[j] = Bs[kk * (BN + 1) + tn + j * kColThreads];
#pragma unroll
        for (int i = 0; i < TM_; ++i)
#pragma unroll
          for (int j = 0; j < TN_; ++j) acc[i][j] += a[i] * b[j];
      }
      __syncthreads();
    }
    acc_t* Cs = reinterpret_cast<acc_t*>(smem);  // reuses the tiles' space
#pragma unroll
    for (int i = 0; i < TM_; ++i)
#pragma unroll
      for (int j = 0; j < TN_; ++j)
        Cs[(tm + i * (BM / TM_)) * LDC + tn + j * kColThreads] = acc[i][j];
    __syncthreads();
    return Cs;
  }
};

// ------------------------------------------------------- tensor-core path
// WMMA on 16x16 tiles: fp16/bf16 operands (k = 16) or fp32 rounded to TF32
// (k = 8), fp32 accumulation. Warps split the tiles; when there are fewer
// tiles than warps they split k instead and the partial tiles are summed in
// a fixed order (deterministic).
template <typename T>
struct MmaElement {
  using type = T;  // float: TF32
};
template <>
struct MmaElement<c10::Half> {
  using type = __half;
};
template <>
struct MmaElement<c10::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename elem_t>
struct MmaTraits {
  static constexpr int K = 16;
  static constexpr int PAD = 8;  // keeps rows 16-byte aligned, shifts banks
  using frag_t = elem_t;
};
template <>
struct MmaTraits<float> {
  static constexpr int K = 8;
  static constexpr int PAD = 4;
  using frag_t = nvcuda::wmma::precision::tf32;
};

template <typename scalar_t, int BM_, int BN_, int BK_, int NWARPS>
struct MmaGemm {
  using elem_t = typename MmaElement<scalar_t>::type;
  using Traits = MmaTraits<elem_t>;
  static constexpr int BM = BM_, BN = BN_, BK = BK_;
  static constexpr int kThreads = 32 * NWARPS;
  static constexpr int LDS = BK + Traits::PAD;
  static constexpr int LDC = BN + 4;
  static constexpr int kTiles = (BM / 16) * (BN / 16);
  static constexpr int kTilesPerWarp = kTiles >= NWARPS ? kTiles / NWARPS : 1;
  static constexpr int kSplitK = kTiles >= NWARPS ? 1 : NWARPS / kTiles;
  static constexpr int kGroups = kTiles / kTilesPerWarp;  // warps sharing one k-slice
  static_assert(BM % 16 == 0 && BN % 16 == 0 && BK % Traits::K == 0, "WMMA tile shape");
  static_assert(kGroups * kSplitK == NWARPS, "warps must divide the tiles or k evenly");

  template <typename acc_t>
  static constexpr size_t smem_bytes() {
    const size_t tiles = size_t(BM + BN) * LDS * sizeof(elem_t);
    const size_t out = size_t(kSplitK) * BM * LDC * sizeof(float);
    return tiles > out ? tiles : out;
  }

  // The staging of A's and W's chunks into the tiles As [BM][LDS] and Bs
  // [BN][LDS] (element (r, kk) at r * LDS + kk). Host too: the step
  // emulator builds its tiles with these.
  using AStage = VecChunkStage<elem_t, BM, BK, kThreads>;
  using BStage = VecChunkStage<elem_t, BN, BK, kThreads>;
  static_assert(LDS * sizeof(elem_t) % 16 == 0, "tile rows 16-byte aligned");
  __host__ __device__ static constexpr int smem_index(int r, int kk) { return r * LDS + kk; }
  __host__ __device__ static const elem_t* a_row_elems(const TileOperands<scalar_t>& op, int m) {
    return reinterpret_cast<const elem_t*>(op.a_row(m));
  }
  template <int J>
  __host__ __device__ static const elem_t* w_row_elems(const TileOperands<scalar_t>& op, int c) {
    return reinterpret_cast<const elem_t*>(op.template w_row<J>(c));
  }

  template <int J, typename acc_t>
  static __device__ float* run(const TileOperands<scalar_t>& op, unsigned char* smem) {
    static_assert(sizeof(acc_t) == sizeof(float), "tensor-core path accumulates in fp32");
    float* Cs = reinterpret_cast<float*>(smem);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    namespace wmma = nvcuda::wmma;
    using frag_t = typename Traits::frag_t;
    constexpr int MK = Traits::K;
    elem_t* As = reinterpret_cast<elem_t*>(smem);  // [BM][LDS]
    elem_t* Bs = As + BM * LDS;                    // [BN][LDS]
    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int group = warp % kGroups, slice = warp / kGroups;

    wmma::fragment<wmma::accumulator, 16, 16, MK, float> acc[kTilesPerWarp];
#pragma unroll
    for (int t = 0; t < kTilesPerWarp; ++t) wmma::fill_fragment(acc[t], 0.0f);

    AStage a_stage;
    BStage b_stage;
    const auto a_row = [&](int m) { return a_row_elems(op, m); };
    const auto w_row = [&](int c) { return w_row_elems<J>(op, c); };
    const auto at = [](int r, int kk) { return smem_index(r, kk); };
    if (op.k > 0) {
      a_stage.load(a_row, 0, min(BK, op.k), tid);
      b_stage.load(w_row, 0, min(BK, op.k), tid);
    }
    for (int k0 = 0; k0 < op.k; k0 += BK) {
      // The chunk is zero-filled past k, so the MMAs may run to k's next multiple.
      const int k_len = min(BK, op.k - k0);
      const int k_mma = (k_len + MK - 1) / MK * MK;
      a_stage.store(As, at, tid);
      b_stage.store(Bs, at, tid);
      __syncthreads();
      if (k0 + BK < op.k) {  // in flight during this chunk's MMAs
        a_stage.load(a_row, k0 + BK, min(BK, op.k - k0 - BK), tid);
        b_stage.load(w_row, k0 + BK, min(BK, op.k - k0 - BK), tid);
      }
      for (int kk = slice * MK; kk < k_mma; kk += kSplitK * MK) {
#pragma unroll
        for (int t = 0; t < kTilesPerWarp; ++t) {
          const int tile = group * kTilesPerWarp + t;
          const int mt = tile / (BN / 16), nt = tile % (BN / 16);
          wmma::fragment<wmma::matrix_a, 16, 16, MK, frag_t, wmma::row_major> a;
          wmma::fragment<wmma::matrix_b, 16, 16, MK, frag_t, wmma::col_major> b;
          wmma::load_matrix_sync(a, As + mt * 16 * LDS + kk, LDS);
          wmma::load_matrix_sync(b, Bs + nt * 16 * LDS + kk, LDS);
          if constexpr (MK == 8) {  // fp32 operands rounded to TF32
#pragma unroll
            for (int i = 0; i < a.num_elements; ++i) a.x[i] = wmma::__float_to_tf32(a.x[i]);
#pragma unroll
            for (int i = 0; i < b.num_elements; ++i) b.x[i] = wmma::__float_to_tf32(b.x[i]);
          }
          wmma::mma_sync(acc[t], a, b, acc[t]);
        }
      }
      __syncthreads();
    }
#pragma unroll
    for (int t = 0; t < kTilesPerWarp; ++t) {
      const int tile = group * kTilesPerWarp + t;
      const int mt = tile / (BN / 16), nt = tile % (BN / 16);
      wmma::store_matrix_sync(Cs + slice * BM * LDC + mt * 16 * LDC + nt * 16, acc[t], LDC,
                              wmma::mem_row_major);
    }
    __syncthreads();
    if constexpr (kSplitK > 1) {
      for (int e = tid; e < BM * BN; e += kThreads) {
        const int m = e / BN, c = e % BN;
        float sum = Cs[m * LDC + c];
#pragma unroll
        for (int s = 1; s < kSplitK; ++s) sum += Cs[s * BM * LDC + m * LDC + c];
        Cs[m * LDC + c] = sum;
      }
      __syncthreads();
    }
#else
    __trap();  // the host never selects tensor cores below sm_80
#endif
    return Cs;
  }
};

}  // namespace cuda
}  // namespace rnnfuse
