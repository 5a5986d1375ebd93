// LSTM step kernels for c10::BFloat16: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "lstm_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void lstm_fwd_step<c10::BFloat16>(const StepGroup<LstmFwdStepArgs>& a, const StepConfig& cfg) {
  lstm_fwd_step_impl<c10::BFloat16>(a, cfg);
}

template <>
void lstm_bwd_step<c10::BFloat16>(const StepGroup<LstmBwdStepArgs>& a, const StepConfig& cfg) {
  lstm_bwd_step_impl<c10::BFloat16>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
