#include "tests/frontend/RingMapping.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <system_error>
#include <utility>

namespace xbb::frontend {
namespace {
constexpr size_t kPage = 4096;
}

RingMapping::RingMapping(int memory_fd, std::span<const uint32_t> pages) {
  // Reserve the whole range first so the per-page MAP_FIXED mappings cannot
  // land on anything else.
  void* base = ::mmap(nullptr, pages.size() * kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "ring mapping: reserve");
  base_ = base;
  pages_ = pages.size();
  for (size_t i = 0; i < pages.size(); ++i) {
    void* at = static_cast<std::byte*>(base) + i * kPage;
    if (::mmap(at, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, memory_fd,
               static_cast<off_t>(pages[i]) * kPage) == MAP_FAILED) {
      const int err = errno;
      reset();
      throw std::system_error(err, std::generic_category(), "ring mapping: map page");
    }
  }
}

RingMapping::~RingMapping() { reset(); }

RingMapping::RingMapping(RingMapping&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), pages_(std::exchange(other.pages_, 0)) {}

RingMapping& RingMapping::operator=(RingMapping&& other) noexcept {
  if (this != &other) {
    reset();
    base_ = std::exchange(other.base_, nullptr);
    pages_ = std::exchange(other.pages_, 0);
  }
  return *this;
}

void RingMapping::reset() {
  if (base_ != nullptr) ::munmap(base_, pages_ * kPage);
  base_ = nullptr;
  pages_ = 0;
}

}  // namespace xbb::frontend
