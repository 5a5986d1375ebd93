// rnnfuse::persistent_simt_selftest: the fiber runtime's checks (simt.h),
// each on a small kernel through the kernels' own wrappers (cluster_ptx.cuh,
// ptx.cuh). The "clean" kernel is the cluster tier's protocol in miniature
// (two h buffers and mbarriers, every CTA pushing words to every peer each
// step), "grid_clean" the grid tier's (every CTA storing its words of each
// step to global memory and releasing a flag; every CTA acquiring all flags
// and reading every word through L2). Each must pass with the values it
// expects; every other case breaks one rule and must raise what the runtime
// reports (tests/test_persistent_simt_cluster.py, tests/test_persistent_simt.py).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <torch/library.h>

#include <string>
#include <vector>

#include "cluster_ptx.cuh"
#include "exchange.cuh"  // the grid tier's wait_flag
#include "ptx.cuh"

namespace rnnfuse {
namespace persist {
namespace {

constexpr int kCtas = 4, kThreadsHere = 64, kWords = 8, kSteps = 5;
constexpr uint64_t kWatchdogNs = 1000000;

// Shared memory: two buffers [kCtas][kWords] of words, then two mbarriers.
struct Layout {
  uint32_t* buf;
  uint64_t* bars;
};
Layout layout() {
  unsigned char* smem = simt::shared_memory();
  return Layout{reinterpret_cast<uint32_t*>(smem),
                reinterpret_cast<uint64_t*>(smem + 2 * kCtas * kWords * 4)};
}
constexpr size_t kSmemBytes = 2 * kCtas * kWords * 4 + 16;

uint32_t word(int rank, int step, int w) { return uint32_t(rank * 100000 + step * 100 + w); }

// The protocol; `c` names the one rule to break.
void exchange_kernel(const std::string& c, const uint32_t* global_words) {
  const Layout L = layout();
  const int tid = int(threadIdx.x), rank = int(cluster_ctarank());
  if (tid == 0 && !(c == "uninitialised_barrier" && rank == 1)) mbarrier_init_cluster(L.bars, 2);
  if (c == "cp_async_unwaited" && tid == 0) {
    cp_async_4(L.buf, global_words);
    cp_async_commit();
  }
  if (c == "cp_async_read_before_wait" && tid < kWords) {
    cp_async_4(L.buf + tid, global_words + tid);
    cp_async_commit();
    const uint32_t early = L.buf[tid];
    cp_async_commit();  // an empty group: the copy's is no longer the newest
    cp_async_wait_prior();
    TORCH_CHECK(L.buf[tid] == global_words[tid], "the copy had not landed at its wait");
    TORCH_CHECK(early == global_words[tid], "a read before the wait saw ", early);
  }
  cluster_sync_all();
  if (c == "overwritten_barrier" && tid == 0) L.bars[0] = 0;
  uint32_t parity = 0;
  for (int s = 0; s < kSteps; ++s) {
    const int b = s & 1;
    uint32_t* slot = L.buf + b * kCtas * kWords;
    if (tid < kWords) {  // this CTA's words of step s, to every peer
      const uint32_t v = word(rank, s, tid);
      for (int q = 0; q < kCtas; ++q) {
        if (q == rank) continue;
        st_async_b32(mapa_shared(smem_addr(slot + rank * kWords + tid), uint32_t(q)), v,
                     mapa_shared(smem_addr(L.bars + b), uint32_t(q)));
      }
    }
    if (tid == 0) {
      const uint32_t extra = c == "missing_bytes" ? 4u : 0u;
      mbarrier_arrive_expect_tx(L.bars + b, (kCtas - 1) * kWords * 4 + extra);
      mbarrier_wait_watchdog(L.bars + b, (parity >> b) & 1u, kWatchdogNs);
    }
    parity ^= 1u << b;
    __syncthreads();
    if (tid < kCtas * kWords) {
      const int q = tid / kWords, w = tid % kWords;
      if (q != rank) {
        TORCH_CHECK(slot[tid] == word(q, s, w), "step ", s, ": word ", w, " of rank ", q,
                    " reads ", slot[tid]);
      }
    }
    __syncthreads();  // every read of buffer b before the next push into it
  }
  if (c == "unwaited_bytes" && rank == 0 && tid == 0) {
    st_async_b32(mapa_shared(smem_addr(L.buf), 1u), 7u, mapa_shared(smem_addr(L.bars), 1u));
  }
  cluster_sync_all();
}

// The grid tier's flag protocol in miniature: global words [kSteps][kCtas]
// [kWords] (`gwords`, the exchanged buffer: every step its own words, as y
// rows) and one flag per CTA; `c` names the one rule to break.
void grid_kernel(const std::string& c, uint32_t* gwords, unsigned* flags) {
  const int tid = int(threadIdx.x), q = int(blockIdx.x);
  for (int s = 0; s < kSteps; ++s) {
    uint32_t* row = gwords + s * kCtas * kWords;
    if (tid < kWords) {
      const uint32_t v = word(q, s, tid);
      if (c == "grid_plain_store") {
        row[q * kWords + tid] = v;
      } else {
        st_exchanged(row + q * kWords + tid, v);
      }
    }
    const int releaser = c == "grid_two_releasers" && s == 1 ? 1 : 0;
    if (c == "grid_release_before_barrier" && tid == releaser) st_release_gpu(flags + q, s + 1);
    __syncthreads();  // every word of this CTA before its release
    if (c != "grid_release_before_barrier" && tid == releaser) {
      if (c == "grid_relaxed_release") {
        *reinterpret_cast<volatile unsigned*>(flags + q) = unsigned(s + 1);
      } else {
        st_release_gpu(flags + q, uint32_t(s + 1));
      }
    }
    if (tid < kCtas) {  // thread i waits for CTA i's step
      if (c == "grid_relaxed_poll") {
        while (*reinterpret_cast<volatile unsigned*>(flags + tid) < unsigned(s + 1)) __nanosleep(40);
      } else {
        wait_flag(flags + tid, uint32_t(s + 1), kWatchdogNs);
      }
    }
    if (c != "grid_no_barrier_after_acquire") __syncthreads();  // the acquires, for every thread
    if (tid < kCtas * kWords) {
      const uint32_t v = ld_cg(row + tid);
      // The clean protocol must read every word right; a broken one is left
      // to the runtime's checks alone (whatever value the read found).
      TORCH_CHECK(c != "grid_clean" || v == word(tid / kWords, s, tid % kWords), "step ", s,
                  ": word ", tid % kWords, " of CTA ", tid / kWords, " reads ", v);
    }
    __syncthreads();  // every read of this step before the next step's stores
  }
}

bool is_grid_case(const std::string& c) { return c.rfind("grid_", 0) == 0; }

void selftest(const std::string& c, int64_t seed) {
  static const char* const kCases[] = {
      "clean",          "uninitialised_barrier", "overwritten_barrier",      "missing_bytes",
      "unwaited_bytes", "cp_async_unwaited",     "cp_async_read_before_wait",
      "grid_clean",     "grid_relaxed_release",  "grid_relaxed_poll",
      "grid_release_before_barrier",  "grid_no_barrier_after_acquire",
      "grid_plain_store", "grid_two_releasers"};
  bool known = false;
  for (const char* k : kCases) known = known || c == k;
  TORCH_CHECK(known, "simt self-test: unknown case '", c, "'");
  if (is_grid_case(c)) {
    std::vector<uint32_t> gwords(size_t(kSteps) * kCtas * kWords, 0u);
    std::vector<unsigned> flags(kCtas, 0u);
    const std::vector<simt::Region> exchanged = {{gwords.data(), gwords.size() * 4}};
    simt::run_grid(kCtas, kThreadsHere, 16, static_cast<uint64_t>(seed),
                   simt::idle_step_ns(kWatchdogNs),
                   [&] { grid_kernel(c, gwords.data(), flags.data()); }, 1, exchanged);
    return;
  }
  uint32_t global_words[kWords];
  for (int w = 0; w < kWords; ++w) global_words[w] = 0xabc00000u + uint32_t(w);
  simt::run_grid(kCtas, kThreadsHere, kSmemBytes, static_cast<uint64_t>(seed),
                 simt::idle_step_ns(kWatchdogNs), [&] { exchange_kernel(c, global_words); }, kCtas);
}

}  // namespace
}  // namespace persist
}  // namespace rnnfuse

TORCH_LIBRARY_IMPL(rnnfuse, CompositeImplicitAutograd, m) {
  m.impl("persistent_simt_selftest", &rnnfuse::persist::selftest);
}
