// Host side of the persistent schedule: the driver's step list (schedule.h)
// run-length encoded into layout.h's Schedule, which the kernel receives in
// its parameters (no host-to-device copy, so CUDA graph capture works).
// Used by the CUDA launcher and by the emulator, which also checks that
// StepCursor walks it back into exactly the driver's steps.
#pragma once

#include <vector>

#include "../schedule.h"
#include "layout.h"

namespace rnnfuse {
namespace persist {

// Number of runs of equal batch size in the steps (what the planner checks).
inline int count_runs(const std::vector<Step>& steps) {
  int runs = 0;
  for (size_t s = 0; s < steps.size(); ++s) {
    if (s == 0 || steps[s].bs != steps[s - 1].bs) ++runs;
  }
  return runs;
}

// False when there are more than kMaxRuns runs (the caller takes the per-step path).
inline bool encode_schedule(const std::vector<Step>& steps, int64_t n_rows, bool reverse,
                            Schedule& out) {
  out.n_rows = n_rows;
  out.n_steps = static_cast<int32_t>(steps.size());
  out.reverse = reverse ? 1 : 0;
  out.n_runs = 0;
  for (size_t s = 0; s < steps.size(); ++s) {
    if (s == 0 || steps[s].bs != steps[s - 1].bs) {
      if (out.n_runs == kMaxRuns) return false;
      out.runs[out.n_runs++] = StepRun{static_cast<int32_t>(steps[s].bs), 0};
    }
    ++out.runs[out.n_runs - 1].steps;
  }
  return true;
}

}  // namespace persist
}  // namespace rnnfuse
