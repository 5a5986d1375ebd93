#include "buffer_cache.h"

#include <ATen/EmptyTensor.h>
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

#include <algorithm>
#include <cstdlib>
#include <list>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

namespace rnnfuse {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

int64_t default_limit() {
  if (const char* env = std::getenv("RNNFUSE_CPU_CACHE_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    TORCH_CHECK(end != env && *end == '\0' && mb >= 0 && mb < (1LL << 40),
                "rnnfuse: RNNFUSE_CPU_CACHE_MB must be >= 0 (megabytes; 0 turns the cache off), "
                "got '", env, "'");
    return static_cast<int64_t>(mb) << 20;
  }
  int64_t limit = int64_t(1) << 30;
#if defined(__linux__)
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) limit = std::min<int64_t>(limit, int64_t(pages) * page / 8);
#endif
  return limit;
}

// Blocks of kMinCachedBytes and more: 2 MB-aligned from 4 MB (so that the
// huge-page advice covers all of them), page-aligned below.
class BufferCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    // Small buffers, and every buffer with the cache turned off, as at::empty.
    if (n < static_cast<size_t>(kMinCachedBytes) || limit_ == 0) {
      return c10::GetDefaultCPUAllocator()->allocate(n);
    }
    const size_t align = n >= 2 * kHugePage ? kHugePage : 4096;
    const size_t size = round_up(n, align);
    void* p = take(size);
    if (!p) p = fresh(size, align);
    return {p, p, &BufferCache::deleter, c10::Device(c10::DeviceType::CPU)};
  }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }

  BufferCacheInfo info() {
    std::lock_guard<std::mutex> lock(mu_);
    return {static_cast<int64_t>(cached_), limit_, hits_, misses_};
  }

  void release() {
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const Block& b : free_) to_free.push_back(b.ptr);
      free_.clear();
      cached_ = 0;
    }
    for (void* p : to_free) std::free(p);
  }

  static BufferCache& get() {
    // Never destroyed: tensors holding its blocks may outlive static
    // destruction (e.g. in Python's teardown).
    static BufferCache* cache = new BufferCache();
    return *cache;
  }

 private:
  struct Block {
    void* ptr;
    size_t size;
  };

  BufferCache() : limit_(default_limit()) {}

  // The smallest free block that holds size bytes and wastes at most as much
  // as it holds (a large block is not spent on a small buffer).
  void* take(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->size >= size && it->size <= 2 * size && (best == free_.end() || it->size < best->size)) {
        best = it;
      }
    }
    if (best == free_.end()) {
      ++misses_;
      return nullptr;
    }
    ++hits_;
    void* p = best->ptr;
    live_[p] = best->size;
    cached_ -= best->size;
    free_.erase(best);
    return p;
  }

  void* fresh(size_t size, size_t align) {
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0 || !p) {
      // As ATen's CPU allocator reports a failed allocation.
      release();
      TORCH_CHECK(posix_memalign(&p, align, size) == 0 && p, "rnnfuse: DefaultCPUAllocator: ",
                  "can't allocate memory: you tried to allocate ", size, " bytes.");
    }
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Advice only: a kernel without transparent huge pages ignores it.
    if (align == kHugePage) (void)madvise(p, size, MADV_HUGEPAGE);
#endif
    std::lock_guard<std::mutex> lock(mu_);
    live_[p] = size;
    return p;
  }

  // Most recently freed first; the least recently freed leave first.
  void give_back(void* p) {
    std::vector<void*> to_free;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = live_.find(p);
      TORCH_INTERNAL_ASSERT(it != live_.end(), "rnnfuse: freeing a block the buffer cache never gave");
      const size_t size = it->second;
      live_.erase(it);
      if (static_cast<int64_t>(size) > limit_) {
        to_free.push_back(p);
      } else {
        while (static_cast<int64_t>(cached_ + size) > limit_) {
          to_free.push_back(free_.back().ptr);
          cached_ -= free_.back().size;
          free_.pop_back();
        }
        free_.push_front({p, size});
        cached_ += size;
      }
    }
    for (void* q : to_free) std::free(q);
  }

  static void deleter(void* p) { get().give_back(p); }

  std::mutex mu_;
  std::list<Block> free_;
  std::unordered_map<void*, size_t> live_;
  size_t cached_ = 0;
  const int64_t limit_;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace

at::Tensor cached_empty_cpu(at::IntArrayRef sizes, const at::TensorOptions& options) {
  TORCH_INTERNAL_ASSERT(options.device().is_cpu() && !options.pinned_memory());
  return at::detail::empty_generic(sizes, &BufferCache::get(),
                                   c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   c10::typeMetaToScalarType(options.dtype()),
                                   options.memory_format_opt());
}

BufferCacheInfo buffer_cache_info() { return BufferCache::get().info(); }

void release_buffer_cache() { BufferCache::get().release(); }

}  // namespace rnnfuse
