// One step of a layer's time loop: which rows it owns and how they connect to
// the steps processed just before and just after (see schedule.h). Plain data
// with no ATen dependency, so kernels compiled per instruction set can take it.
#pragma once

#include <cstdint>

namespace rnnfuse {

struct Step {
  int64_t row0;        // first row of this step
  int64_t bs;          // active rows: [0, bs)
  int64_t prev_row0;   // first row of the step processed just before
  int64_t carry;       // rows [0, carry) continue from that step, [carry, bs) start from h0
  int64_t next_row0;   // first row of the step processed just after
  int64_t carry_next;  // rows [0, carry_next) continue into it, [carry_next, bs) end here
};

}  // namespace rnnfuse
