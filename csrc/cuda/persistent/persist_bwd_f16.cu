// The persistent backward kernels with __half operands (LSTM and GRU): explicit
// instantiations only, one operand type per file. No ATen here.
#include "kernel_bwd.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_BWD_ENTRY_POINTS(__half, f16)

}  // namespace persist
}  // namespace rnnfuse
