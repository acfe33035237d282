// The backend's view of one shared blkif ring: consumes requests, produces
// responses.
//
// Shared memory is hostile: the guest can rewrite any byte at any time. Each
// request slot is copied out exactly once and decoded from the copy
// (XSA-155); indices are read once per decision; a producer index that runs
// more than a ring ahead halts the ring instead of reading stale or foreign
// slots. Responses are built in a zeroed private struct and copied in with
// one memcpy (XSA-216). Used by one thread (the ring's worker); no locks.
#pragma once

#include <cstdint>
#include <vector>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/Availability.hpp"
#include "ring/protocol/Request.hpp"
#include "ring/protocol/Response.hpp"
#include "ring/protocol/SharedRingIndices.hpp"

namespace xbb::ring {

class BackRing {
 public:
  // `ring` is the mapped shared ring (`pages` consecutive pages, 1..32) and
  // must outlive this object. `start_index` is both req_cons and
  // rsp_prod_pvt (BACK_RING_ATTACH; 0 for a fresh ring; the shared rsp_prod
  // when adopting a ring whose responses were all pushed). Throws
  // std::invalid_argument for a null ring or a page count out of range.
  BackRing(void* ring, unsigned pages, Abi abi, uint32_t start_index = 0);

  BackRing(const BackRing&) = delete;
  BackRing& operator=(const BackRing&) = delete;
  BackRing(BackRing&&) = default;
  BackRing& operator=(BackRing&&) = default;

  Abi abi() const { return abi_; }
  uint32_t size() const { return size_; }
  uint32_t req_cons() const { return req_cons_; }
  uint32_t rsp_prod_pvt() const { return rsp_prod_pvt_; }
  // Requests consumed but not yet answered with push_response().
  uint32_t responses_owed() const { return req_cons_ - rsp_prod_pvt_; }

  // Reads the producer index (acquire) and reports what can be consumed.
  // Detects a runaway producer, which halts the ring (logged once).
  Availability availability();
  bool runaway() { return availability().runaway; }
  bool halted() const { return halted_; }

  // Copies the next request out of the ring (one copy of the slot, then
  // decode from the copy) into `out`. False when there is none, the ring is
  // halted, or every slot holds an unanswered request. Every request
  // returned must eventually get exactly one push_response().
  bool next_request(Request& out);

  // Records the response for the oldest unanswered slot; it is written into
  // the ring by the next push_responses_and_check_notify(). For an indirect request pass Request::wire_operation, which
  // holds the indirect_op, as Linux expects. Returns false (and writes
  // nothing) when no consumed request is owed a response.
  bool push_response(uint64_t id, uint8_t wire_operation, int16_t status);

  // Responses recorded but not yet published.
  uint32_t unpublished() const { return rsp_prod_pvt_ - rsp_prod_pushed_; }
  // Requests the frontend still waits on: produced since the response its
  // rsp_event asks to hear of. Guest-written, so only a hint; at most the
  // ring's size.
  uint32_t frontend_outstanding() const;

  // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: publishes the responses written so
  // far and says whether the frontend asked to be notified of them.
  bool push_responses_and_check_notify();

  // RING_FINAL_CHECK_FOR_REQUESTS: true when requests are waiting; otherwise
  // asks the frontend for an event on the next request (req_event) and
  // checks once more, closing the race with a request produced meanwhile.
  bool final_check_for_requests();

 private:
  bool refresh_producer();

  SharedRingIndices shared_;
  Abi abi_;
  uint32_t size_;
  uint32_t entry_bytes_;
  uint32_t req_cons_;
  uint32_t rsp_prod_pvt_;
  uint32_t rsp_prod_pushed_;  // our last published rsp_prod, kept privately
  uint32_t req_prod_seen_;    // last validated producer index
  std::vector<Response> unpublished_;  // [rsp_prod_pushed_, rsp_prod_pvt_), written at push time
  bool halted_ = false;
};

}  // namespace xbb::ring
