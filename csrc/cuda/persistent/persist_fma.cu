// The persistent forward kernels in exact fp32 (TF32 off: CUDA-core FMAs,
// LSTM and GRU): explicit instantiations only, their own file so ninja
// compiles them in parallel. No ATen here.
#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_FMA_ENTRY_POINTS()

}  // namespace persist
}  // namespace rnnfuse
