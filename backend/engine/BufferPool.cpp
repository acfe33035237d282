#include "backend/engine/BufferPool.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

namespace xbb::backend {

BufferPool::BufferPool(size_t pages) : pages_(pages) {
  if (pages == 0 || pages > UINT32_MAX) throw std::invalid_argument("BufferPool: bad page count");
  void* p = ::mmap(nullptr, pages * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "BufferPool: mmap");
  base_ = static_cast<std::byte*>(p);
  free_.reserve(pages);
  for (size_t i = pages; i-- > 0;) free_.push_back(static_cast<uint32_t>(i));
}

BufferPool::~BufferPool() { ::munmap(base_, pages_ * kPageSize); }

bool BufferPool::take(std::span<uint32_t> out) {
  if (out.size() > free_.size()) return false;
  for (auto& page : out) {
    page = free_.back();
    free_.pop_back();
  }
  return true;
}

void BufferPool::give(std::span<const uint32_t> pages) {
  for (auto page : pages) free_.push_back(page);
}

}  // namespace xbb::backend
