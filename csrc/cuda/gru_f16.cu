// GRU step kernels for c10::Half: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "gru_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void gru_fwd_step<c10::Half>(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg) {
  gru_fwd_step_impl<c10::Half>(a, cfg);
}

template <>
void gru_bwd_step<c10::Half>(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg) {
  gru_bwd_step_impl<c10::Half>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
