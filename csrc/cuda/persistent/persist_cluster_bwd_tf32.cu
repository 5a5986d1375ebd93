// The cluster-tier backward kernels with float operands (LSTM and GRU, each
// m-tile stride M the planner can pick): explicit instantiations only, one
// operand type per file, for the CI compile gates and the launch to come.
// Real code only for sm_90 targets; older targets get the trapping stub.
// No ATen here.
#include "cluster_bwd_kernel.cuh"

namespace rnnfuse {
namespace persist {

RNNFUSE_PERSIST_CLUSTER_BWD_INSTANCES(float)

}  // namespace persist
}  // namespace rnnfuse
