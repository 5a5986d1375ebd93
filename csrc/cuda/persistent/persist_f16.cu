// The persistent forward kernels with __half operands (LSTM and GRU): explicit
// instantiations only, one operand type per file so ninja compiles them in
// parallel. No ATen here.
#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_ENTRY_POINTS(__half, f16)

}  // namespace persist
}  // namespace rnnfuse
