// The backend's view of one shared blkif ring: consumes requests, produces
// responses.
//
// Shared memory is hostile: the guest can rewrite any byte at any time. Each
// request slot is copied out exactly once and decoded from the copy
// (XSA-155); indices are read once per decision; a producer index that runs
// more than a ring ahead halts the ring instead of reading stale or foreign
// slots. Responses are built in a zeroed private struct and copied in with
// one memcpy (XSA-216). Used by one thread (the ring's worker); no locks.
//
// Responses can be recorded in completion order (push_response(), as Linux
// blkback does: each goes into the slot at rsp_prod_pvt, which may still hold
// an earlier request that is not answered yet) or in ring order (answer():
// the response for the request consumed at index k goes into slot k, and is
// published only once every request before k has been answered). Ring order
// is what makes a ring adoptable after a crash: every request at or after the
// published rsp_prod is then still intact in its slot, and no slot below it
// holds a request that was never answered.
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
  // Requests consumed and not yet answered, counting those answered out of
  // ring order that wait for an earlier one.
  uint32_t responses_owed() const { return req_cons_ - rsp_prod_pvt_; }

  // Reads the producer index (acquire) and reports what can be consumed.
  // Detects a runaway producer, which halts the ring (logged once).
  Availability availability();
  bool runaway() { return availability().runaway; }
  bool halted() const { return halted_; }

  // Copies the next request out of the ring (one copy of the slot, then
  // decode from the copy) into `out`; its ring index was req_cons() before
  // the call. False when there is none, the ring is halted, or every slot
  // holds an unanswered or unpublished request. Every request returned must
  // eventually get exactly one push_response() or answer() (one of the two
  // for every request of the ring while any response is owed).
  bool next_request(Request& out);

  // Completion order: records the response in the oldest unanswered slot;
  // it is written into the ring by the next push_responses_and_check_notify().
  // For an indirect request pass Request::wire_operation, which holds the
  // indirect_op, as Linux expects. Returns false (and records nothing) when
  // no consumed request is owed a response.
  bool push_response(uint64_t id, uint8_t wire_operation, int16_t status);

  // Ring order: records the response for the request consumed at ring
  // index `index`. It is published (in its own request's slot) by the first
  // push_responses_and_check_notify() after every request consumed before it
  // has been answered. Returns false (and records nothing) when the request
  // at `index` is not owed a response (never consumed, or already answered).
  bool answer(uint32_t index, uint64_t id, uint8_t wire_operation, int16_t status);

  // Responses recorded and publishable, not yet published.
  uint32_t unpublished() const { return rsp_prod_pvt_ - rsp_prod_pushed_; }
  // Requests the frontend still waits on: produced since the response its
  // rsp_event asks to hear of. Guest-written, so only a hint; at most the
  // ring's size.
  uint32_t frontend_outstanding() const;

  // RING_PUSH_RESPONSES_AND_CHECK_NOTIFY: writes the publishable responses
  // into their slots, publishes them and says whether the frontend asked to
  // be notified of them.
  //
  // The one window a crash can still hurt: between the first response
  // written into a slot here and the store of rsp_prod right after (a few
  // stores per response, no system call), a slot above the published
  // rsp_prod holds a response where a successor would read a request.
  // Linux's BACK_RING_ATTACH has the same limit.
  bool push_responses_and_check_notify();

  // RING_FINAL_CHECK_FOR_REQUESTS: true when requests are waiting; otherwise
  // asks the frontend for an event on the next request (req_event) and
  // checks once more, closing the race with a request produced meanwhile.
  bool final_check_for_requests();

 private:
  // A recorded response, kept until it is written into the ring.
  struct Answer {
    uint64_t id = 0;
    uint8_t operation = 0;
    bool recorded = false;  // for [rsp_prod_pushed_, req_cons_): answered, not yet written into the ring
    int16_t status = 0;
  };

  bool refresh_producer();

  SharedRingIndices shared_;
  Abi abi_;
  uint32_t size_;
  uint32_t entry_bytes_;
  uint32_t req_cons_;
  uint32_t rsp_prod_pvt_;
  uint32_t rsp_prod_pushed_;  // our last published rsp_prod, kept privately
  uint32_t req_prod_seen_;    // last validated producer index
  // One entry per slot, indexed like the ring. Consumption stops a ring's
  // length past rsp_prod_pushed_ (not only past rsp_prod_pvt_), so an entry
  // waiting to be written is never reused before it is.
  std::vector<Answer> answers_;
  bool halted_ = false;
};

}  // namespace xbb::ring
