// The cluster tier's exchange alone, for gpu_check's floor: the cluster
// kernel's wait and push (cluster_exchange.cuh, the same functions) with no
// MMA and no gate math. Each step a CTA adds 1 (as a 16-bit integer) to its
// units of the h it received and pushes them on, so every step depends on
// the previous one and a stale or missing row shows in the result: the
// last step's rows, written to y, equal h0 + (steps - 1) exactly. bf16
// storage; no ATen here.
#include "args.h"
#include "cluster_exchange.cuh"

namespace rnnfuse {
namespace persist {

__global__ void __launch_bounds__(kThreads, 1)
    persist_cluster_exchange_kernel(const PersistClusterArgs a) {
#if RNNFUSE_CLUSTER_ARCH
  using E = unsigned short;  // bf16 bits
  extern __shared__ __align__(16) unsigned char smem[];
  const ClusterPartition& p = a.part;
  const int pitch = p.h_pitch(2), hb_elems = p.hb_rows * pitch, H = p.hidden;
  E* hb = reinterpret_cast<E*>(smem);
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem + align16(int64_t(2) * hb_elems * 2));
  const int c = int(cluster_ctarank()), r = int(cluster_id_x());
  const int u0 = p.unit_begin(c), span = p.span(c);
  const E* h0 = static_cast<const E*>(a.h0);
  E* y = static_cast<E*>(a.y);
  for (int i = threadIdx.x; i < 2 * hb_elems; i += kThreads) hb[i] = 0;
  if (threadIdx.x == 0) mbarrier_init_cluster(bars, 2);
  cluster_sync_all();
  uint32_t parity = 0;
  StepCursor cur;
  for (cur.begin(a.sched); cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int buf = cluster_buffer(st.step);
    const int rows = p.replica_rows(r, st.bs);
    if (rows == 0) continue;
    const int carry_rows = p.replica_rows(r, st.carry);
    E* hcur = hb + buf * hb_elems;
    E* hnext = hb + (buf ^ 1) * hb_elems;
    for (int i = threadIdx.x; i < (rows - carry_rows) * H; i += kThreads) {
      const int n = carry_rows + i / H, k = i % H;
      hcur[n * pitch + k] = h0[p.replica_row(r, n) * H + k];
    }
    if (cluster_waits(st, carry_rows)) {
      cluster_wait_step(bars, buf, parity, p.expect_bytes(c, carry_rows, 2), a.watchdog_ns);
    }
    __syncthreads();
    for (int i = threadIdx.x; i < rows * span; i += kThreads) {
      const int n = i / span, k = u0 + i % span;
      hnext[n * pitch + k] = static_cast<E>(hcur[n * pitch + k] + 1u);
      if (st.bs_next == 0) y[(st.row0 + p.replica_row(r, n)) * H + k] = hcur[n * pitch + k];
    }
    __syncthreads();
    const int next_rows = p.replica_rows(r, st.carry_next);
    if (next_rows > 0) cluster_push<E>(p, c, hnext, bars + (buf ^ 1), next_rows, pitch);
  }
  cluster_sync_all();
#else
  __trap();
#endif
}

int64_t cluster_exchange_smem(const ClusterPartition& p) {
  return align16(int64_t(2) * p.hb_rows * p.h_pitch(2) * 2) + 16;
}

cudaError_t launch_persist_cluster_exchange(const PersistClusterArgs& a, size_t smem,
                                            cudaStream_t stream) {
  return launch_clusters(persist_cluster_exchange_kernel, a, a.part.cluster, a.part.cluster_grid(),
                         smem, stream);
}

}  // namespace persist
}  // namespace rnnfuse
