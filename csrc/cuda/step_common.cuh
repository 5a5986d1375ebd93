// Launch plumbing shared by the LSTM and GRU step kernels: tile choices per
// dtype and batch, and one checked launch on the caller's stream.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>

#include <type_traits>

#include "tile_gemm.cuh"

namespace rnnfuse {
namespace cuda {

// Tensor-core tiles exist for fp16, bf16 and fp32 (as TF32), not fp64.
template <typename scalar_t>
constexpr bool kHasTensorCores = !std::is_same_v<scalar_t, double>;

// k-chunk staged per iteration, sized in bytes of a row. Chunks are staged
// through registers (ChunkStage), so a chunk's size is bounded by what a
// thread can hold without spilling (about 32 loads per thread), not by the
// 48 KB of shared memory.
template <typename T>
constexpr int chunk(int row_bytes) {
  return row_bytes / static_cast<int>(sizeof(T));
}

// Above this many active rows a step uses 64-row tiles (fewer re-reads of
// W_hh per step); below it 16-row tiles (more blocks for small batches).
constexpr int kLargeBatch = 32;

// One tile choice: the GEMM tile and the hidden units J a block owns.
template <typename Gemm_, int J_>
struct Tile {
  using Gemm = Gemm_;
  static constexpr int J = J_;
};

// Runs one step with the tile its dtype, the TF32 switch and its batch call
// for. Tiles is a kernel family's traits: MmaSmall, MmaLarge, SimtSmall,
// SimtLarge (Tile types) and `template <typename T> static void launch(args,
// stream)`.
template <typename scalar_t, typename Tiles, typename Args>
void run_step(const Args& args, int rows, const StepConfig& cfg) {
  const bool large = rows > kLargeBatch;
  if constexpr (kHasTensorCores<scalar_t>) {
    if (cfg.tensor_cores) {
      if (large) {
        Tiles::template launch<typename Tiles::MmaLarge>(args, cfg.stream);
      } else {
        Tiles::template launch<typename Tiles::MmaSmall>(args, cfg.stream);
      }
      return;
    }
  }
  if (large) {
    Tiles::template launch<typename Tiles::SimtLarge>(args, cfg.stream);
  } else {
    Tiles::template launch<typename Tiles::SimtSmall>(args, cfg.stream);
  }
}

// The backward steps of both cells have one GEMM shape (a block owns J
// units; k runs over all G*H gate gradients), so they share one tile table.
template <typename scalar_t>
struct BackwardTileTable {
  using acc_t = at::opmath_type<scalar_t>;
  using elem_t = typename MmaElement<scalar_t>::type;
  using MmaSmall = Tile<MmaGemm<scalar_t, 16, 16, chunk<elem_t>(256), 4>, 16>;
  using MmaLarge = Tile<MmaGemm<scalar_t, 64, 32, chunk<elem_t>(64), 4>, 32>;
  using SimtSmall = Tile<SimtGemm<16, 16, chunk<acc_t>(512), 2, 1>, 16>;
  using SimtLarge = Tile<SimtGemm<64, 32, chunk<acc_t>(256), 4, 2>, 32>;
};

template <typename Gemm, typename acc_t, typename Kernel, typename Args>
void launch_step(Kernel kernel, const Args& args, int units, int unit_tile, int rows,
                 cudaStream_t stream) {
  constexpr size_t smem = Gemm::template smem_bytes<acc_t>();
  static_assert(smem <= 48 * 1024, "step tiles must fit the default shared-memory limit");
  const dim3 grid((units + unit_tile - 1) / unit_tile, (rows + Gemm::BM - 1) / Gemm::BM);
  kernel<<<grid, Gemm::kThreads, smem, stream>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace rnnfuse
