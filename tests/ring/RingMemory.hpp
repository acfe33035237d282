// Test helper: page-aligned memory standing in for a mapped shared ring,
// with raw access to the header indices the way a guest would poke them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>

#include "ring/protocol/Layouts.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring::test {

class RingMemory {
 public:
  explicit RingMemory(unsigned pages, uint8_t fill = 0)
      : pages_(pages),
        bytes_(size_t(pages) * kRingPageBytes),
        data_(static_cast<std::byte*>(std::aligned_alloc(kRingPageBytes, bytes_)), &std::free) {
    std::memset(data_.get(), fill, bytes_);
  }

  void* data() { return data_.get(); }
  std::byte* bytes() { return data_.get(); }
  size_t size() const { return bytes_; }
  unsigned pages() const { return pages_; }

  uint32_t u32(size_t offset) const {
    uint32_t v;
    std::memcpy(&v, data_.get() + offset, sizeof(v));
    return v;
  }
  void set_u32(size_t offset, uint32_t v) { std::memcpy(data_.get() + offset, &v, sizeof(v)); }

  uint32_t req_prod() const { return u32(layout::kReqProdOffset); }
  uint32_t req_event() const { return u32(layout::kReqEventOffset); }
  uint32_t rsp_prod() const { return u32(layout::kRspProdOffset); }
  uint32_t rsp_event() const { return u32(layout::kRspEventOffset); }
  void set_req_prod(uint32_t v) { set_u32(layout::kReqProdOffset, v); }
  void set_req_event(uint32_t v) { set_u32(layout::kReqEventOffset, v); }
  void set_rsp_prod(uint32_t v) { set_u32(layout::kRspProdOffset, v); }
  void set_rsp_event(uint32_t v) { set_u32(layout::kRspEventOffset, v); }

  // The bytes of slot `index` (already masked) for entries of `entry_size`.
  std::span<std::byte> slot(uint32_t index, size_t entry_size) {
    return {data_.get() + layout::kSringHeaderBytes + index * entry_size, entry_size};
  }

 private:
  unsigned pages_;
  size_t bytes_;
  std::unique_ptr<std::byte, decltype(&std::free)> data_;
};

}  // namespace xbb::ring::test
