// Pieces the forward and backward emulators share: the partition and test
// hooks an emulator call runs with, and the operand value the tensor cores see.
#pragma once

#include <c10/core/ScalarType.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../schedule.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

struct EmuConfig {
  int units = 0, replicas = 1, hbuf_rows = kChunkRows, elem_bytes = 2;
  bool reverse = false;
  uint64_t seed = 0;
  // Test hook: a deliberately broken wait, so the tests see the protocol
  // checks fire. 0: the kernel's protocol; 1: no wait; 2: wait for one step
  // less; 3: wait only for the CTA's own flag.
  int fault = 0;
};

inline EmuConfig make_emu_config(int64_t units, int64_t replicas, int64_t hbuf_rows,
                                 int64_t elem_bytes, int64_t seed, int64_t fault, bool reverse,
                                 at::ScalarType dtype) {
  TORCH_CHECK(units > 0 && replicas > 0, "emulator: units and replicas must be positive");
  const int64_t need = dtype == at::kFloat ? 4 : 2;
  TORCH_CHECK(dtype == at::kDouble ? (elem_bytes == 2 || elem_bytes == 4) : elem_bytes == need,
              "emulator: elem_bytes ", elem_bytes, " does not match dtype ", dtype);
  TORCH_CHECK(hbuf_rows >= kChunkRows && hbuf_rows % kChunkRows == 0,
              "emulator: hbuf_rows must be a positive multiple of ", kChunkRows);
  return EmuConfig{int(units), int(replicas), int(hbuf_rows), int(elem_bytes), reverse,
                   static_cast<uint64_t>(seed), int(fault)};
}

// The operand value the tensor cores see: fp32 rounded to TF32 with the
// kernel's own function; fp16/bf16 as they are; float64 unrounded.
template <typename scalar_t>
double operand(scalar_t x) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    uint32_t u;
    std::memcpy(&u, &x, 4);
    u = tf32_round_bits(u);
    float r;
    std::memcpy(&r, &u, 4);
    return r;
  } else {
    return static_cast<double>(x);
  }
}

// make_schedule and the kernels' run-length encoded cursor must agree on
// every step (including what the cursor says of the next step).
inline void check_cursor(const std::vector<Step>& steps, const Schedule& sched) {
  StepCursor cur;
  cur.begin(sched);
  for (size_t s = 0; s < steps.size(); ++s, cur.advance(sched)) {
    TORCH_CHECK(cur.valid(sched), "emulator: cursor ended at step ", s);
    const Step& st = steps[s];
    const bool last = s + 1 == steps.size();
    TORCH_CHECK(cur.cur.row0 == st.row0 && cur.cur.bs == st.bs && cur.cur.carry == st.carry &&
                    (s == 0 || cur.cur.prev_row0 == st.prev_row0) &&
                    cur.cur.carry_next == st.carry_next &&
                    (st.carry_next == 0 || cur.cur.next_row0 == st.next_row0) &&
                    cur.cur.bs_next == (last ? 0 : steps[s + 1].bs) &&
                    (last || cur.cur.next_row0 == steps[s + 1].row0),
                "emulator: step cursor disagrees with make_schedule at step ", s, ": row0 ",
                cur.cur.row0, " vs ", st.row0, ", bs ", cur.cur.bs, " vs ", st.bs, ", carry ",
                cur.cur.carry, " vs ", st.carry);
  }
  TORCH_CHECK(!cur.valid(sched), "emulator: cursor runs past the last step");
}

// The flag value a CTA waits for from a producer of its replica before a
// step (0: none), under the kernel's protocol or a test's broken one.
inline uint32_t emu_wait(const EmuConfig& cfg, const StepInfo& st, int rows, bool same_replica,
                         bool is_self) {
  if (!needs_exchange(st, rows) || !same_replica) return 0;
  switch (cfg.fault) {
    case 1: return 0;
    case 2: return wait_value(st.step) - 1;
    case 3: return is_self ? wait_value(st.step) : 0;
    default: return wait_value(st.step);
  }
}

}  // namespace persist
}  // namespace rnnfuse
