// The cluster-tier forward kernels with __half operands (LSTM and GRU):
// explicit instantiations only, one operand type per file. Real code only
// for sm_90 targets; older targets get the trapping stub. No ATen here.
#include "cluster_kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_CLUSTER_ENTRY_POINTS(__half, f16)

}  // namespace persist
}  // namespace rnnfuse
