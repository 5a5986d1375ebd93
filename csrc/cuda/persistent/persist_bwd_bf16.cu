// The persistent backward kernels with __nv_bfloat16 operands (LSTM and GRU): explicit
// instantiations only, one operand type per file. No ATen here.
#include "kernel_bwd.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_BWD_ENTRY_POINTS(__nv_bfloat16, bf16)

}  // namespace persist
}  // namespace rnnfuse
