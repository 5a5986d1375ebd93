// The cluster-tier forward kernels with float operands (LSTM and GRU):
// explicit instantiations only, one operand type per file. Real code only
// for sm_90 targets; older targets get the trapping stub. No ATen here.
#include "cluster_kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_CLUSTER_ENTRY_POINTS(float, tf32)

}  // namespace persist
}  // namespace rnnfuse
