// The cluster-tier backward kernels with float operands (LSTM and GRU, each
// m-tile stride M the planner can pick): the entry points only, one operand
// type per file (launched by the backward driver where planned, and by the
// test op persistent_cuda_cluster_*_bwd).
// Real code only for sm_90 targets; older targets get the trapping stub.
// No ATen here.
#include "cluster_bwd_kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_CLUSTER_BWD_ENTRY_POINTS(float, tf32)

}  // namespace persist
}  // namespace rnnfuse
