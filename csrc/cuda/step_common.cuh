// Launch plumbing shared by the LSTM and GRU step kernels: the tile choice
// per dtype and batch (step_plan.h), and one checked launch on the caller's
// stream.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAMacros.h>

#include <atomic>
#include <type_traits>

#include "../step_plan.h"
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

// Where epilogue element e < BM * J of the block at (j0, m0) lands: tile row
// m and unit column jj of the block's GEMM tile, batch row b and hidden unit
// j; not active past the step's batch or the hidden size. (step_rows: the
// <cell>_step.cuh overloads.)
struct EpilogueElement {
  int m, jj, j;
  int64_t b;
  bool active;
};

template <int J, typename Args>
__host__ __device__ __forceinline__ EpilogueElement epilogue_element(const Args& a, int j0,
                                                                     int m0, int e) {
  const int m = e / J, jj = e % J;
  const int64_t b = m0 + m;
  const int j = j0 + jj;
  return {m, jj, j, b, b < step_rows(a) && j < a.hidden};
}

// The rule before the planner (RNNFUSE_STEP_TILE=threshold): 64-row tiles
// above this many active rows, 16-row tiles below.
constexpr int kLargeBatch = 32;

// The step kernels' __launch_bounds__ ask for one resident block per SM, not
// more: left to itself ptxas aimed at two or three (128 or 168 registers)
// for some tiles and spilled (the CI gate tests/test_step_build.py).
constexpr int kStepMinBlocks = 1;

// One tile choice: the GEMM tile and the hidden units J a block owns.
template <typename Gemm_, int J_>
struct Tile {
  using Gemm = Gemm_;
  static constexpr int J = J_;
};

// Blocks of Tiles' kernel for tile T resident per SM on the current device
// (the occupancy API, asked once per device).
template <typename Tiles, typename T>
int resident_blocks() {
  using acc_t = typename Tiles::acc_t;
  static std::atomic<int> known[C10_COMPILE_TIME_MAX_GPUS];  // blocks + 1; 0: not asked yet
  const int device = c10::cuda::current_device();
  int n = known[device].load(std::memory_order_relaxed);
  if (n == 0) {
    int blocks = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, Tiles::template kernel<T>(), T::Gemm::kThreads,
        T::Gemm::template smem_bytes<acc_t>()));
    n = blocks + 1;
    known[device].store(n, std::memory_order_relaxed);
  }
  return n - 1;
}

template <typename Tiles, typename T>
StepTile tile_shape() {
  return {T::Gemm::BM, T::J, T::Gemm::BK, resident_blocks<Tiles, T>()};
}

// The larger of the group's directions' active rows: the launch's row tiles.
template <typename Args>
int group_rows(const StepGroup<Args>& group) {
  const int rows = step_rows(group.dir[0]);
  return group.count > 1 && step_rows(group.dir[1]) > rows ? step_rows(group.dir[1]) : rows;
}

// Launches one step on Small or Large, as cfg.tile_rule says.
template <typename Tiles, typename Small, typename Large, typename Args>
void launch_planned(const StepGroup<Args>& group, int rows, const StepConfig& cfg) {
  bool large = false;
  switch (cfg.tile_rule) {
    case TileRule::kSmall: large = false; break;
    case TileRule::kLarge: large = true; break;
    case TileRule::kThreshold: large = rows > kLargeBatch; break;
    case TileRule::kPlanner: {
      int k = step_k(group.dir[0]);
      if (group.count > 1 && step_k(group.dir[1]) > k) k = step_k(group.dir[1]);
      const StepTile tiles[2] = {tile_shape<Tiles, Small>(), tile_shape<Tiles, Large>()};
      const StepShape shape{rows, group.dir[0].hidden, k, group.count, cfg.sm_count};
      large = plan_step_tile(tiles, 2, shape) == 1;
      break;
    }
  }
  if (large) {
    Tiles::template launch<Large>(group, rows, cfg.stream);
  } else {
    Tiles::template launch<Small>(group, rows, cfg.stream);
  }
}

// Runs one step (of one or two directions) on the kernel family its dtype
// and the TF32 switch call for, with the tile the rule picks for the larger
// of the directions' batches (both directions share one tile). Tiles is a
// family's traits: MmaSmall, MmaLarge, their twins with twice the k-chunk
// MmaSmallDeep, MmaLargeDeep (cfg.deep_chunks: an A/B for the GPU check,
// fewer round trips per step for more staging registers), SimtSmall,
// SimtLarge (Tile types),
// acc_t, `template <typename T> static auto kernel()` and
// `template <typename T> static void launch(group, rows, stream)`; the
// step's arguments come with step_rows and step_k overloads (<cell>_step.cuh).
template <typename scalar_t, typename Tiles, typename Args>
void run_step(const StepGroup<Args>& group, const StepConfig& cfg) {
  const int rows = group_rows(group);
  if constexpr (kHasTensorCores<scalar_t>) {
    if (cfg.tensor_cores && cfg.deep_chunks) {
      launch_planned<Tiles, typename Tiles::MmaSmallDeep, typename Tiles::MmaLargeDeep>(group,
                                                                                      rows, cfg);
      return;
    }
    if (cfg.tensor_cores) {
      launch_planned<Tiles, typename Tiles::MmaSmall, typename Tiles::MmaLarge>(group, rows, cfg);
      return;
    }
  }
  launch_planned<Tiles, typename Tiles::SimtSmall, typename Tiles::SimtLarge>(group, rows, cfg);
}

// The backward steps of both cells have one GEMM shape (a block owns J
// units; k runs over all G*H gate gradients), so they share one tile table.
template <typename scalar_t>
struct BackwardTileTable {
  using acc_t = at::opmath_type<scalar_t>;
  using elem_t = typename MmaElement<scalar_t>::type;
  using MmaSmall = Tile<MmaGemm<scalar_t, 16, 16, chunk<elem_t>(256), 4>, 16>;
  using MmaLarge = Tile<MmaGemm<scalar_t, 64, 32, chunk<elem_t>(64), 4>, 32>;
  using MmaSmallDeep = Tile<MmaGemm<scalar_t, 16, 16, chunk<elem_t>(512), 4>, 16>;
  using MmaLargeDeep = Tile<MmaGemm<scalar_t, 64, 32, chunk<elem_t>(128), 4>, 32>;
  using SimtSmall = Tile<SimtGemm<16, 16, chunk<acc_t>(512), 2, 1>, 16>;
  using SimtLarge = Tile<SimtGemm<64, 32, chunk<acc_t>(256), 4, 2>, 32>;
};

// A step launch's grid: (unit tiles, row tiles of the larger batch,
// directions). A direction's row tiles past its own batch return at once.
inline dim3 step_grid(int units, int unit_tile, int rows, int row_tile, int directions) {
  return dim3((units + unit_tile - 1) / unit_tile, (rows + row_tile - 1) / row_tile, directions);
}

template <typename Gemm, typename acc_t, typename Kernel, typename Args>
void launch_step(Kernel kernel, const StepGroup<Args>& group, int units, int unit_tile, int rows,
                 cudaStream_t stream) {
  constexpr size_t smem = Gemm::template smem_bytes<acc_t>();
  static_assert(smem <= 48 * 1024, "step tiles must fit the default shared-memory limit");
  const dim3 grid = step_grid(units, unit_tile, rows, Gemm::BM, group.count);
  kernel<<<grid, Gemm::kThreads, smem, stream>>>(group);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace cuda
}  // namespace rnnfuse
