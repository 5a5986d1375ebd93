// The persistent backward kernels with fp32 operands rounded to TF32 (LSTM and GRU): explicit
// instantiations only, one operand type per file. No ATen here.
#include "kernel_bwd.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_BWD_ENTRY_POINTS(float, tf32)

}  // namespace persist
}  // namespace rnnfuse
