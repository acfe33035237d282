// The backend's ring view driven by our FrontRing and by a "guest" poking
// the shared memory directly.
#include "ring/protocol/BackRing.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "RequestBuilders.hpp"
#include "RingMemory.hpp"
#include "ring/protocol/FrontRing.hpp"
#include "ring/protocol/RequestCodec.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {
namespace {

using test::direct_request;
using test::discard_request;
using test::full_pages_request;
using test::indirect_request;
using test::RingMemory;

std::string abi_name(const ::testing::TestParamInfo<Abi>& info) {
  switch (info.param) {
    case Abi::Native:
      return "Native";
    case Abi::X86_32:
      return "X86_32";
    case Abi::X86_64:
      return "X86_64";
  }
  return "Invalid";
}

class BackRingTest : public ::testing::TestWithParam<Abi> {
 protected:
  Abi abi() const { return GetParam(); }
};

TEST_P(BackRingTest, CarriesEveryOperationBothWays) {
  RingMemory mem(2);
  init_shared_ring(mem.data(), 2);
  FrontRing front(mem.data(), 2, abi());
  BackRing back(mem.data(), 2, abi());
  ASSERT_EQ(back.size(), 64u);

  std::vector<Request> sent = {
      full_pages_request(kOpRead, 10, 0, 3),
      full_pages_request(kOpWrite, 11, 64, 11),
      direct_request(kOpWriteBarrier, 12, 0, {}),
      direct_request(kOpFlushDiskCache, 13, 0, {}),
      discard_request(14, 128, 256, true),
      indirect_request(kOpWrite, 15, 512, 100),
      direct_request(9, 16, 0, {{1, 0, 0}}),
  };
  for (const Request& r : sent) ASSERT_TRUE(front.push_request(r));
  EXPECT_EQ(mem.req_prod(), 0u) << "not visible before the push";
  EXPECT_TRUE(front.push_requests_and_check_notify());
  EXPECT_EQ(mem.req_prod(), sent.size());

  const Availability a = back.availability();
  EXPECT_FALSE(a.runaway);
  EXPECT_EQ(a.unconsumed, sent.size());

  for (const Request& expected : sent) {
    Request got;
    ASSERT_TRUE(back.next_request(got));
    EXPECT_EQ(got.id, expected.id);
    EXPECT_EQ(got.wire_operation, expected.wire_operation);
    EXPECT_EQ(got.operation, expected.operation);
    EXPECT_EQ(got.nr_segments, expected.nr_segments);
    EXPECT_EQ(got.indirect, expected.indirect);
    EXPECT_EQ(got.sector_number, expected.sector_number);
    EXPECT_EQ(got.discard_nr_sectors, expected.discard_nr_sectors);
    EXPECT_EQ(got.discard_secure, expected.discard_secure);
    if (!got.indirect) {
      for (unsigned i = 0; i < got.segment_count(); ++i)
        EXPECT_EQ(got.segments[i].gref, expected.segments[i].gref);
    }
    EXPECT_TRUE(back.push_response(got.id, got.wire_operation,
                                   got.operation == Operation::Unknown ? kStatusNotSupported
                                                                       : kStatusOkay));
  }
  Request none;
  EXPECT_FALSE(back.next_request(none));
  EXPECT_EQ(back.responses_owed(), 0u);
  EXPECT_TRUE(back.push_responses_and_check_notify());

  for (const Request& expected : sent) {
    Response rsp;
    ASSERT_TRUE(front.next_response(rsp));
    EXPECT_EQ(rsp.id, expected.id);
    EXPECT_EQ(rsp.operation, expected.wire_operation);
    EXPECT_EQ(rsp.status,
              expected.operation == Operation::Unknown ? kStatusNotSupported : kStatusOkay);
  }
  Response extra;
  EXPECT_FALSE(front.next_response(extra));
}

TEST_P(BackRingTest, IndirectResponseCarriesTheInnerOperation) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  ASSERT_TRUE(front.push_request(indirect_request(kOpRead, 77, 0, 20)));
  front.push_requests_and_check_notify();
  Request got;
  ASSERT_TRUE(back.next_request(got));
  ASSERT_TRUE(got.indirect);
  back.push_response(got.id, got.wire_operation, kStatusOkay);
  back.push_responses_and_check_notify();
  Response rsp;
  ASSERT_TRUE(front.next_response(rsp));
  // Linux blkfront accepts only the indirect_op here, never BLKIF_OP_INDIRECT.
  EXPECT_EQ(rsp.operation, kOpRead);
}

// A successor process adopts a ring at the published rsp_prod and reads every
// slot from there as a request, so no slot may hold a response before its
// index is published.
TEST_P(BackRingTest, ResponsesReachTheirSlotsOnlyWhenPublished) {
  RingMemory mem(1, 0);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  for (uint64_t id = 0; id < 3; ++id) ASSERT_TRUE(front.push_request(full_pages_request(kOpWrite, 0x700 + id, id * 8, 1)));
  front.push_requests_and_check_notify();
  Request got[3];
  for (auto& r : got) ASSERT_TRUE(back.next_request(r));
  ASSERT_TRUE(back.push_response(got[0].id, got[0].wire_operation, kStatusOkay));
  ASSERT_TRUE(back.push_response(got[1].id, got[1].wire_operation, kStatusOkay));

  BackRing successor(mem.data(), 1, abi(), /*start_index=*/0);
  for (uint64_t id = 0; id < 3; ++id) {
    Request again;
    ASSERT_TRUE(successor.next_request(again));
    EXPECT_EQ(again.id, 0x700 + id) << "slot " << id << " must still hold its request";
    EXPECT_EQ(again.sector_number, id * 8);
  }

  back.push_responses_and_check_notify();
  Response rsp;
  ASSERT_TRUE(front.next_response(rsp));
  EXPECT_EQ(rsp.id, 0x700u);
  ASSERT_TRUE(front.next_response(rsp));
  EXPECT_EQ(rsp.id, 0x701u);
  EXPECT_FALSE(front.next_response(rsp)) << "the third request was never answered";
}

// Answered in completion order (push_response, as Linux blkback does), the
// response of a request that finished early goes into the slot of an earlier
// one still in flight: a successor adopting the ring at rsp_prod would serve
// the early request again and never see the earlier one. This is the crash
// that ring order (answer()) prevents.
TEST_P(BackRingTest, CompletionOrderOverwritesAnEarlierRequestsSlot) {
  RingMemory mem(1, 0);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  for (uint64_t id = 0; id < 2; ++id) ASSERT_TRUE(front.push_request(full_pages_request(kOpWrite, 0x800 + id, id * 8, 1)));
  front.push_requests_and_check_notify();
  Request got[2];
  for (auto& r : got) ASSERT_TRUE(back.next_request(r));
  ASSERT_TRUE(back.push_response(got[1].id, got[1].wire_operation, kStatusOkay));  // the second finished first
  back.push_responses_and_check_notify();
  ASSERT_EQ(mem.rsp_prod(), 1u);

  BackRing successor(mem.data(), 1, abi(), mem.rsp_prod());
  Request again;
  ASSERT_TRUE(successor.next_request(again));
  EXPECT_EQ(again.id, 0x801u) << "the answered request is served a second time";
  EXPECT_FALSE(successor.next_request(again)) << "and the unanswered one (0x800) is never seen";
}

// Ring order: each response goes into its own request's slot, and is
// published once every earlier request is answered, so a successor adopting
// at rsp_prod finds exactly the unanswered requests, intact.
TEST_P(BackRingTest, RingOrderPublishesEachAnswerInItsOwnSlot) {
  RingMemory mem(1, 0);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  constexpr uint32_t kRequests = 5;
  for (uint64_t id = 0; id < kRequests; ++id)
    ASSERT_TRUE(front.push_request(full_pages_request(kOpRead, 0x900 + id, id * 8, 1)));
  front.push_requests_and_check_notify();
  Request got[kRequests];
  for (uint32_t i = 0; i < kRequests; ++i) {
    EXPECT_EQ(back.req_cons(), i);
    ASSERT_TRUE(back.next_request(got[i]));
  }
  // Requests 1, 3 and 4 finish before 0 and 2.
  for (uint32_t i : {1u, 3u, 4u}) ASSERT_TRUE(back.answer(i, got[i].id, got[i].wire_operation, kStatusOkay));
  EXPECT_EQ(back.unpublished(), 0u) << "nothing may pass the unanswered request 0";
  EXPECT_EQ(back.responses_owed(), kRequests);
  back.push_responses_and_check_notify();
  EXPECT_EQ(mem.rsp_prod(), 0u);
  {
    BackRing successor(mem.data(), 1, abi(), mem.rsp_prod());
    for (uint32_t i = 0; i < kRequests; ++i) {
      Request again;
      ASSERT_TRUE(successor.next_request(again));
      EXPECT_EQ(again.id, 0x900u + i) << "slot " << i << " still holds its request";
    }
  }

  ASSERT_TRUE(back.answer(0, got[0].id, got[0].wire_operation, kStatusError));
  EXPECT_EQ(back.unpublished(), 2u) << "0 and the 1 waiting behind it";
  back.push_responses_and_check_notify();
  EXPECT_EQ(mem.rsp_prod(), 2u);
  {
    BackRing successor(mem.data(), 1, abi(), mem.rsp_prod());
    Request again;
    for (uint32_t i = 2; i < kRequests; ++i) {
      ASSERT_TRUE(successor.next_request(again));
      EXPECT_EQ(again.id, 0x900u + i) << "slot " << i << " still holds its request";
    }
  }
  ASSERT_TRUE(back.answer(2, got[2].id, got[2].wire_operation, kStatusOkay));
  EXPECT_EQ(back.responses_owed(), 0u);
  back.push_responses_and_check_notify();
  EXPECT_EQ(mem.rsp_prod(), kRequests);

  for (uint32_t i = 0; i < kRequests; ++i) {
    Response rsp;
    ASSERT_TRUE(front.next_response(rsp));
    EXPECT_EQ(rsp.id, 0x900u + i) << "responses come back in ring order";
    EXPECT_EQ(rsp.status, i == 0 ? kStatusError : kStatusOkay);
  }
}

TEST_P(BackRingTest, RingOrderRefusesWhatIsNotOwed) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  mem.set_req_prod(3);
  Request r;
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(back.next_request(r));
  EXPECT_FALSE(back.answer(2, 7, 0, kStatusOkay)) << "index 2 was produced but not consumed";
  EXPECT_TRUE(back.answer(1, 7, 0, kStatusOkay));
  EXPECT_FALSE(back.answer(1, 7, 0, kStatusOkay)) << "answered twice";
  EXPECT_TRUE(back.answer(0, 6, 0, kStatusOkay));
  EXPECT_FALSE(back.answer(0, 6, 0, kStatusOkay)) << "already published";
  EXPECT_FALSE(back.answer(0xffffffffu, 5, 0, kStatusOkay)) << "before anything consumed";
  EXPECT_EQ(back.rsp_prod_pvt(), 2u);
}

TEST_P(BackRingTest, RingOrderSurvivesWraparound) {
  const uint32_t start = 0xfffffffeu;
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  mem.set_rsp_prod(start);
  mem.set_req_prod(start + 4);
  BackRing back(mem.data(), 1, abi(), start);
  Request r;
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(back.next_request(r));
  for (uint32_t i : {3u, 1u, 2u}) ASSERT_TRUE(back.answer(start + i, i, 0, kStatusOkay));
  EXPECT_EQ(back.unpublished(), 0u);
  ASSERT_TRUE(back.answer(start, 0, 0, kStatusOkay));
  back.push_responses_and_check_notify();
  EXPECT_EQ(mem.rsp_prod(), start + 4);
  EXPECT_EQ(back.responses_owed(), 0u);
}

TEST_P(BackRingTest, ResponsePaddingIsZeroed) {
  RingMemory mem(1, 0xAA);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  ASSERT_TRUE(front.push_request(full_pages_request(kOpRead, 0x1234, 0, 1)));
  front.push_requests_and_check_notify();
  Request got;
  ASSERT_TRUE(back.next_request(got));

  // The slot now holds whatever the guest likes; our response must not
  // inherit any of it, nor leave any of our own bytes in the padding.
  auto slot = mem.slot(0, entry_bytes(abi()));
  std::memset(slot.data(), 0xAA, slot.size());
  ASSERT_TRUE(back.push_response(got.id, got.wire_operation, kStatusError));
  back.push_responses_and_check_notify();

  const auto byte = [&](size_t i) { return std::to_integer<uint8_t>(slot[i]); };
  EXPECT_EQ(byte(8), kOpRead);
  EXPECT_EQ(byte(9), 0) << "padding after operation";
  EXPECT_EQ(int16_t(byte(10) | byte(11) << 8), kStatusError);
  if (wire_layout(abi()) == WireLayout::X86_64) {
    for (size_t i = 12; i < 16; ++i) EXPECT_EQ(byte(i), 0) << "tail padding byte " << i;
    EXPECT_EQ(byte(16), 0xAA) << "nothing written past the 16-byte response";
  } else {
    EXPECT_EQ(byte(12), 0xAA) << "nothing written past the 12-byte response";
  }
}

TEST_P(BackRingTest, RunawayProducerHaltsTheRing) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  const uint32_t size = back.size();

  mem.set_req_prod(size);  // a full ring is legal
  Availability a = back.availability();
  EXPECT_FALSE(a.runaway);
  EXPECT_EQ(a.unconsumed, size);

  mem.set_req_prod(size + 1);  // one more than the ring holds
  a = back.availability();
  EXPECT_TRUE(a.runaway);
  EXPECT_EQ(a.unconsumed, 0u);
  EXPECT_TRUE(back.halted());
  Request r;
  EXPECT_FALSE(back.next_request(r));
  EXPECT_EQ(back.req_cons(), 0u) << "nothing consumed from a runaway ring";

  // Halted for good, even if the guest puts the index back.
  mem.set_req_prod(1);
  EXPECT_TRUE(back.runaway());
  EXPECT_FALSE(back.next_request(r));
  EXPECT_FALSE(back.final_check_for_requests());
}

TEST_P(BackRingTest, ProducerMovingBackwardsIsRunaway) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  for (int i = 0; i < 3; ++i) front.push_request(full_pages_request(kOpRead, i, 0, 1));
  front.push_requests_and_check_notify();
  Request r;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(back.next_request(r));
  for (int i = 0; i < 3; ++i) back.push_response(i, kOpRead, kStatusOkay);
  mem.set_req_prod(1);  // behind our req_cons of 3
  EXPECT_TRUE(back.runaway());
  EXPECT_FALSE(back.next_request(r));
}

TEST_P(BackRingTest, HaltedRingStillAnswersWhatItConsumed) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  front.push_request(full_pages_request(kOpRead, 5, 0, 1));
  front.push_requests_and_check_notify();
  Request r;
  ASSERT_TRUE(back.next_request(r));
  mem.set_req_prod(0x80000000u);
  EXPECT_TRUE(back.runaway());
  EXPECT_TRUE(back.push_response(r.id, r.wire_operation, kStatusOkay));
  back.push_responses_and_check_notify();
  EXPECT_EQ(mem.rsp_prod(), 1u);
}

TEST_P(BackRingTest, NeverConsumesIntoUnansweredSlots) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  const uint32_t size = back.size();
  mem.set_req_prod(size);
  Request r;
  for (uint32_t i = 0; i < size; ++i) ASSERT_TRUE(back.next_request(r));
  EXPECT_FALSE(back.next_request(r));
  EXPECT_EQ(back.responses_owed(), size);
  EXPECT_EQ(back.availability().unconsumed, 0u);

  // One answer frees one slot once the guest can see it (published); the
  // guest may then produce exactly one more.
  ASSERT_TRUE(back.push_response(0, 0, kStatusOkay));
  mem.set_req_prod(size + 1);
  EXPECT_EQ(back.availability().unconsumed, 0u) << "the answer still waits in its slot's entry";
  EXPECT_FALSE(back.next_request(r));
  back.push_responses_and_check_notify();
  EXPECT_EQ(back.availability().unconsumed, 1u);
  EXPECT_TRUE(back.next_request(r));
  EXPECT_FALSE(back.next_request(r));
  mem.set_req_prod(size + 2);
  EXPECT_TRUE(back.runaway());
}

TEST_P(BackRingTest, PushResponseWithNothingOwedIsRefused) {
  RingMemory mem(1, 0x11);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  EXPECT_FALSE(back.push_response(1, 0, kStatusOkay));
  EXPECT_EQ(std::to_integer<uint8_t>(mem.slot(0, entry_bytes(abi()))[0]), 0x11);
  EXPECT_EQ(back.rsp_prod_pvt(), 0u);
}

TEST_P(BackRingTest, ResponseNotifyFollowsRspEvent) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  mem.set_req_prod(8);
  Request r;
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(back.next_request(r));

  // The frontend wants an event once response index 5 is produced.
  mem.set_rsp_event(5);
  for (int i = 0; i < 4; ++i) back.push_response(i, 0, kStatusOkay);
  EXPECT_FALSE(back.push_responses_and_check_notify()) << "4 responses do not reach event 5";
  EXPECT_EQ(mem.rsp_prod(), 4u);
  back.push_response(4, 0, kStatusOkay);
  EXPECT_TRUE(back.push_responses_and_check_notify()) << "response 5 crosses the event";
  back.push_response(5, 0, kStatusOkay);
  EXPECT_FALSE(back.push_responses_and_check_notify()) << "already past the event";
  EXPECT_FALSE(back.push_responses_and_check_notify()) << "nothing new";
  mem.set_rsp_event(7);
  back.push_response(6, 0, kStatusOkay);
  back.push_response(7, 0, kStatusOkay);
  EXPECT_TRUE(back.push_responses_and_check_notify()) << "event inside the pushed batch";
  EXPECT_EQ(mem.rsp_prod(), 8u);
}

TEST_P(BackRingTest, IndexArithmeticSurvivesWraparound) {
  const uint32_t start = 0xfffffffeu;
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  mem.set_req_prod(start);
  mem.set_rsp_prod(start);
  mem.set_req_event(start + 1);
  mem.set_rsp_event(start + 1);
  FrontRing front(mem.data(), 1, abi(), start);
  BackRing back(mem.data(), 1, abi(), start);

  for (uint64_t id = 0; id < 5; ++id) ASSERT_TRUE(front.push_request(full_pages_request(kOpRead, id, 0, 1)));
  EXPECT_TRUE(front.push_requests_and_check_notify());
  EXPECT_EQ(mem.req_prod(), 3u) << "0xfffffffe + 5 wraps to 3";
  EXPECT_EQ(back.availability().unconsumed, 5u);
  EXPECT_FALSE(back.runaway());

  Request r;
  for (uint64_t id = 0; id < 5; ++id) {
    ASSERT_TRUE(back.next_request(r));
    EXPECT_EQ(r.id, id);
    back.push_response(r.id, r.wire_operation, kStatusOkay);
  }
  EXPECT_TRUE(back.push_responses_and_check_notify());
  EXPECT_EQ(back.req_cons(), 3u);

  EXPECT_FALSE(back.final_check_for_requests());
  EXPECT_EQ(mem.req_event(), 4u);

  for (uint64_t id = 0; id < 5; ++id) {
    Response rsp;
    ASSERT_TRUE(front.next_response(rsp));
    EXPECT_EQ(rsp.id, id);
  }
  EXPECT_FALSE(front.final_check_for_responses());
  EXPECT_EQ(mem.rsp_event(), 4u);

  // Runaway detection across the wrap: 0 + size + 1 past rsp_prod_pvt 3.
  mem.set_req_prod(3 + back.size() + 1);
  EXPECT_TRUE(back.runaway());
}

TEST_P(BackRingTest, FinalCheckForRequests) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());

  mem.set_req_event(0x55);
  EXPECT_FALSE(back.final_check_for_requests());
  EXPECT_EQ(mem.req_event(), 1u) << "req_cons + 1";

  front.push_request(full_pages_request(kOpRead, 1, 0, 1));
  EXPECT_TRUE(front.push_requests_and_check_notify()) << "backend asked for event 1";
  mem.set_req_event(0x66);
  EXPECT_TRUE(back.final_check_for_requests());
  EXPECT_EQ(mem.req_event(), 0x66u) << "untouched while work is pending";

  Request r;
  ASSERT_TRUE(back.next_request(r));
  EXPECT_FALSE(back.final_check_for_requests());
  EXPECT_EQ(mem.req_event(), 2u);

  // The frontend's next push must now notify; one after that must not
  // until the backend asks again.
  front.push_request(full_pages_request(kOpRead, 2, 0, 1));
  EXPECT_TRUE(front.push_requests_and_check_notify());
  front.push_request(full_pages_request(kOpRead, 3, 0, 1));
  EXPECT_FALSE(front.push_requests_and_check_notify());
}

TEST_P(BackRingTest, DecodedRequestIsIndependentOfSharedMemory) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, abi());
  BackRing back(mem.data(), 1, abi());
  front.push_request(full_pages_request(kOpWrite, 0xabcdef, 80, 4));
  front.push_requests_and_check_notify();
  Request r;
  ASSERT_TRUE(back.next_request(r));
  // The guest rewrites the slot (and the producer index) after the copy.
  auto slot = mem.slot(0, entry_bytes(abi()));
  std::memset(slot.data(), 0xFF, slot.size());
  EXPECT_EQ(r.id, 0xabcdefu);
  EXPECT_EQ(r.operation, Operation::Write);
  EXPECT_EQ(r.nr_segments, 4);
  EXPECT_EQ(r.sector_number, 80u);
  for (unsigned i = 0; i < 4; ++i) {
    EXPECT_EQ(r.segments[i].gref, 100 + i);
    EXPECT_EQ(r.segments[i].last_sect, 7);
  }
}

// A guest flips the operation byte of every slot between READ and INDIRECT
// while the backend decodes (one atomic byte store, so any single copy of
// the slot is exactly one of the two images). Each decoded request must be
// exactly that image's decoding: a decoder that read the operation byte from
// shared memory again after choosing the layout would mix the two. (Torn
// multi-byte rewrites cannot be checked this way; that half of XSA-155 is
// covered by DecodedRequestIsIndependentOfSharedMemory and by the design:
// BackRing decodes only from its private copy.)
TEST_P(BackRingTest, ConcurrentRewriteYieldsOneSnapshotOrTheOther) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  BackRing back(mem.data(), 1, abi());
  const size_t eb = entry_bytes(abi());
  const uint32_t size = back.size();

  // Image: a READ with 1 segment whose bytes also make sense as INDIRECT.
  std::array<std::byte, layout::kMaxEntryBytes> image{};
  Request base = full_pages_request(kOpRead, 0x1111, 24, 1, 0x2222);
  base.handle = 3;  // indirect view: nr_segments (x86_64 layout) = 3 ...
  ASSERT_TRUE(encode_request(abi(), base, image));
  image[1] = std::byte{kOpWrite};  // ... indirect_op WRITE; direct view: nr_segments 1
  Request as_direct, as_indirect;
  image[0] = std::byte{kOpRead};
  decode_request(abi(), image, as_direct);
  image[0] = std::byte{kOpIndirect};
  decode_request(abi(), image, as_indirect);
  ASSERT_FALSE(as_direct.indirect);
  ASSERT_TRUE(as_indirect.indirect);

  for (uint32_t i = 0; i < size; ++i) std::memcpy(mem.slot(i, eb).data(), image.data(), eb);

  std::atomic<bool> stop{false};
  std::thread guest([&] {
    uint8_t op = kOpRead;
    while (!stop.load(std::memory_order_relaxed)) {
      op = op == kOpRead ? kOpIndirect : kOpRead;
      for (uint32_t i = 0; i < size; ++i) {
        auto* b = reinterpret_cast<uint8_t*>(mem.slot(i, eb).data());
        std::atomic_ref<uint8_t>(*b).store(op, std::memory_order_relaxed);
      }
    }
  });

  unsigned seen_direct = 0, seen_indirect = 0, mixed = 0;
  uint32_t prod = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(mem.bytes())).store(
        ++prod, std::memory_order_release);
    Request got;
    ASSERT_TRUE(back.next_request(got));
    const Request& want = got.indirect ? as_indirect : as_direct;
    const bool same = got.id == want.id && got.wire_operation == want.wire_operation &&
                      got.operation == want.operation && got.handle == want.handle &&
                      got.sector_number == want.sector_number &&
                      got.nr_segments == want.nr_segments &&
                      got.nr_indirect_pages == want.nr_indirect_pages &&
                      (got.indirect ? got.indirect_grefs == want.indirect_grefs
                                    : got.segments[0].gref == want.segments[0].gref);
    if (!same) ++mixed;
    (got.indirect ? seen_indirect : seen_direct)++;
    // Answer it (this overwrites the slot head), then restore the image so
    // the slot holds READ or INDIRECT again whenever the guest thread runs.
    back.push_response(got.id, got.wire_operation, kStatusOkay);
    back.push_responses_and_check_notify();
    const uint32_t idx = (prod - 1) & (size - 1);
    std::memcpy(mem.slot(idx, eb).data() + 1, image.data() + 1, eb - 1);
    std::atomic_ref<uint8_t>(*reinterpret_cast<uint8_t*>(mem.slot(idx, eb).data()))
        .store(kOpRead, std::memory_order_relaxed);
  }
  stop = true;
  guest.join();
  EXPECT_EQ(mixed, 0u);
  EXPECT_EQ(seen_direct + seen_indirect, 20000u);
}

TEST_P(BackRingTest, RejectsBadConstruction) {
  RingMemory mem(1);
  EXPECT_THROW(BackRing(nullptr, 1, abi()), std::invalid_argument);
  EXPECT_THROW(BackRing(mem.data(), 0, abi()), std::invalid_argument);
  EXPECT_THROW(BackRing(mem.data(), kMaxRingPages + 1, abi()), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(AllAbis, BackRingTest,
                         ::testing::Values(Abi::Native, Abi::X86_32, Abi::X86_64), abi_name);

}  // namespace
}  // namespace xbb::ring
