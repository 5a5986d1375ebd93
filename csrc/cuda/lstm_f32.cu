// LSTM step kernels for float: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "lstm_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void lstm_fwd_step<float>(const StepGroup<LstmFwdStepArgs>& a, const StepConfig& cfg) {
  lstm_fwd_step_impl<float>(a, cfg);
}

template <>
void lstm_bwd_step<float>(const StepGroup<LstmBwdStepArgs>& a, const StepConfig& cfg) {
  lstm_bwd_step_impl<float>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
