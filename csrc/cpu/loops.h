// The CPU backends' time loops (lstm_cpu.cpp, gru_cpu.cpp), which the layer
// ops hand to the drivers, the bidirectional ops (bidir_cpu.cpp) run once per direction,
// and the single-step cells' backward (cell_bwd_cpu.cpp) runs alone.
#pragma once

#include <vector>

#include "../recurrence.h"

namespace rnnfuse {

void lstm_forward_loop_cpu(const LstmForward& f, const std::vector<Step>& steps);
void gru_forward_loop_cpu(const GruForward& f, const std::vector<Step>& steps);
void lstm_backward_loop_cpu(const LstmBackward& g, const std::vector<Step>& steps);
void gru_backward_loop_cpu(const GruBackward& g, const std::vector<Step>& steps);

}  // namespace rnnfuse
