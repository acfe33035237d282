// Owning mmap() region: unmapped exactly once, movable, never copied.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <utility>

namespace xbb::sim {

class MemoryMapping {
 public:
  MemoryMapping() = default;
  MemoryMapping(void* address, size_t length) : address_(address), length_(length) {}
  MemoryMapping(MemoryMapping&& other) noexcept
      : address_(std::exchange(other.address_, nullptr)), length_(std::exchange(other.length_, 0)) {}
  MemoryMapping& operator=(MemoryMapping&& other) noexcept {
    if (this != &other) {
      reset();
      address_ = std::exchange(other.address_, nullptr);
      length_ = std::exchange(other.length_, 0);
    }
    return *this;
  }
  MemoryMapping(const MemoryMapping&) = delete;
  MemoryMapping& operator=(const MemoryMapping&) = delete;
  ~MemoryMapping() { reset(); }

  // Maps all of `fd` shared and writable; an empty mapping (errno set) on failure.
  static MemoryMapping map_shared(int fd, size_t length) {
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return {};
    return {p, length};
  }

  void* get() const { return address_; }
  size_t size() const { return length_; }
  explicit operator bool() const { return address_ != nullptr; }
  void reset() {
    if (address_) ::munmap(address_, length_);
    address_ = nullptr;
    length_ = 0;
  }

 private:
  void* address_ = nullptr;
  size_t length_ = 0;
};

}  // namespace xbb::sim
