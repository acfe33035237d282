// The frontend's view of one shared blkif ring, for our software blkfront
// (simulation and tests): produces requests, consumes responses. It treats
// the backend with the same suspicion the backend treats the guest.
#pragma once

#include <cstdint>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/Availability.hpp"
#include "ring/protocol/Request.hpp"
#include "ring/protocol/Response.hpp"
#include "ring/protocol/SharedRingIndices.hpp"

namespace xbb::ring {

// SHARED_RING_INIT: zero the indices and padding of the header and ask for
// an event on the first request and the first response. Entries untouched.
void init_shared_ring(void* ring, unsigned pages);

class FrontRing {
 public:
  // `ring` (`pages` pages, 1..32) must outlive this object; call
  // init_shared_ring() on it first for a fresh ring. Throws
  // std::invalid_argument for a null ring or a bad page count.
  FrontRing(void* ring, unsigned pages, Abi abi, uint32_t start_index = 0);

  FrontRing(const FrontRing&) = delete;
  FrontRing& operator=(const FrontRing&) = delete;
  FrontRing(FrontRing&&) = default;
  FrontRing& operator=(FrontRing&&) = default;

  Abi abi() const { return abi_; }
  uint32_t size() const { return size_; }
  uint32_t req_prod_pvt() const { return req_prod_pvt_; }
  uint32_t rsp_cons() const { return rsp_cons_; }
  // RING_FREE_REQUESTS / RING_FULL.
  uint32_t free_requests() const { return size_ - (req_prod_pvt_ - rsp_cons_); }
  bool full() const { return free_requests() == 0; }

  // Encodes `req` in this ring's ABI into the next slot (see encode_request
  // for which layout is used). Not visible to the backend until
  // push_requests_and_check_notify(). False when full or not encodable.
  bool push_request(const Request& req);

  // RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.
  bool push_requests_and_check_notify();

  // Responses ready to read; runaway when the backend claims more responses
  // than we have requests outstanding (the ring is then halted).
  Availability availability();
  bool halted() const { return halted_; }

  // Copies the next response out (one copy of the slot). False when none.
  bool next_response(Response& out);

  // RING_FINAL_CHECK_FOR_RESPONSES: sets rsp_event and re-checks.
  bool final_check_for_responses();

 private:
  bool refresh_producer();

  SharedRingIndices shared_;
  Abi abi_;
  uint32_t size_;
  uint32_t entry_bytes_;
  uint32_t req_prod_pvt_;
  uint32_t rsp_cons_;
  uint32_t req_prod_pushed_;
  uint32_t rsp_prod_seen_;
  bool halted_ = false;
};

}  // namespace xbb::ring
