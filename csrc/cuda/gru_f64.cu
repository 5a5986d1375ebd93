// GRU step kernels for double: explicit instantiations only, one dtype per
// file so the CUDA build compiles in parallel and a change recompiles little.
#include "gru_step.cuh"

namespace rnnfuse {
namespace cuda {

template <>
void gru_fwd_step<double>(const StepGroup<GruFwdStepArgs>& a, const StepConfig& cfg) {
  gru_fwd_step_impl<double>(a, cfg);
}

template <>
void gru_bwd_step<double>(const StepGroup<GruBwdStepArgs>& a, const StepConfig& cfg) {
  gru_bwd_step_impl<double>(a, cfg);
}

}  // namespace cuda
}  // namespace rnnfuse
