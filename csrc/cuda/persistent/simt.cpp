// The fiber runtime of simt.h (host execution of the persistent kernels).
#define RNNFUSE_SIMT 1
#include "simt.h"

#include <c10/util/Exception.h>
#include <ucontext.h>

#include <algorithm>
#include <exception>
#include <map>
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
// Bytes after each CTA's dynamic shared memory that no kernel may touch: a
// plain store past its end (an index the shared-address checks never see)
// lands here, not on the heap, and the run fails saying so.
constexpr size_t kSmemGuardBytes = 32 * 1024;

struct TrapSignal {};  // __trap(): unwinds the fiber to its entry

// Two-phase meeting point of a warp's lanes: phase 1 fills the slots, phase
// 2 holds every lane until all have read them (so the next collective's
// writes cannot overtake a slow reader).
struct Warp {
  int arrived = 0, left = 0, tag = 0;
  uint64_t filled = 0, emptied = 0;  // generations
  alignas(16) unsigned char slot[32][kSlotBytes];
};

// An mbarrier's state (PTX ISA): pending arrivals of the current phase, the
// signed tx-count, the phase's parity.
struct Mbarrier {
  uint32_t pending = 0, expected = 0, phase = 0;
  int64_t tx = 0;
};

// A vector clock over the grid's CTAs: entry q is the last release of CTA q
// whose stores its holder has seen (0: none). Empty means all zeros.
using Clock = std::vector<uint32_t>;

void merge(Clock& into, const Clock& from) {
  if (from.empty()) return;
  if (into.empty()) into.assign(from.size(), 0u);
  for (size_t i = 0; i < from.size(); ++i) into[i] = std::max(into[i], from[i]);
}

uint32_t entry(const Clock& c, int q) { return c.empty() ? 0u : c[size_t(q)]; }

// An access to 2 bytes of an exchanged buffer: by thread tid of CTA cta
// (< 0: none) after that CTA's generation-th __syncthreads; published to
// other CTAs by that CTA's release number epoch (0: not yet).
struct Access {
  int32_t cta = -1, tid = 0;
  uint64_t generation = 0;
  uint32_t epoch = 0;
};

// Per 2 bytes: the last store, and each CTA's last read of its value.
struct Granule {
  Access store;
  std::vector<Access> reads;
};

struct Exchanged {
  unsigned char* base;
  size_t bytes;
  std::vector<Granule> granules;
  std::vector<unsigned char> initial;  // the bytes at launch (the plain-store check)
};

// An access waiting for its CTA's next release that it precedes.
struct PendingAccess {
  int region;
  size_t granule;
  int reader;  // -1: the store; else the CTA whose read it is
};

struct Cta {
  std::vector<uint4> smem;            // the dynamic shared memory, then the guard
  std::vector<unsigned char> guard;   // the guard's bytes as they were filled
  int arrived = 0;
  uint64_t generation = 0;  // __syncthreads completed (a running thread has passed exactly these)
  Clock clock;              // seen by every thread of the CTA (shared at a __syncthreads)
  Clock arrivals;           // the current __syncthreads' arrivals' clocks, shared when it completes
  std::vector<PendingAccess> pending;  // accesses not yet published by a release
  uint32_t releases = 0;    // releases so far (the epoch of the last)
  int releaser = -1;        // the thread that releases
  std::vector<Warp> warps;
  std::map<uint32_t, Mbarrier> bars;  // by shared::cta offset, once initialised
  bool exiting = false;               // one of its threads returned
};

struct Cluster {
  int arrived = 0;
  uint64_t generation = 0;
};

struct Copy {  // a pending cp.async
  void* dst;
  const void* src;  // nullptr: the bytes were read at issue, into `data`
  int bytes;
  uint64_t group;
  unsigned char data[16];
};

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  int cta = 0, tid = 0;
  bool done = false;
  Clock clock;  // seen through this thread's own acquires since its last __syncthreads
  std::vector<Copy> copies;
  uint64_t committed = 0;  // cp.async groups committed
};

struct Message {  // an st.async in flight
  int from, to;
  uint32_t offset, bar;
  int bytes;
  unsigned char data[16];
};

struct FlagRelease {  // the last st.release.gpu of a flag
  uint32_t value;
  Clock clock;
};

struct Grid {
  int threads = 0, cluster = 1;
  size_t smem_bytes = 0;
  std::vector<Cta> ctas;
  std::vector<Cluster> clusters;
  std::vector<Fiber> fibers;
  std::vector<Message> flight;
  std::mt19937_64 rng;
  ucontext_t scheduler;
  Fiber* cur = nullptr;
  const std::function<void()>* body = nullptr;
  uint64_t progress = 0;  // arrivals, completed meetings, stores, deliveries, finished fibers
  uint64_t now_ns = 0;
  uint64_t cycles = 0;  // cycle_count's
  std::string error;
  std::vector<Exchanged> exchanged;
  std::map<const void*, FlagRelease> flags;
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

[[noreturn]] void fail(const std::string& what) { throw std::logic_error(what); }

std::string cta_name(int cta) { return "CTA " + std::to_string(cta); }

// ---- mbarriers: the state in Cta::bars, mirrored into the barrier's 8
// bytes of shared memory (a kernel store over it breaks the mirror).
uint64_t mirror(uint32_t offset, const Mbarrier& b) {
  uint64_t m = 0x9e3779b97f4a7c15ull ^ offset;
  m = m * 31 + b.pending;
  m = m * 31 + b.expected;
  m = m * 31 + b.phase;
  return m * 31 + static_cast<uint64_t>(b.tx);
}

void check_offset(uint32_t offset, int bytes, const std::string& what) {
  if (bytes <= 0 || offset % static_cast<uint32_t>(bytes) != 0 ||
      size_t(offset) + size_t(bytes) > g_grid->smem_bytes) {
    fail(what + ": " + std::to_string(bytes) + " bytes at shared offset " +
         std::to_string(offset) + " (misaligned or past the CTA's " +
         std::to_string(g_grid->smem_bytes) + " bytes)");
  }
}

unsigned char* smem_at(int cta, uint32_t offset) {
  return reinterpret_cast<unsigned char*>(g_grid->ctas[size_t(cta)].smem.data()) + offset;
}

void store_mirror(int cta, uint32_t offset, const Mbarrier& b) {
  const uint64_t m = mirror(offset, b);
  std::memcpy(smem_at(cta, offset), &m, 8);
}

Mbarrier& barrier_at(int cta, uint32_t offset, const char* use) {
  check_offset(offset, 8, std::string(use) + " of an mbarrier");
  Cta& c = g_grid->ctas[size_t(cta)];
  const auto it = c.bars.find(offset);
  if (it == c.bars.end()) {
    fail(std::string(use) + " of an mbarrier at offset " + std::to_string(offset) + " of " +
         cta_name(cta) + " before its mbarrier.init");
  }
  uint64_t m = 0;
  std::memcpy(&m, smem_at(cta, offset), 8);
  if (m != mirror(offset, it->second)) {
    fail("the mbarrier at offset " + std::to_string(offset) + " of " + cta_name(cta) +
         " was overwritten by a plain shared-memory store");
  }
  return it->second;
}

// The phase completes when its arrivals came and its bytes landed.
void settle(int cta, uint32_t offset, Mbarrier& b) {
  if (b.tx <= -(int64_t(1) << 20) || b.tx >= (int64_t(1) << 20)) {
    fail("an mbarrier's tx-count left the PTX range (+-(2^20 - 1))");
  }
  if (b.pending == 0 && b.tx == 0) {
    b.phase ^= 1u;
    b.pending = b.expected;
  }
  store_mirror(cta, offset, b);
}

// A shared::cluster address's CTA (index in the grid) and offset.
void decode_cluster_address(uint32_t addr, int from, int* cta, uint32_t* offset) {
  const uint32_t tag = addr >> 24;
  const int base = from - from % g_grid->cluster;
  *cta = tag == 0 ? from : base + int(tag) - 1;
  *offset = addr & 0xffffffu;
  if (tag > uint32_t(g_grid->cluster)) fail("a shared::cluster address of a rank past the cluster");
}

void deliver(Grid& g, const Message& m) {
  Cta& to = g.ctas[size_t(m.to)];
  if (to.exiting) {
    fail("st.async from " + cta_name(m.from) + " into " + cta_name(m.to) +
         " after that CTA began to exit (bytes nobody waited for)");
  }
  check_offset(m.offset, m.bytes, "st.async");
  Mbarrier& b = barrier_at(m.to, m.bar, "complete_tx");
  const uint32_t lo = m.offset, hi = m.offset + uint32_t(m.bytes);
  if (lo < m.bar + 8 && m.bar < hi) fail("st.async over an mbarrier");
  std::memcpy(smem_at(m.to, m.offset), m.data, size_t(m.bytes));
  b.tx -= m.bytes;
  settle(m.to, m.bar, b);
  ++g.progress;
}

// Each message in flight lands with probability 1/2 (any order: st.async
// stores are unordered among themselves). all: every one (the grid's end).
void deliver_some(Grid& g, bool all) {
  if (g.flight.empty()) return;  // every round of every grid run
  std::vector<Message> keep;
  for (const Message& m : g.flight) {
    if (all || g.rng() % 2 == 0) {
      deliver(g, m);
    } else {
      keep.push_back(m);
    }
  }
  g.flight.swap(keep);
}

void fiber_entry() {
  Grid& g = *g_grid;
  Fiber* f = g.cur;
  try {
    (*g.body)();
    if (!f->copies.empty()) fail("cp.async copies never waited for when the thread exited");
  } catch (const TrapSignal&) {
    g.error = "__trap() in CTA " + std::to_string(f->cta) + " thread " + std::to_string(f->tid) +
              " (the kernel's watchdog: a flag, LL word or mbarrier wait that never ended; or an LL "
              "word overwritten before it was read)";
  } catch (const std::exception& e) {
    g.error = std::string(e.what()) + " (CTA " + std::to_string(f->cta) + " thread " +
              std::to_string(f->tid) + ")";
  }
  f->done = true;
  g.ctas[size_t(f->cta)].exiting = true;
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
  Fiber& f = *g.cur;
  Cta& c = g.ctas[size_t(f.cta)];
  // What each arriving thread has seen, every thread sees after the barrier
  // (bar.sync orders memory at CTA scope; gpu-scope release is cumulative).
  merge(c.arrivals, f.clock);
  f.clock.clear();
  if (c.arrived == g.threads - 1) {  // the last arrival: the barrier completes now
    merge(c.clock, c.arrivals);
    c.arrivals.clear();
  }
  meet(c.arrived, c.generation, g.threads);
}

void yield_spin() { yield(); }

void trap() { throw TrapSignal{}; }

uint64_t globaltimer_ns() { return grid().now_ns; }

long long cycle_count() { return static_cast<long long>(++grid().cycles); }

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

unsigned cluster_ctarank() { return unsigned(grid().cur->cta % g_grid->cluster); }
unsigned cluster_id() { return unsigned(grid().cur->cta / g_grid->cluster); }

uint32_t shared_offset(const void* p) {
  const auto* base = shared_memory();
  const auto* q = static_cast<const unsigned char*>(p);
  if (q < base || q >= base + g_grid->smem_bytes) {
    fail("a shared-memory address outside the CTA's dynamic shared memory");
  }
  return uint32_t(q - base);
}

uint32_t map_shared(uint32_t addr, uint32_t rank) {
  grid();
  if (rank >= uint32_t(g_grid->cluster) || (addr >> 24) != 0) fail("mapa of a rank or address");
  return ((rank + 1u) << 24) | addr;
}

void cluster_sync() {
  Grid& g = grid();
  Cluster& c = g.clusters[size_t(g.cur->cta / g.cluster)];
  meet(c.arrived, c.generation, g.cluster * g.threads);
}

void mbarrier_init(uint32_t bar, uint32_t count) {
  const int cta = grid().cur->cta;
  check_offset(bar, 8, "mbarrier.init");
  if (count < 1 || count >= (1u << 20)) fail("mbarrier.init count");
  Mbarrier b;
  b.pending = b.expected = count;
  g_grid->ctas[size_t(cta)].bars[bar] = b;
  store_mirror(cta, bar, b);
}

void mbarrier_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
  const int cta = grid().cur->cta;
  Mbarrier& b = barrier_at(cta, bar, "arrive.expect_tx");
  if (b.pending == 0) fail("an mbarrier arrival beyond its expected count");
  b.tx += int64_t(bytes);
  --b.pending;
  settle(cta, bar, b);
  ++g_grid->progress;
}

bool mbarrier_try_wait_parity(uint32_t bar, uint32_t parity) {
  yield();
  const int cta = grid().cur->cta;
  return barrier_at(cta, bar, "try_wait").phase != (parity & 1u);
}

void st_async(uint32_t addr, const void* data, int bytes, uint32_t bar) {
  Grid& g = grid();
  if (bytes != 4 && bytes != 16) fail("st.async of " + std::to_string(bytes) + " bytes");
  Message m{};
  m.from = g.cur->cta;
  int bar_cta = 0;
  decode_cluster_address(addr, m.from, &m.to, &m.offset);
  decode_cluster_address(bar, m.from, &bar_cta, &m.bar);
  if (bar_cta != m.to) fail("st.async completing on another CTA's mbarrier than its data's");
  check_offset(m.offset, bytes, "st.async");
  m.bytes = bytes;
  std::memcpy(m.data, data, size_t(bytes));
  g.flight.push_back(m);
  ++g.progress;
}

namespace {

// A cp.async of this thread, its operands checked: its bytes (from c.src,
// or c.data read at issue) land at once or at the covering wait_group, as
// the seeded scheduler picks.
void issue_copy(const Copy& c) {
  check_offset(shared_offset(c.dst), c.bytes, "cp.async");
  if (c.bytes != 4 && c.bytes != 8 && c.bytes != 16) {
    fail("cp.async of " + std::to_string(c.bytes) + " bytes");
  }
  if (g_grid->rng() % 2 == 0) {
    std::memcpy(c.dst, c.src != nullptr ? c.src : c.data, size_t(c.bytes));  // landed at once
  } else {
    grid().cur->copies.push_back(c);
  }
}

void check_copy_source(const void* src, int bytes) {
  if (reinterpret_cast<uintptr_t>(src) % uintptr_t(bytes) != 0) {
    fail("cp.async of a misaligned source");
  }
}

}  // namespace

void cp_async(void* dst, const void* src, int bytes) {
  check_copy_source(src, bytes);
  issue_copy(Copy{dst, src, bytes, grid().cur->committed, {}});
}

void cp_async_exchanged(void* dst, const void* src, int bytes) {
  check_copy_source(src, bytes);
  Copy c{dst, nullptr, bytes, grid().cur->committed, {}};
  load_exchanged(c.data, src, bytes);
  issue_copy(c);
}

void cp_async_commit() { ++grid().cur->committed; }

void cp_async_wait(int newest_pending) {
  Fiber& f = *grid().cur;
  std::vector<Copy> keep;
  for (const Copy& c : f.copies) {
    if (c.group + uint64_t(newest_pending) < f.committed) {
      std::memcpy(c.dst, c.src != nullptr ? c.src : c.data, size_t(c.bytes));
    } else {
      keep.push_back(c);
    }
  }
  f.copies.swap(keep);
}

// ---- global memory between CTAs (simt.h, "Global memory")
namespace {

// The exchanged buffer and first granule of [p, p + bytes), or nullptr when
// p is in none of them.
Exchanged* find_exchanged(const void* p, int bytes, size_t* first, const char* use) {
  const auto* q = static_cast<const unsigned char*>(p);
  for (Exchanged& e : g_grid->exchanged) {
    if (q < e.base || q >= e.base + e.bytes) continue;
    const size_t off = size_t(q - e.base);
    if (off % 2 != 0 || bytes % 2 != 0 || off + size_t(bytes) > e.bytes) {
      fail(std::string(use) + " of " + std::to_string(bytes) + " bytes at byte " +
           std::to_string(off) + " of an exchanged buffer (odd, or past its end)");
    }
    *first = off / 2;
    return &e;
  }
  return nullptr;
}

// Whether access d happens before what the running thread does now.
bool seen(const Access& d) {
  const Fiber& f = *g_grid->cur;
  if (d.cta < 0) return true;
  const Cta& c = g_grid->ctas[size_t(f.cta)];
  if (d.cta == f.cta) return d.tid == f.tid || d.generation < c.generation;  // a __syncthreads between
  return d.epoch != 0 && std::max(entry(c.clock, d.cta), entry(f.clock, d.cta)) >= d.epoch;
}

[[noreturn]] void unordered(const Access& d, size_t granule, const char* now, const char* then) {
  const Fiber& f = *g_grid->cur;
  fail(std::string(now) + " bytes " + std::to_string(2 * granule) + "-" +
       std::to_string(2 * granule + 1) + " of an exchanged buffer that " +
       (d.tid < 0 ? std::string("threads") : "thread " + std::to_string(d.tid)) + " of " +
       cta_name(d.cta) + " " + then + " " +
       (d.epoch == 0 ? "and no release has published yet"
                     : "and published in its release " + std::to_string(d.epoch)) +
       ", which " + (d.cta == f.cta ? "no __syncthreads orders before this"
                                    : "no acquire of this thread or __syncthreads after one saw") +
       " (a gpu-scope data race)");
}

// Records an access of the running thread; queues it for its CTA's next
// release. Still queued from another thread of the CTA, the two become one
// access of several threads (kSeveral), which only a __syncthreads after
// both orders before anything.
constexpr int32_t kSeveral = -2;
void record(Access& d, int region, size_t granule, int reader) {
  const Fiber& f = *g_grid->cur;
  Cta& c = g_grid->ctas[size_t(f.cta)];
  if (d.cta == f.cta && d.epoch == 0) {  // queued already
    if (d.tid != f.tid) d.tid = kSeveral;
    d.generation = c.generation;
    return;
  }
  d = Access{f.cta, f.tid, c.generation, 0u};
  c.pending.push_back(PendingAccess{region, granule, reader});
}

// The access a pending entry names (nullptr: a read whose value a store
// has since replaced).
Access* access_of(Granule& gr, const PendingAccess& p) {
  if (p.reader < 0) return &gr.store;
  for (Access& r : gr.reads) {
    if (r.cta == p.reader) return &r;
  }
  return nullptr;
}

}  // namespace

void store_exchanged(void* dst, const void* src, int bytes) {
  Grid& g = grid();
  size_t first = 0;
  Exchanged* e = find_exchanged(dst, bytes, &first, "a store");
  if (e != nullptr) {
    const int region = int(e - g.exchanged.data());
    for (size_t i = first; i < first + size_t(bytes) / 2; ++i) {
      Granule& gr = e->granules[i];
      if (!seen(gr.store)) unordered(gr.store, i, "a store over", "stored");
      for (const Access& r : gr.reads) {
        if (!seen(r)) unordered(r, i, "a store over", "read");
      }
      gr.reads.clear();  // a new value: its reads are still to come
      record(gr.store, region, i, -1);
    }
  }
  std::memcpy(dst, src, size_t(bytes));
}

void load_exchanged(void* dst, const void* src, int bytes) {
  Grid& g = grid();
  size_t first = 0;
  Exchanged* e = find_exchanged(src, bytes, &first, "a read");
  if (e != nullptr) {
    const int region = int(e - g.exchanged.data()), me = g.cur->cta;
    for (size_t i = first; i < first + size_t(bytes) / 2; ++i) {
      Granule& gr = e->granules[i];
      if (!seen(gr.store)) unordered(gr.store, i, "a read of", "stored");
      Access* mine = nullptr;
      for (Access& r : gr.reads) {
        if (r.cta == me) mine = &r;
      }
      if (mine == nullptr) {
        gr.reads.emplace_back();
        mine = &gr.reads.back();
      }
      record(*mine, region, i, me);
    }
  }
  std::memcpy(dst, src, size_t(bytes));
}

uint32_t acquire_gpu(const unsigned* flag) {
  yield();  // a value may arrive late: the other fibers run first
  Grid& g = grid();
  const uint32_t v = *flag;
  const auto it = g.flags.find(flag);
  // Reading the value a release wrote synchronises with that release (a
  // plain store over the flag since then does not).
  if (it != g.flags.end() && it->second.value == v) merge(g.cur->clock, it->second.clock);
  return v;
}

void release_gpu(unsigned* flag, uint32_t value) {
  Grid& g = grid();
  Fiber& f = *g.cur;
  Cta& c = g.ctas[size_t(f.cta)];
  if (c.releaser < 0) c.releaser = f.tid;
  if (c.releaser != f.tid) {
    fail("releases from two threads of one CTA (" + std::to_string(c.releaser) + " and " +
         std::to_string(f.tid) + "): the global-memory model takes one releasing thread");
  }
  const uint32_t epoch = ++c.releases;
  // Publish the pending accesses this release orders after: the thread's
  // own, and those before the last __syncthreads it passed.
  std::vector<PendingAccess> keep;
  for (const PendingAccess& p : c.pending) {
    Access* d = access_of(g.exchanged[size_t(p.region)].granules[p.granule], p);
    // Gone: overwritten by another CTA, a replaced value's read, or published already.
    if (d == nullptr || d->cta != f.cta || d->epoch != 0) continue;
    if (d->tid == f.tid || d->generation < c.generation) {
      d->epoch = epoch;
    } else {
      keep.push_back(p);
    }
  }
  c.pending.swap(keep);
  FlagRelease& r = g.flags[flag];
  r.value = value;
  r.clock = c.clock;
  merge(r.clock, f.clock);
  if (r.clock.empty()) r.clock.assign(g.ctas.size(), 0u);
  r.clock[size_t(f.cta)] = epoch;
  *flag = value;
  ++g.progress;
}

namespace {
void check_ll(const void* p, size_t align, const char* use) {
  if (reinterpret_cast<uintptr_t>(p) % align != 0) {
    fail(std::string("an LL ") + use + " at an address not " + std::to_string(align) +
         "-byte aligned (not single-copy atomic)");
  }
  size_t first = 0;
  if (find_exchanged(p, 8, &first, use) != nullptr) {
    fail(std::string("an LL ") + use + " inside an exchanged buffer (release/acquire's)");
  }
}
}  // namespace

void ll_store(uint64_t* word, uint64_t value) {
  Grid& g = grid();
  check_ll(word, 8, "store");
  std::memcpy(word, &value, 8);
  ++g.progress;
}

void ll_load(const uint64_t* words, uint64_t (&out)[2]) {
  yield();  // a word may arrive late: the other fibers run first
  (void)grid();
  check_ll(words, 16, "load");
  std::memcpy(out, words, 16);
}

uint64_t ll_load_word(const uint64_t* word) {
  yield();
  (void)grid();
  check_ll(word, 8, "load");
  uint64_t w;
  std::memcpy(&w, word, 8);
  return w;
}

void run_grid(int ctas, int threads, size_t smem_bytes, uint64_t seed, uint64_t idle_ns,
              const std::function<void()>& body, int cluster,
              const std::vector<Region>& exchanged) {
  TORCH_CHECK(ctas > 0 && threads > 0 && threads % 32 == 0, "simt: a grid of ", ctas, " x ",
              threads, " threads");
  TORCH_CHECK(cluster >= 1 && cluster <= 255 && ctas % cluster == 0, "simt: clusters of ",
              cluster, " CTAs in a grid of ", ctas);
  TORCH_CHECK(smem_bytes < (size_t(1) << 24), "simt: shared memory past 16 MB");
  TORCH_CHECK(g_grid == nullptr, "simt: grids do not nest");
  Grid g;
  g.threads = threads;
  g.cluster = cluster;
  g.smem_bytes = smem_bytes;
  g.body = &body;
  g.rng.seed(seed);
  std::mt19937_64& rng = g.rng;
  g.ctas.resize(static_cast<size_t>(ctas));
  g.clusters.resize(static_cast<size_t>(ctas / cluster));
  for (Cta& c : g.ctas) {
    // Seeded garbage: a kernel must write shared memory before it reads it.
    c.smem.resize((smem_bytes + kSmemGuardBytes + 15) / 16);
    auto* bytes = reinterpret_cast<unsigned char*>(c.smem.data());
    for (size_t i = 0; i < c.smem.size() * 16; ++i) bytes[i] = static_cast<unsigned char>(rng());
    c.guard.assign(bytes + smem_bytes, bytes + smem_bytes + kSmemGuardBytes);
    c.warps.resize(static_cast<size_t>(threads / 32));
  }
  for (const Region& r : exchanged) {
    auto* base = static_cast<unsigned char*>(r.base);
    for (const Exchanged& e : g.exchanged) {
      TORCH_CHECK(base + r.bytes <= e.base || e.base + e.bytes <= base,
                  "simt: exchanged buffers overlap");
    }
    g.exchanged.push_back(Exchanged{base, r.bytes, std::vector<Granule>((r.bytes + 1) / 2),
                                    std::vector<unsigned char>(base, base + r.bytes)});
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
  // A whole CTA may stall too (preempted, or starved by its SM's other
  // work): now and then one CTA sits out until no other thread can move,
  // so its peers run as far ahead as the protocol lets them.
  int stalled = -1;
  while (live > 0 && g.error.empty()) {
    std::shuffle(order.begin(), order.end(), rng);
    if (stalled < 0 && ctas > 1 && rng() % 32 == 0) stalled = int(rng() % uint64_t(ctas));
    const uint64_t before = g.progress;
    for (size_t i : order) {
      Fiber& f = g.fibers[i];
      if (f.done || f.cta == stalled) continue;
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
    if (g.error.empty()) {
      try {
        deliver_some(g, false);
      } catch (const std::exception& e) {
        g.error = e.what();
      }
    }
    if (g.progress == before && stalled >= 0) {
      stalled = -1;  // the others wait for it: it runs again (not an idle round)
    } else if (g.progress == before) {
      g.now_ns += idle_ns;
      if (++idle_rounds > kMaxIdleRounds) {
        g.error = "deadlock: no thread progressed for " + std::to_string(kMaxIdleRounds) +
                  " rounds (" + std::to_string(live) + " threads left)";
      }
    } else {
      idle_rounds = 0;
    }
  }
  if (g.error.empty()) {
    try {
      deliver_some(g, true);  // anything left was sent to a CTA that exited
      for (size_t i = 0; i < g.ctas.size(); ++i) {
        for (const auto& kv : g.ctas[i].bars) {
          if (kv.second.pending != kv.second.expected || kv.second.tx != 0) {
            fail("the mbarrier at offset " + std::to_string(kv.first) + " of " +
                 cta_name(int(i)) + " ended mid-phase (an arrival or bytes nobody waited for)");
          }
        }
      }
      for (size_t i = 0; i < g.ctas.size(); ++i) {
        const auto* end = reinterpret_cast<const unsigned char*>(g.ctas[i].smem.data()) + smem_bytes;
        const auto bad = std::mismatch(g.ctas[i].guard.begin(), g.ctas[i].guard.end(), end);
        if (bad.first != g.ctas[i].guard.end()) {
          fail(cta_name(int(i)) + " wrote past its " + std::to_string(smem_bytes) +
               " bytes of dynamic shared memory (at byte " +
               std::to_string(smem_bytes + size_t(bad.first - g.ctas[i].guard.begin())) + ")");
        }
      }
      for (const Exchanged& e : g.exchanged) {
        for (size_t i = 0; i < e.bytes; ++i) {
          if (e.granules[i / 2].store.cta < 0 && e.base[i] != e.initial[i]) {
            fail("byte " + std::to_string(i) + " of an exchanged buffer changed without " +
                 "store_exchanged (a plain store the global-memory checks cannot see)");
          }
        }
      }
    } catch (const std::exception& e) {
      g.error = e.what();
    }
  }
  g_grid = nullptr;
  // Unfinished fibers are dropped with their stacks (the kernels hold no
  // resources but memory).
  TORCH_CHECK(g.error.empty(), "simt: ", g.error);
}

}  // namespace simt
}  // namespace rnnfuse
