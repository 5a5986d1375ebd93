// GRU step kernels for float: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "gru_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void gru_fwd_step<float>(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg) {
  gru_fwd_step_impl<float>(a, cfg);
}

template <>
void gru_bwd_step<float>(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg) {
  gru_bwd_step_impl<float>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
