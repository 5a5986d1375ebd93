// The persistent forward kernels with __nv_bfloat16 operands (LSTM and GRU): explicit
// instantiations only, one operand type per file so ninja compiles them in
// parallel. No ATen here.
#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_ENTRY_POINTS(__nv_bfloat16, bf16)

}  // namespace persist
}  // namespace rnnfuse
