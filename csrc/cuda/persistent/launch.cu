// Picks the forward (grid and cluster) and backward kernels' instantiation by operand type (the per-type
// entry points live in persist_<type>.cu). No ATen here.
#include "args.h"

namespace rnnfuse {
namespace persist {

cudaError_t launch_persist_fwd_f16(Cell, const PersistFwdLaunch&, size_t, int, cudaStream_t);
cudaError_t launch_persist_fwd_bf16(Cell, const PersistFwdLaunch&, size_t, int, cudaStream_t);
cudaError_t launch_persist_fwd_tf32(Cell, const PersistFwdLaunch&, size_t, int, cudaStream_t);
cudaError_t persist_fwd_blocks_per_sm_f16(Cell, size_t, int*);
cudaError_t persist_fwd_blocks_per_sm_bf16(Cell, size_t, int*);
cudaError_t persist_fwd_blocks_per_sm_tf32(Cell, size_t, int*);
cudaError_t launch_persist_fwd_fma(Cell, const PersistFwdLaunch&, size_t, int, cudaStream_t);
cudaError_t persist_fwd_blocks_per_sm_fma(Cell, size_t, int*);
cudaError_t launch_persist_bwd_f16(Cell, const PersistBwdLaunch&, size_t, int, cudaStream_t);
cudaError_t launch_persist_bwd_bf16(Cell, const PersistBwdLaunch&, size_t, int, cudaStream_t);
cudaError_t launch_persist_bwd_tf32(Cell, const PersistBwdLaunch&, size_t, int, cudaStream_t);
cudaError_t persist_bwd_blocks_per_sm_f16(Cell, size_t, int*);
cudaError_t persist_bwd_blocks_per_sm_bf16(Cell, size_t, int*);
cudaError_t persist_bwd_blocks_per_sm_tf32(Cell, size_t, int*);
cudaError_t launch_persist_bwd_fma(Cell, const PersistBwdLaunch&, size_t, int, cudaStream_t);
cudaError_t persist_bwd_blocks_per_sm_fma(Cell, size_t, int*);

cudaError_t launch_persist_cluster_f16(Cell, const PersistClusterLaunch&, size_t, cudaStream_t);
cudaError_t launch_persist_cluster_bf16(Cell, const PersistClusterLaunch&, size_t, cudaStream_t);
cudaError_t launch_persist_cluster_tf32(Cell, const PersistClusterLaunch&, size_t, cudaStream_t);
cudaError_t persist_cluster_max_active_f16(Cell, int, size_t, int*);
cudaError_t persist_cluster_max_active_bf16(Cell, int, size_t, int*);
cudaError_t persist_cluster_max_active_tf32(Cell, int, size_t, int*);

cudaError_t launch_persist_cluster_bwd_f16(Cell, const PersistClusterBwdLaunch&, size_t,
                                           cudaStream_t);
cudaError_t launch_persist_cluster_bwd_bf16(Cell, const PersistClusterBwdLaunch&, size_t,
                                            cudaStream_t);
cudaError_t launch_persist_cluster_bwd_tf32(Cell, const PersistClusterBwdLaunch&, size_t,
                                            cudaStream_t);
cudaError_t persist_cluster_bwd_max_active_f16(Cell, int, int, size_t, int*);
cudaError_t persist_cluster_bwd_max_active_bf16(Cell, int, int, size_t, int*);
cudaError_t persist_cluster_bwd_max_active_tf32(Cell, int, int, size_t, int*);

cudaError_t launch_persist_cluster_bwd(ElemKind kind, Cell cell, const PersistClusterBwdLaunch& a,
                                       size_t smem, cudaStream_t stream) {
  switch (kind) {
    case ElemKind::F32: return cudaErrorNotSupported;  // no exact-FMA cluster kernel
    case ElemKind::F16: return launch_persist_cluster_bwd_f16(cell, a, smem, stream);
    case ElemKind::BF16: return launch_persist_cluster_bwd_bf16(cell, a, smem, stream);
    default: return launch_persist_cluster_bwd_tf32(cell, a, smem, stream);
  }
}

cudaError_t persist_cluster_bwd_max_active(ElemKind kind, Cell cell, int M, int cluster,
                                           size_t smem, int* clusters) {
  switch (kind) {
    case ElemKind::F32: return cudaErrorNotSupported;
    case ElemKind::F16: return persist_cluster_bwd_max_active_f16(cell, M, cluster, smem, clusters);
    case ElemKind::BF16: return persist_cluster_bwd_max_active_bf16(cell, M, cluster, smem, clusters);
    default: return persist_cluster_bwd_max_active_tf32(cell, M, cluster, smem, clusters);
  }
}

cudaError_t launch_persist_cluster(ElemKind kind, Cell cell, const PersistClusterLaunch& a,
                                   size_t smem, cudaStream_t stream) {
  switch (kind) {
    case ElemKind::F32: return cudaErrorNotSupported;  // no exact-FMA cluster kernel
    case ElemKind::F16: return launch_persist_cluster_f16(cell, a, smem, stream);
    case ElemKind::BF16: return launch_persist_cluster_bf16(cell, a, smem, stream);
    default: return launch_persist_cluster_tf32(cell, a, smem, stream);
  }
}

cudaError_t persist_cluster_max_active(ElemKind kind, Cell cell, int cluster, size_t smem,
                                       int* clusters) {
  switch (kind) {
    case ElemKind::F32: return cudaErrorNotSupported;  // no exact-FMA cluster kernel
    case ElemKind::F16: return persist_cluster_max_active_f16(cell, cluster, smem, clusters);
    case ElemKind::BF16: return persist_cluster_max_active_bf16(cell, cluster, smem, clusters);
    default: return persist_cluster_max_active_tf32(cell, cluster, smem, clusters);
  }
}

cudaError_t launch_persist_fwd(ElemKind kind, Cell cell, const PersistFwdLaunch& a, size_t smem,
                               int sms, cudaStream_t stream) {
  switch (kind) {
    case ElemKind::F32: return launch_persist_fwd_fma(cell, a, smem, sms, stream);
    case ElemKind::F16: return launch_persist_fwd_f16(cell, a, smem, sms, stream);
    case ElemKind::BF16: return launch_persist_fwd_bf16(cell, a, smem, sms, stream);
    default: return launch_persist_fwd_tf32(cell, a, smem, sms, stream);
  }
}

cudaError_t persist_fwd_blocks_per_sm(ElemKind kind, Cell cell, size_t smem, int* blocks) {
  switch (kind) {
    case ElemKind::F32: return persist_fwd_blocks_per_sm_fma(cell, smem, blocks);
    case ElemKind::F16: return persist_fwd_blocks_per_sm_f16(cell, smem, blocks);
    case ElemKind::BF16: return persist_fwd_blocks_per_sm_bf16(cell, smem, blocks);
    default: return persist_fwd_blocks_per_sm_tf32(cell, smem, blocks);
  }
}

cudaError_t launch_persist_bwd(ElemKind kind, Cell cell, const PersistBwdLaunch& a, size_t smem,
                               int sms, cudaStream_t stream) {
  switch (kind) {
    case ElemKind::F32: return launch_persist_bwd_fma(cell, a, smem, sms, stream);
    case ElemKind::F16: return launch_persist_bwd_f16(cell, a, smem, sms, stream);
    case ElemKind::BF16: return launch_persist_bwd_bf16(cell, a, smem, sms, stream);
    default: return launch_persist_bwd_tf32(cell, a, smem, sms, stream);
  }
}

cudaError_t persist_bwd_blocks_per_sm(ElemKind kind, Cell cell, size_t smem, int* blocks) {
  switch (kind) {
    case ElemKind::F32: return persist_bwd_blocks_per_sm_fma(cell, smem, blocks);
    case ElemKind::F16: return persist_bwd_blocks_per_sm_f16(cell, smem, blocks);
    case ElemKind::BF16: return persist_bwd_blocks_per_sm_bf16(cell, smem, blocks);
    default: return persist_bwd_blocks_per_sm_tf32(cell, smem, blocks);
  }
}

}  // namespace persist
}  // namespace rnnfuse
