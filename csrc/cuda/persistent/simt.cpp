// The fiber runtime of simt.h (host execution of the persistent kernels).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <c10/util/Exception.h>
#include <ucontext.h>

#include <algorithm>
#include <exception>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace rnnfuse {
namespace simt {
namespace {

constexpr size_t kStackBytes = 256 * 1024;  // touched pages only (kernels use a few KB)
constexpr int kMaxIdleRounds = 1 << 14;     // then a deadlock, whatever the watchdog says
constexpr int kSlotBytes = 32;

struct TrapSignal {};  // __trap(): unwinds the fiber to its entry

// Two-phase meeting point of a warp's lanes: phase 1 fills the slots, phase
// 2 holds every lane until all have read them (so the next collective's
// writes cannot overtake a slow reader).
struct Warp {
  int arrived = 0, left = 0, tag = 0;
  uint64_t filled = 0, emptied = 0;  // generations
  alignas(16) unsigned char slot[32][kSlotBytes];
};

struct Cta {
  std::vector<uint4> smem;
  int arrived = 0;
  uint64_t generation = 0;
  std::vector<Warp> warps;
};

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  int cta = 0, tid = 0;
  bool done = false;
};

struct Grid {
  int threads = 0;
  std::vector<Cta> ctas;
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  uint64_t progress = 0;  // arrivals, completed meetings, stores, finished fibers
  uint64_t now_ns = 0;
  std::string error;
};

thread_local Grid* g_grid = nullptr;

Grid& grid() {
  TORCH_CHECK(g_grid != nullptr && g_grid->cur != nullptr,
              "simt: a CUDA built-in called outside a simulated kernel");
  return *g_grid;
}

void yield() {
  Grid& g = grid();
  Fiber* f = g.cur;
  swapcontext(&f->ctx, &g.scheduler);
}

// A meeting of `count` fibers: the last to arrive opens the next generation
// and goes on; the others wait for it. An arrival is progress.
void meet(int& arrived, uint64_t& generation, int count) {
  ++grid().progress;
  const uint64_t gen = generation;
  if (++arrived == count) {
    arrived = 0;
    ++generation;
    return;
  }
  while (generation == gen) yield();
}

void fiber_entry() {
  Grid& g = *g_grid;
  Fiber* f = g.cur;
  try {
    (*g.body)();
  } catch (const TrapSignal&) {
    g.error = "__trap() in CTA " + std::to_string(f->cta) + " thread " + std::to_string(f->tid) +
              " (the kernel's watchdog: a flag wait that never ended)";
  } catch (const std::exception& e) {
    g.error = std::string(e.what()) + " (CTA " + std::to_string(f->cta) + " thread " +
              std::to_string(f->tid) + ")";
  }
  f->done = true;
  ++g.progress;
  // Returning resumes uc_link: the scheduler.
}

}  // namespace

Idx thread_idx() { return Idx{static_cast<unsigned>(grid().cur->tid), 0u, 0u}; }
Idx block_idx() { return Idx{static_cast<unsigned>(grid().cur->cta), 0u, 0u}; }

unsigned char* shared_memory() {
  Grid& g = grid();
  return reinterpret_cast<unsigned char*>(g.ctas[g.cur->cta].smem.data());
}

void syncthreads() {
  Grid& g = grid();
  Cta& c = g.ctas[g.cur->cta];
  meet(c.arrived, c.generation, g.threads);
}

void yield_spin() { yield(); }

void note_store() { ++grid().progress; }

void trap() { throw TrapSignal{}; }

uint64_t globaltimer_ns() { return grid().now_ns; }

void warp_exchange(const void* mine, void* all, int bytes, int tag) {
  if (bytes < 1 || bytes > kSlotBytes) throw std::logic_error("simt: a collective's operand size");
  Grid& g = grid();
  const int tid = g.cur->tid, lane = tid & 31;
  Warp& w = g.ctas[g.cur->cta].warps[tid >> 5];
  if (w.arrived == 0) {
    w.tag = tag;
  } else if (w.tag != tag) {
    throw std::logic_error("simt: the lanes of warp " + std::to_string(tid >> 5) +
                           " meet at different collectives (diverged)");
  }
  std::memcpy(w.slot[lane], mine, static_cast<size_t>(bytes));
  meet(w.arrived, w.filled, 32);
  for (int l = 0; l < 32; ++l) {
    std::memcpy(static_cast<unsigned char*>(all) + l * bytes, w.slot[l],
                static_cast<size_t>(bytes));
  }
  meet(w.left, w.emptied, 32);
}

void run_grid(int ctas, int threads, size_t smem_bytes, uint64_t seed, uint64_t idle_ns,
              const std::function<void()>& body) {
  TORCH_CHECK(ctas > 0 && threads > 0 && threads % 32 == 0, "simt: a grid of ", ctas, " x ",
              threads, " threads");
  TORCH_CHECK(g_grid == nullptr, "simt: grids do not nest");
  Grid g;
  g.threads = threads;
  g.body = &body;
  std::mt19937_64 rng(seed);
  g.ctas.resize(static_cast<size_t>(ctas));
  for (Cta& c : g.ctas) {
    // Seeded garbage: a kernel must write shared memory before it reads it.
    c.smem.resize((smem_bytes + 15) / 16);
    auto* bytes = reinterpret_cast<unsigned char*>(c.smem.data());
    for (size_t i = 0; i < c.smem.size() * 16; ++i) bytes[i] = static_cast<unsigned char>(rng());
    c.warps.resize(static_cast<size_t>(threads / 32));
  }
  g.fibers.resize(static_cast<size_t>(ctas) * threads);
  for (size_t i = 0; i < g.fibers.size(); ++i) {
    Fiber& f = g.fibers[i];
    f.cta = static_cast<int>(i / threads);
    f.tid = static_cast<int>(i % threads);
    f.stack.reset(new char[kStackBytes]);
    TORCH_CHECK(getcontext(&f.ctx) == 0, "simt: getcontext failed");
    f.ctx.uc_stack.ss_sp = f.stack.get();
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = &g.scheduler;
    makecontext(&f.ctx, fiber_entry, 0);
  }
  std::vector<size_t> order(g.fibers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;

  g_grid = &g;
  size_t live = g.fibers.size();
  int idle_rounds = 0;
  while (live > 0 && g.error.empty()) {
    std::shuffle(order.begin(), order.end(), rng);
    const uint64_t before = g.progress;
    for (size_t i : order) {
      Fiber& f = g.fibers[i];
      if (f.done) continue;
      // A GPU thread may lag behind the rest of its CTA or grid for any
      // time: a quarter of the fibers sit out each round, so a thread that
      // should have waited for another's store can run before it.
      if (rng() % 4 == 0) continue;
      g.cur = &f;
      swapcontext(&g.scheduler, &f.ctx);
      if (f.done) --live;
      if (!g.error.empty()) break;
    }
    g.cur = nullptr;
    if (g.progress == before) {
      g.now_ns += idle_ns;
      if (++idle_rounds > kMaxIdleRounds) {
        g.error = "deadlock: no thread progressed for " + std::to_string(kMaxIdleRounds) +
                  " rounds (" + std::to_string(live) + " threads left)";
      }
    } else {
      idle_rounds = 0;
    }
  }
  g_grid = nullptr;
  // Unfinished fibers are dropped with their stacks (the kernels hold no
  // resources but memory).
  TORCH_CHECK(g.error.empty(), "simt: ", g.error);
}

}  // namespace simt
}  // namespace rnnfuse
