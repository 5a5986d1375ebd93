// The persistent forward kernels with fp32 operands rounded to TF32 (LSTM and GRU): explicit
// instantiations only, one operand type per file so ninja compiles them in
// parallel. No ATen here.
#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_ENTRY_POINTS(float, tf32)

}  // namespace persist
}  // namespace rnnfuse
