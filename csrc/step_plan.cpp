// The per-step path's tile planner (step_plan.h), and rnnfuse::step_tile_plan
// for the tests: no tensor inputs, registered as CompositeImplicitAutograd.
#include "step_plan.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <vector>

namespace rnnfuse {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t blocks_of(const StepTile& t, const StepShape& s) {
  return ceil_div(s.units, t.units) * ceil_div(s.rows, t.rows) * s.directions;
}

}  // namespace

int64_t step_tile_cost(const StepTile& t, const StepShape& s) {
  const int64_t waves = ceil_div(blocks_of(t, s), int64_t(s.sm_count) * t.blocks_per_sm);
  // A step without a GEMM (k = 0) still makes one pass: its epilogue.
  const int64_t chunks = s.k > 0 ? ceil_div(s.k, t.k_chunk) : 1;
  return waves * chunks;
}

int plan_step_tile(const StepTile* tiles, int count, const StepShape& s) {
  TORCH_CHECK(s.rows > 0 && s.units > 0 && s.k >= 0 && s.sm_count > 0 &&
                  (s.directions == 1 || s.directions == 2),
              "rnnfuse step planner: bad shape (rows ", s.rows, ", units ", s.units, ", k ", s.k,
              ", directions ", s.directions, ", SMs ", s.sm_count, ")");
  int best = -1;
  int64_t best_cost = 0, best_blocks = 0;
  for (int i = 0; i < count; ++i) {
    const StepTile& t = tiles[i];
    TORCH_CHECK(t.rows > 0 && t.units > 0 && t.k_chunk > 0 && t.blocks_per_sm >= 0,
                "rnnfuse step planner: bad tile ", i);
    if (t.blocks_per_sm == 0) continue;
    const int64_t cost = step_tile_cost(t, s), blocks = blocks_of(t, s);
    if (best < 0 || cost < best_cost || (cost == best_cost && blocks < best_blocks)) {
      best = i;
      best_cost = cost;
      best_blocks = blocks;
    }
  }
  TORCH_CHECK(best >= 0, "rnnfuse: no step kernel tile can be resident on this device "
              "(the occupancy API reported 0 blocks per SM for every tile)");
  return best;
}

namespace {

// tiles: one [rows, units, k_chunk, blocks_per_sm] per tile, flattened.
int64_t step_tile_plan_op(at::IntArrayRef tiles, int64_t rows, int64_t units, int64_t k,
                          int64_t directions, int64_t sm_count) {
  TORCH_CHECK(!tiles.empty() && tiles.size() % 4 == 0,
              "rnnfuse.step_tile_plan: tiles must be 4 integers per tile, got ", tiles.size());
  std::vector<StepTile> t;
  for (size_t i = 0; i < tiles.size(); i += 4) {
    t.push_back({static_cast<int>(tiles[i]), static_cast<int>(tiles[i + 1]),
                 static_cast<int>(tiles[i + 2]), static_cast<int>(tiles[i + 3])});
  }
  const StepShape s{rows, units, k, static_cast<int>(directions), static_cast<int>(sm_count)};
  return plan_step_tile(t.data(), static_cast<int>(t.size()), s);
}

}  // namespace
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CompositeImplicitAutograd, m) {
  m.impl("step_tile_plan", &rnnfuse::step_tile_plan_op);
}
