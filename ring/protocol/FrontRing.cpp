#include "ring/protocol/FrontRing.hpp"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>

#include "ring/protocol/RequestCodec.hpp"
#include "ring/protocol/ResponseCodec.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {

void init_shared_ring(void* ring, unsigned pages) {
  if (ring == nullptr || pages == 0 || pages > kMaxRingPages)
    throw std::invalid_argument("init_shared_ring: bad ring or page count");
  auto* base = static_cast<std::byte*>(ring);
  std::memset(base, 0, layout::kSringHeaderBytes);
  SharedRingIndices shared(ring);
  shared.set_req_event(1);
  shared.set_rsp_event(1);
  shared.publish_req_prod(0);
  shared.publish_rsp_prod(0);
}

FrontRing::FrontRing(void* ring, unsigned pages, Abi abi, uint32_t start_index)
    : shared_(ring),
      abi_(abi),
      size_(ring_entries(abi, pages)),
      entry_bytes_(static_cast<uint32_t>(entry_bytes(abi))),
      req_prod_pvt_(start_index),
      rsp_cons_(start_index),
      req_prod_pushed_(start_index),
      rsp_prod_seen_(start_index) {
  if (ring == nullptr) throw std::invalid_argument("FrontRing: null ring mapping");
  if (size_ == 0)
    throw std::invalid_argument("FrontRing: ring page count must be 1.." +
                                std::to_string(kMaxRingPages) + ", got " + std::to_string(pages));
}

bool FrontRing::push_request(const Request& req) {
  if (full()) return false;
  // Encode privately, then one copy into the slot.
  alignas(8) std::array<std::byte, layout::kMaxEntryBytes> image{};
  if (!encode_request(abi_, req, std::span<std::byte>(image.data(), entry_bytes_))) return false;
  std::byte* slot = shared_.entries() + size_t(req_prod_pvt_ & (size_ - 1)) * entry_bytes_;
  std::memcpy(slot, image.data(), entry_bytes_);
  ++req_prod_pvt_;
  return true;
}

bool FrontRing::push_requests_and_check_notify() {
  const uint32_t old_prod = req_prod_pushed_;
  const uint32_t new_prod = req_prod_pvt_;
  shared_.publish_req_prod(new_prod);
  SharedRingIndices::full_barrier();
  req_prod_pushed_ = new_prod;
  return uint32_t(new_prod - shared_.req_event()) < uint32_t(new_prod - old_prod);
}

bool FrontRing::refresh_producer() {
  if (halted_) return false;
  const uint32_t prod = shared_.rsp_prod_acquire();
  // Stricter than RING_RESPONSE_PROD_OVERFLOW: a response for a request we
  // never published is as bogus as one past the ring.
  if (prod - rsp_cons_ > req_prod_pushed_ - rsp_cons_) {
    halted_ = true;
    spdlog::warn("blkif front ring: backend response producer {} is past our {} published "
                 "requests (consumed {}); halting this ring",
                 prod, req_prod_pushed_, rsp_cons_);
    return false;
  }
  rsp_prod_seen_ = prod;
  return true;
}

Availability FrontRing::availability() {
  if (!refresh_producer()) return Availability{0, true};
  return Availability{rsp_prod_seen_ - rsp_cons_, false};
}

bool FrontRing::next_response(Response& out) {
  if (halted_) return false;
  if (rsp_cons_ == rsp_prod_seen_) {
    if (!refresh_producer() || rsp_cons_ == rsp_prod_seen_) return false;
  }
  alignas(8) std::array<std::byte, layout::kMaxEntryBytes> copy;
  const std::byte* slot = shared_.entries() + size_t(rsp_cons_ & (size_ - 1)) * entry_bytes_;
  const size_t n = response_bytes(abi_);
  std::memcpy(copy.data(), slot, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  ++rsp_cons_;
  decode_response(abi_, std::span<const std::byte>(copy.data(), n), out);
  return true;
}

bool FrontRing::final_check_for_responses() {
  if (availability().unconsumed > 0) return true;
  if (halted_) return false;
  shared_.set_rsp_event(rsp_cons_ + 1);
  SharedRingIndices::full_barrier();
  return availability().unconsumed > 0;
}

}  // namespace xbb::ring
