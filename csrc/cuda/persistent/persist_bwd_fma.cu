// The persistent backward kernels in exact fp32 (TF32 off: CUDA-core FMAs,
// LSTM and GRU): explicit instantiations only, one kind per file. No ATen here.
#include "kernel_bwd.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_BWD_FMA_ENTRY_POINTS()

}  // namespace persist
}  // namespace rnnfuse
