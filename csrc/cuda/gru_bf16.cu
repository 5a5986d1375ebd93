// GRU step kernels for c10::BFloat16: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "gru_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void gru_fwd_step<c10::BFloat16>(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg) {
  gru_fwd_step_impl<c10::BFloat16>(a, cfg);
}

template <>
void gru_bwd_step<c10::BFloat16>(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg) {
  gru_bwd_step_impl<c10::BFloat16>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
