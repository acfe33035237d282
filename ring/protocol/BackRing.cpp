#include "ring/protocol/BackRing.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
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

BackRing::BackRing(void* ring, unsigned pages, Abi abi, uint32_t start_index)
    : shared_(ring),
      abi_(abi),
      size_(ring_entries(abi, pages)),
      entry_bytes_(static_cast<uint32_t>(entry_bytes(abi))),
      req_cons_(start_index),
      rsp_prod_pvt_(start_index),
      rsp_prod_pushed_(start_index),
      req_prod_seen_(start_index) {
  if (ring == nullptr) throw std::invalid_argument("BackRing: null ring mapping");
  if (size_ == 0)
    throw std::invalid_argument("BackRing: ring page count must be 1.." +
                                std::to_string(kMaxRingPages) + ", got " + std::to_string(pages));
  answers_.resize(size_);
}

bool BackRing::refresh_producer() {
  if (halted_) return false;
  const uint32_t prod = shared_.req_prod_acquire();
  // RING_REQUEST_PROD_OVERFLOW: more requests than slots can exist only if
  // the frontend is broken or hostile. Unsigned arithmetic also catches an
  // index moved backwards.
  if (prod - rsp_prod_pvt_ > size_) {
    halted_ = true;
    spdlog::warn(
        "blkif ring: frontend request producer {} is {} entries past our responses ({}), "
        "more than the ring holds ({}); halting this ring",
        prod, prod - rsp_prod_pvt_, rsp_prod_pvt_, size_);
    return false;
  }
  req_prod_seen_ = prod;
  return true;
}

Availability BackRing::availability() {
  if (!refresh_producer()) return Availability{0, true};
  const uint32_t pending = req_prod_seen_ - req_cons_;
  // An honest frontend never produces past the responses we published; a
  // frontend that does waits for our next push.
  const uint32_t free_slots = size_ - (req_cons_ - rsp_prod_pushed_);
  return Availability{pending < free_slots ? pending : free_slots, false};
}

bool BackRing::next_request(Request& out) {
  if (halted_) return false;
  if (req_cons_ == req_prod_seen_) {
    if (!refresh_producer() || req_cons_ == req_prod_seen_) return false;
  }
  // RING_REQUEST_CONS_OVERFLOW: every slot holds a request we have not
  // answered yet, or a response not yet published; consuming the next one
  // would reuse its slot (and its entry in answers_).
  if (req_cons_ - rsp_prod_pushed_ >= size_) return false;

  // The one and only read of this slot. The signal fence stops the compiler
  // from re-reading shared memory in place of `copy` below.
  alignas(8) std::array<std::byte, layout::kMaxEntryBytes> copy;
  const std::byte* slot = shared_.entries() + size_t(req_cons_ & (size_ - 1)) * entry_bytes_;
  std::memcpy(copy.data(), slot, entry_bytes_);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  ++req_cons_;

  decode_request(abi_, std::span<const std::byte>(copy.data(), entry_bytes_), out);
  return true;
}

bool BackRing::push_response(uint64_t id, uint8_t wire_operation, int16_t status) {
  Answer& entry = answers_[rsp_prod_pvt_ & (size_ - 1)];
  if (rsp_prod_pvt_ == req_cons_ || entry.recorded) {
    spdlog::error("blkif ring: response for id {} pushed with no request outstanding; dropped", id);
    return false;
  }
  entry = Answer{id, wire_operation, true, status};
  ++rsp_prod_pvt_;
  return true;
}

bool BackRing::answer(uint32_t index, uint64_t id, uint8_t wire_operation, int16_t status) {
  const uint32_t ahead = index - rsp_prod_pvt_;
  Answer& entry = answers_[index & (size_ - 1)];
  if (ahead >= req_cons_ - rsp_prod_pvt_ || entry.recorded) {
    spdlog::error("blkif ring: response for id {} at ring index {}, which is not owed one; dropped", id, index);
    return false;
  }
  entry = Answer{id, wire_operation, true, status};
  if (ahead != 0) return true;  // waits for an earlier request's answer
  // The oldest owed request is answered: it and every answer right behind it
  // become publishable.
  do {
    ++rsp_prod_pvt_;
  } while (rsp_prod_pvt_ != req_cons_ && answers_[rsp_prod_pvt_ & (size_ - 1)].recorded);
  return true;
}

bool BackRing::push_responses_and_check_notify() {
  const uint32_t old_prod = rsp_prod_pushed_;
  const uint32_t new_prod = rsp_prod_pvt_;
  // Responses reach their slots only here, right before the index: a slot
  // still holds its request until the moment the response is published, so
  // a process killed in between leaves at most this loop's worth of slots
  // rewritten for a successor that adopts the ring at rsp_prod.
  for (uint32_t index = old_prod; index != new_prod; ++index) {
    Answer& entry = answers_[index & (size_ - 1)];
    std::byte* slot = shared_.entries() + size_t(index & (size_ - 1)) * entry_bytes_;
    encode_response(abi_, Response{entry.id, entry.operation, entry.status},
                    std::span<std::byte>(slot, response_bytes(abi_)));
    entry.recorded = false;
  }
  shared_.publish_rsp_prod(new_prod);  // release: responses before the index
  SharedRingIndices::full_barrier();   // index visible before reading rsp_event
  rsp_prod_pushed_ = new_prod;
  return uint32_t(new_prod - shared_.rsp_event()) < uint32_t(new_prod - old_prod);
}

uint32_t BackRing::frontend_outstanding() const {
  // rsp_event - 1 is where the frontend's consumer stood when it last asked.
  return std::min(uint32_t(req_prod_seen_ - shared_.rsp_event() + 1), size_);
}

bool BackRing::final_check_for_requests() {
  if (availability().unconsumed > 0) return true;
  if (halted_) return false;
  shared_.set_req_event(req_cons_ + 1);
  SharedRingIndices::full_barrier();
  return availability().unconsumed > 0;
}

}  // namespace xbb::ring
