// Page-sized, page-aligned bounce buffers for grant copies, carved from one
// anonymous mapping so that they are O_DIRECT-aligned and can later be
// registered with io_uring as one fixed buffer. Owned by one worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace xbb::backend {

class BufferPool {
 public:
  static constexpr size_t kPageSize = 4096;

  explicit BufferPool(size_t pages);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // Takes out.size() pages, all or nothing.
  bool take(std::span<uint32_t> out);
  void give(std::span<const uint32_t> pages);
  std::byte* page(uint32_t index) const { return base_ + static_cast<size_t>(index) * kPageSize; }

  size_t free_pages() const { return free_.size(); }
  size_t total_pages() const { return pages_; }
  void* base() const { return base_; }
  size_t bytes() const { return pages_ * kPageSize; }

 private:
  std::byte* base_ = nullptr;
  size_t pages_ = 0;
  std::vector<uint32_t> free_;  // a stack: recently freed pages are reused first (cache-warm)
};

}  // namespace xbb::backend
