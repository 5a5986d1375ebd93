// The few PTX instructions the persistent kernels need, wrapped: tensor-core
// MMAs (m16n8k16 fp16/bf16, m16n8k8 TF32), gpu-scope release/acquire flags,
// L2-only loads and async copies (never a stale L1 line of another SM's
// output), the global nanosecond timer of the watchdog. Plain CUDA, no ATen.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#ifdef RNNFUSE_SIMT
#include "simt.h"  // host execution of the kernels (tests): the built-ins on fibers
#endif

// The kernels' dynamic shared memory (a fiber's CTA's buffer in RNNFUSE_SIMT).
#ifdef RNNFUSE_SIMT
#define RNNFUSE_DYNAMIC_SMEM(name) unsigned char* const name = ::rnnfuse::simt::shared_memory()
#else
#define RNNFUSE_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

namespace rnnfuse {
namespace persist {

// Storage element of the recurrent operands and outputs: how the kernel
// converts it and which MMA it feeds.
template <typename E>
struct Elem;
template <>
struct Elem<__half> {
  static constexpr int kBytes = 2;
  static __device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from_float(float x) { return __float2half_rn(x); }
};
template <>
struct Elem<__nv_bfloat16> {
  static constexpr int kBytes = 2;
  static __device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float x) {
    return __float2bfloat16_rn(x);
  }
};
template <>
struct Elem<float> {  // fed to the tensor cores as TF32
  static constexpr int kBytes = 4;
  static __device__ __forceinline__ float to_float(float x) { return x; }
  static __device__ __forceinline__ float from_float(float x) { return x; }
};

// D = A * B + D, A: 4 registers, B: 2 registers, D: 4 fp32.
template <typename E>
__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1);

#ifdef RNNFUSE_SIMT
// mma.sync on the fibers (simt.h: the PTX ISA's fragment tables).
template <>
inline void mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::rnnfuse::simt::mma16<false>(d, a, b0, b1);
}
template <>
inline void mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::rnnfuse::simt::mma16<true>(d, a, b0, b1);
}
template <>
inline void mma<float>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  ::rnnfuse::simt::mma_tf32(d, a, b0, b1);
}
#else
template <>
__device__ __forceinline__ void mma<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                            uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4],
                                                   uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma<float>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                           uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif  // RNNFUSE_SIMT

// Loads through L2 only (ld.global.cg) of data other CTAs of this launch
// wrote: every persistent kernel reads exchanged data through these. Each is
// an `asm volatile`, so it stays after the flag acquire and barrier before
// it. cuda_fp16/bf16's own __ldcg(const __half*) is a plain asm, which the
// compiler may treat as a pure load and move; hence the 16-bit overloads
// load the bits as unsigned short (a volatile overload).
#ifdef RNNFUSE_SIMT
template <typename T>
inline T ld_cg(const T* p) {
  T v;
  ::rnnfuse::simt::load_exchanged(&v, p, int(sizeof(T)));
  return v;
}
#else
__device__ __forceinline__ uint4 ld_cg(const uint4* p) { return __ldcg(p); }
__device__ __forceinline__ float ld_cg(const float* p) { return __ldcg(p); }
__device__ __forceinline__ __half ld_cg(const __half* p) {
  return __ushort_as_half(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ __nv_bfloat16 ld_cg(const __nv_bfloat16* p) {
  return __ushort_as_bfloat16(__ldcg(reinterpret_cast<const unsigned short*>(p)));
}
#endif

// A gather's 16-byte copies of exchanged data into shared memory (sm_80+
// cp.async.cg: through L2 only, as ld_cg), then the wait for all of this
// thread's copies. The copies of a thread are all in flight at once: with a
// load into a register and its store to shared memory per piece, each piece
// waited a whole L2 round trip before the next was issued. cp.async is a
// weak memory operation of the generic proxy (PTX ISA, cp.async), as ld_cg
// is, so the flag acquire and barrier before it order it the same way; the
// caller's __syncthreads after the wait shares the data with the CTA. On the
// fibers the read is checked as ld_cg's at issue and lands at once or at the
// wait (simt.h cp_async_exchanged).
#ifdef RNNFUSE_SIMT
inline void cp_async_exchanged16(void* dst, const void* src) {
  ::rnnfuse::simt::cp_async_exchanged(dst, src, 16);
}
inline void cp_async_wait_all() {
  ::rnnfuse::simt::cp_async_commit();
  ::rnnfuse::simt::cp_async_wait(0);
}
#else
__device__ __forceinline__ void cp_async_exchanged16(void* dst, const void* src) {
  const uint32_t d = static_cast<uint32_t>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}
#endif

// A store of data other CTAs of this launch read (through ld_cg, after an
// acquire of the flag this CTA releases after it): a plain store on the
// GPU; on the fibers it is what the global-memory checks see (simt.h).
#ifdef RNNFUSE_SIMT
template <typename T>
inline void st_exchanged(T* p, T v) {
  ::rnnfuse::simt::store_exchanged(p, &v, int(sizeof(T)));
}
#else
template <typename T>
__device__ __forceinline__ void st_exchanged(T* p, T v) {
  *p = v;
}
#endif

// LL words (ll_layout.h): 8 bytes, a tag and its data, stored by one
// 64-bit store and read two at a time by one 16-byte load. Each aligned
// 8-byte access is single-copy atomic (PTX ISA memory consistency model; a
// vector access is its elements' accesses), so a reader that sees a word's
// tag sees the data stored with it: no fence, no flag, no acquire.
// volatile (relaxed, system scope on sm_70+): every poll goes to memory,
// none is cached in L1 or hoisted out of its loop. On the fibers each load
// lets the other fibers run first (a word may arrive late; simt.h).
#ifdef RNNFUSE_SIMT
inline void ll_store8(uint64_t* p, uint64_t v) { ::rnnfuse::simt::ll_store(p, v); }
inline void ll_load16(const uint64_t* p, uint64_t& lo, uint64_t& hi) {
  uint64_t w[2];
  ::rnnfuse::simt::ll_load(p, w);
  lo = w[0];
  hi = w[1];
}
inline void ll_load8_if(bool pred, const uint64_t* p, uint64_t& w) {
  if (pred) w = ::rnnfuse::simt::ll_load_word(p);
}
#else
__device__ __forceinline__ void ll_store8(uint64_t* p, uint64_t v) {
  asm volatile("st.volatile.global.u64 [%0], %1;\n" : : "l"(p), "l"(v) : "memory");
}
__device__ __forceinline__ void ll_load16(const uint64_t* p, uint64_t& lo, uint64_t& hi) {
  asm volatile("ld.volatile.global.v2.u64 {%0, %1}, [%2];\n" : "=l"(lo), "=l"(hi) : "l"(p) : "memory");
}
// One word (the backward's K-split partial sums: one float a word) where
// pred holds, else w unchanged: a predicated load, so that a poll round's
// loads issue back to back instead of one per branch; p need not be a valid
// address where pred is false.
__device__ __forceinline__ void ll_load8_if(bool pred, const uint64_t* p, uint64_t& w) {
  asm volatile(
      "{\n .reg .pred q;\n setp.ne.u32 q, %2, 0;\n @q ld.volatile.global.u64 %0, [%1];\n}\n"
      : "+l"(w)
      : "l"(p), "r"(uint32_t(pred))
      : "memory");
}
#endif

#ifdef RNNFUSE_SIMT
// Each poll lets the other fibers run first (a value may arrive late); both
// keep the global-memory model's clocks (simt.h).
inline uint32_t ld_acquire_gpu(const unsigned* p) { return ::rnnfuse::simt::acquire_gpu(p); }
inline void st_release_gpu(unsigned* p, uint32_t v) { ::rnnfuse::simt::release_gpu(p, v); }
inline uint64_t globaltimer_ns() { return ::rnnfuse::simt::globaltimer_ns(); }
inline long long cycle_count() { return ::rnnfuse::simt::cycle_count(); }
#else
__device__ __forceinline__ uint32_t ld_acquire_gpu(const unsigned* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release_gpu(unsigned* p, uint32_t v) {
  asm volatile("st.release.gpu.global.u32 [%0], %1;\n" : : "l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint64_t globaltimer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(t));
  return t;
}

// This SM's cycle counter (the step trace).
__device__ __forceinline__ long long cycle_count() { return clock64(); }
#endif  // RNNFUSE_SIMT

}  // namespace persist
}  // namespace rnnfuse
