// The software frontend's ring view: capacity, notify rules and distrust of
// the backend.
#include "ring/protocol/FrontRing.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

#include "RequestBuilders.hpp"
#include "RingMemory.hpp"
#include "ring/protocol/BackRing.hpp"

namespace xbb::ring {
namespace {

using test::full_pages_request;
using test::RingMemory;

TEST(FrontRing, InitSharedRingSetsEventsAndClearsHeader) {
  RingMemory mem(1, 0xCD);
  init_shared_ring(mem.data(), 1);
  EXPECT_EQ(mem.req_prod(), 0u);
  EXPECT_EQ(mem.rsp_prod(), 0u);
  EXPECT_EQ(mem.req_event(), 1u);
  EXPECT_EQ(mem.rsp_event(), 1u);
  for (size_t i = 16; i < layout::kSringHeaderBytes; ++i)
    EXPECT_EQ(std::to_integer<uint8_t>(mem.bytes()[i]), 0) << "header byte " << i;
  EXPECT_EQ(std::to_integer<uint8_t>(mem.bytes()[layout::kSringHeaderBytes]), 0xCD)
      << "entries are left alone";
  EXPECT_THROW(init_shared_ring(nullptr, 1), std::invalid_argument);
  EXPECT_THROW(init_shared_ring(mem.data(), 0), std::invalid_argument);
}

TEST(FrontRing, FillsUpAndRefusesWhenFull) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, Abi::X86_32);
  ASSERT_EQ(front.size(), 32u);
  for (uint32_t i = 0; i < 32; ++i) {
    EXPECT_EQ(front.free_requests(), 32 - i);
    ASSERT_TRUE(front.push_request(full_pages_request(kOpRead, i, 0, 1)));
  }
  EXPECT_TRUE(front.full());
  EXPECT_FALSE(front.push_request(full_pages_request(kOpRead, 99, 0, 1)));
  EXPECT_EQ(front.req_prod_pvt(), 32u);
}

TEST(FrontRing, RequestNotifyFollowsReqEvent) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, Abi::Native);
  mem.set_req_event(3);
  front.push_request(full_pages_request(kOpRead, 1, 0, 1));
  front.push_request(full_pages_request(kOpRead, 2, 0, 1));
  EXPECT_FALSE(front.push_requests_and_check_notify());
  front.push_request(full_pages_request(kOpRead, 3, 0, 1));
  EXPECT_TRUE(front.push_requests_and_check_notify());
  EXPECT_EQ(mem.req_prod(), 3u);
}

TEST(FrontRing, BogusResponseProducerHaltsTheFrontend) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, Abi::Native);
  front.push_request(full_pages_request(kOpRead, 1, 0, 1));
  front.push_request(full_pages_request(kOpRead, 2, 0, 1));
  front.push_requests_and_check_notify();
  mem.set_rsp_prod(2);
  EXPECT_EQ(front.availability().unconsumed, 2u);
  mem.set_rsp_prod(3);  // a response to a request never made
  EXPECT_TRUE(front.availability().runaway);
  EXPECT_TRUE(front.halted());
  Response rsp;
  EXPECT_FALSE(front.next_response(rsp));
  EXPECT_FALSE(front.final_check_for_responses());
}

TEST(FrontRing, FinalCheckForResponsesSetsRspEvent) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, Abi::X86_64);
  BackRing back(mem.data(), 1, Abi::X86_64);
  EXPECT_FALSE(front.final_check_for_responses());
  EXPECT_EQ(mem.rsp_event(), 1u);

  front.push_request(full_pages_request(kOpWrite, 7, 0, 1));
  front.push_requests_and_check_notify();
  Request r;
  ASSERT_TRUE(back.next_request(r));
  back.push_response(r.id, r.wire_operation, kStatusOkay);
  EXPECT_TRUE(back.push_responses_and_check_notify());
  EXPECT_TRUE(front.final_check_for_responses());
  Response rsp;
  ASSERT_TRUE(front.next_response(rsp));
  EXPECT_EQ(rsp.id, 7u);
  EXPECT_FALSE(front.final_check_for_responses());
  EXPECT_EQ(mem.rsp_event(), 2u);
}

}  // namespace
}  // namespace xbb::ring
