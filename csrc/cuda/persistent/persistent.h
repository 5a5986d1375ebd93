// The persistent tier's entry points for the CUDA time loops (loops_cuda.cpp):
// each tries the tier the planner picks and returns false when the per-step
// kernels must run instead (tier off, planner fallback, launch refused).
#pragma once

#include <string>
#include <vector>

#include "../../persistent/plan.h"
#include "../../recurrence.h"

namespace rnnfuse {
namespace persist {

// RNNFUSE_PERSISTENT=1 enables the persistent tier; anything else or unset
// keeps today's validated per-step kernels.
bool persistent_enabled();

// The current CUDA device's properties, as the planner reads them.
DeviceProps current_device_props();
// Its SMs a launch may use (the SMs available under MPS or a green context).
int current_usable_sms();

bool try_lstm_forward(const LstmForward& f, const std::vector<Step>& steps);
bool try_gru_forward(const GruForward& f, const std::vector<Step>& steps);
bool try_lstm_backward(const LstmBackward& g, const std::vector<Step>& steps);
bool try_gru_backward(const GruBackward& g, const std::vector<Step>& steps);

// Both directions of a bidirectional layer (their rows are column blocks of
// one buffer): in one grid-tier launch where the plan says that is no
// slower, else each in its own grid-tier launch. Returns which ran (bit d:
// direction d; 3: both): the caller runs the others on the step kernels.
int try_lstm_bidir_forward(const LstmForward (&f)[2], const std::vector<Step> (&steps)[2]);
int try_gru_bidir_forward(const GruForward (&f)[2], const std::vector<Step> (&steps)[2]);
int try_lstm_bidir_backward(const LstmBackward (&g)[2], const std::vector<Step> (&steps)[2]);
int try_gru_bidir_backward(const GruBackward (&g)[2], const std::vector<Step> (&steps)[2]);

}  // namespace persist
}  // namespace rnnfuse
