// Access to the four indices at the head of a shared ring page.
//
// The other end writes these concurrently, so every access is atomic and the
// orderings carry the ring.h barriers: acquire after reading a producer
// index (xen_rmb), release before publishing one (xen_wmb), and a full fence
// between publishing and reading the other end's event index (xen_mb).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "ring/protocol/Layouts.hpp"

namespace xbb::ring {

class SharedRingIndices {
 public:
  explicit SharedRingIndices(void* ring) : base_(static_cast<std::byte*>(ring)) {}

  uint32_t req_prod_acquire() const { return load(layout::kReqProdOffset, std::memory_order_acquire); }
  uint32_t rsp_prod_acquire() const { return load(layout::kRspProdOffset, std::memory_order_acquire); }
  uint32_t req_event() const { return load(layout::kReqEventOffset, std::memory_order_relaxed); }
  uint32_t rsp_event() const { return load(layout::kRspEventOffset, std::memory_order_relaxed); }

  void publish_req_prod(uint32_t v) { store(layout::kReqProdOffset, v, std::memory_order_release); }
  void publish_rsp_prod(uint32_t v) { store(layout::kRspProdOffset, v, std::memory_order_release); }
  void set_req_event(uint32_t v) { store(layout::kReqEventOffset, v, std::memory_order_relaxed); }
  void set_rsp_event(uint32_t v) { store(layout::kRspEventOffset, v, std::memory_order_relaxed); }

  // xen_mb(): our index store must be visible before we read theirs.
  static void full_barrier() { std::atomic_thread_fence(std::memory_order_seq_cst); }

  std::byte* entries() const { return base_ + layout::kSringHeaderBytes; }

 private:
  uint32_t* at(size_t offset) const { return reinterpret_cast<uint32_t*>(base_ + offset); }
  uint32_t load(size_t offset, std::memory_order order) const {
    return std::atomic_ref<uint32_t>(*at(offset)).load(order);
  }
  void store(size_t offset, uint32_t v, std::memory_order order) const {
    std::atomic_ref<uint32_t>(*at(offset)).store(v, order);
  }

  std::byte* base_;
};

}  // namespace xbb::ring
