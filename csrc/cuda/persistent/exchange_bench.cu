// The exchange alone, for gpu_check's floor measurement: the forward
// kernel's wait, gather and publish (exchange.cuh, the same functions) with
// no MMA and no gate math. Each step a CTA copies its J units of the gathered
// h back to y, so every step depends on the previous one as in the kernel.
// bf16 rows; no ATen here.
#include "exchange.cuh"
#include "kernel.cuh"

namespace rnnfuse {
namespace persist {

__global__ void __launch_bounds__(kThreads, 1) persist_exchange_kernel(const PersistArgs a) {
  using E = __nv_bfloat16;
  extern __shared__ __align__(16) unsigned char smem[];
  const Partition& p = a.part;
  // Only the h buffer: the bench's CTAs own H / ctas units, more than the
  // forward kernel's partial-sum tiles are sized for.
  E* hbuf = reinterpret_cast<E*>(smem);
  const int q = blockIdx.x, r = p.replica_of(q), c = p.cta_of(q);
  const int pitch = p.h_pitch(2), H = p.hidden, J = p.units;
  E* y = static_cast<E*>(a.y);
  StepCursor cur;
  for (cur.begin(a.sched); cur.valid(a.sched); cur.advance(a.sched)) {
    const StepInfo st = cur.cur;
    const int rows = p.replica_rows(r, st.bs);
    if (rows > 0) {
      if (needs_exchange(st, rows)) wait_for_replica(a, r, wait_value(st.step));
      // The caller sizes hbuf for all rows.
      gather_rows<E>(p, p.k_width(), static_cast<const E*>(a.y), H, st.prev_row0,
                     static_cast<const E*>(a.h0), st.carry, r, 0, rows, a.vec16 != 0, hbuf);
      __syncthreads();
      // Units per row padded to a power of two, as gather_rows splits: no
      // division by the runtime J in the floor this measures.
      const int unit_bits = ceil_log2(J);
      for (int i = threadIdx.x; i < rows << unit_bits; i += kThreads) {
        const int n = i >> unit_bits, jj = i & ((1 << unit_bits) - 1);
        const int j = p.first_unit(c) + jj;
        if (jj < J && j < H) {
          st_exchanged(y + (st.row0 + p.replica_row(r, n)) * H + j, hbuf[n * pitch + j]);
        }
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) st_release_gpu(a.flags + q * a.flag_stride, publish_value(st.step));
  }
}

cudaError_t launch_persist_exchange(const PersistArgs& a, size_t smem, int sms,
                                    cudaStream_t stream) {
  return launch_cooperative(persist_exchange_kernel, a, a.part.grid(), smem, sms, stream);
}

}  // namespace persist
}  // namespace rnnfuse
