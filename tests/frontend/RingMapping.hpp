// A contiguous view of guest pages that need not be contiguous in the guest's
// memory (what a guest kernel gets from vmap): a multi-page shared ring is
// granted page by page, but the frontend reads it as one array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace xbb::frontend {

class RingMapping {
 public:
  RingMapping() = default;
  // Maps page `pages[i]` of the memfd `memory_fd` at offset i pages.
  // Throws std::system_error when mmap fails.
  RingMapping(int memory_fd, std::span<const uint32_t> pages);
  ~RingMapping();
  RingMapping(RingMapping&& other) noexcept;
  RingMapping& operator=(RingMapping&& other) noexcept;
  RingMapping(const RingMapping&) = delete;
  RingMapping& operator=(const RingMapping&) = delete;

  void* address() const { return base_; }
  size_t pages() const { return pages_; }

 private:
  void reset();
  void* base_ = nullptr;
  size_t pages_ = 0;
};

}  // namespace xbb::frontend
