// Which tile a per-step kernel launch takes (the per-step path's planner;
// host code, no CUDA, unit-tested on the CPU through rnnfuse::step_tile_plan).
//
// A step of the per-step path is latency-bound: each block stages its
// operands through a chain of dependent L2 round trips, one per k-chunk
// (benchmarks/results/nvidia-h200_2026-11-27_gpu-check/NOTES.md: the step
// time followed that chain's length). So a step costs about
//   waves * ceil(k / k_chunk)  round trips,
//   waves = ceil(blocks / (sm_count * blocks_per_sm)),
// and the planner takes the tile that minimises it: a tile with fewer rows
// per block puts more blocks on the machine (fills it at large batch where
// the 64-row tiles left most SMs idle) and stages longer chunks; a larger
// tile re-reads W_hh fewer times, which wins once the small tiles need more
// waves. Ties go to the tile with fewer blocks (less L2 traffic).
#pragma once

#include <cstdint>

namespace rnnfuse {

// One tile a step kernel family offers.
struct StepTile {
  int rows;           // batch rows per block
  int units;          // hidden units per block
  int k_chunk;        // k elements staged per L2 round trip
  int blocks_per_sm;  // resident blocks per SM (the occupancy API's answer); 0: cannot launch
};

struct StepShape {
  int64_t rows;     // active batch rows (the larger direction's)
  int64_t units;    // hidden units
  int64_t k;        // reduction length of the step's GEMM (0: no GEMM)
  int directions;   // 1, or 2 (a bidirectional layer's launch)
  int sm_count;     // SMs of the device
};

// Round trips of one step on `tile` (the cost above).
int64_t step_tile_cost(const StepTile& tile, const StepShape& shape);

// Index of the tile to launch among tiles[0, count); raises if none can launch.
int plan_step_tile(const StepTile* tiles, int count, const StepShape& shape);

}  // namespace rnnfuse
