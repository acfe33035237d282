#include "ring/protocol/IndirectSegments.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "RequestBuilders.hpp"
#include "RingMemory.hpp"
#include "ring/protocol/BackRing.hpp"
#include "ring/protocol/FrontRing.hpp"
#include "ring/protocol/Validator.hpp"

namespace xbb::ring {
namespace {

using test::indirect_request;
using test::RingMemory;

std::vector<Segment> make_segments(unsigned n) {
  std::vector<Segment> segs;
  for (unsigned i = 0; i < n; ++i) segs.push_back({0x7000 + i, uint8_t(i % 4), uint8_t(4 + i % 4)});
  return segs;
}

TEST(IndirectSegments, RoundTripThroughPages) {
  const auto segs = make_segments(kMaxSegments);
  std::vector<std::byte> pages(kMaxIndirectPages * kRingPageBytes, std::byte{0xAA});
  ASSERT_TRUE(encode_indirect_segments(segs, pages));
  // Segment padding is zeroed; the byte after the last segment is untouched.
  EXPECT_EQ(std::to_integer<uint8_t>(pages[6]), 0);
  EXPECT_EQ(std::to_integer<uint8_t>(pages[7]), 0);
  EXPECT_EQ(std::to_integer<uint8_t>(pages[kMaxSegments * 8]), 0xAA);

  Request r = indirect_request(kOpWrite, 1, 0, kMaxSegments);
  r.segments = {};
  ASSERT_TRUE(decode_indirect_segments(r, pages));
  for (unsigned i = 0; i < kMaxSegments; ++i) {
    EXPECT_EQ(r.segments[i].gref, segs[i].gref);
    EXPECT_EQ(r.segments[i].first_sect, segs[i].first_sect);
    EXPECT_EQ(r.segments[i].last_sect, segs[i].last_sect);
  }
}

TEST(IndirectSegments, LayoutIsBlkifRequestSegment) {
  std::vector<std::byte> page(kRingPageBytes);
  const Segment s[2] = {{0x01020304, 2, 5}, {0x0a0b0c0d, 0, 7}};
  ASSERT_TRUE(encode_indirect_segments(s, page));
  EXPECT_EQ(std::to_integer<uint8_t>(page[0]), 0x04);  // little-endian gref
  EXPECT_EQ(std::to_integer<uint8_t>(page[3]), 0x01);
  EXPECT_EQ(std::to_integer<uint8_t>(page[4]), 2);
  EXPECT_EQ(std::to_integer<uint8_t>(page[5]), 5);
  EXPECT_EQ(std::to_integer<uint8_t>(page[8]), 0x0d);
  EXPECT_EQ(std::to_integer<uint8_t>(page[13]), 7);
}

TEST(IndirectSegments, RefusesWhatItCannotDoSafely) {
  std::vector<std::byte> pages(kRingPageBytes);
  Request r = indirect_request(kOpRead, 1, 0, 10);
  r.segments[0] = {424242, 1, 1};

  Request not_indirect = r;
  not_indirect.indirect = false;
  EXPECT_FALSE(decode_indirect_segments(not_indirect, pages));

  Request too_many = r;
  too_many.nr_segments = kMaxSegments + 1;
  std::vector<std::byte> plenty(kMaxIndirectPages * kRingPageBytes);
  EXPECT_FALSE(decode_indirect_segments(too_many, plenty));
  EXPECT_EQ(too_many.segments[0].gref, 424242u) << "left alone";

  std::vector<std::byte> short_buffer(10 * 8 - 1);
  EXPECT_FALSE(decode_indirect_segments(r, short_buffer));
  EXPECT_EQ(r.segments[0].gref, 424242u);

  std::vector<std::byte> tiny(15);
  EXPECT_FALSE(encode_indirect_segments(make_segments(2), tiny));
}

TEST(IndirectSegments, EngineFlowValidatesCountThenSegments) {
  RingMemory mem(1);
  init_shared_ring(mem.data(), 1);
  FrontRing front(mem.data(), 1, Abi::X86_32);
  BackRing back(mem.data(), 1, Abi::X86_32);
  DiskGeometry disk;
  disk.sectors = 1 << 20;
  disk.max_indirect_segments = 32;

  // Guest pages: 20 segments, the last one broken.
  auto segs = make_segments(20);
  segs[19].first_sect = 6;
  segs[19].last_sect = 1;
  std::vector<std::byte> guest_pages(kRingPageBytes);
  ASSERT_TRUE(encode_indirect_segments(segs, guest_pages));

  front.push_request(indirect_request(kOpRead, 1, 0, 20));
  Request hostile = indirect_request(kOpRead, 2, 0, 20);
  hostile.nr_segments = 4000;
  front.push_request(hostile);
  front.push_requests_and_check_notify();

  Request r;
  ASSERT_TRUE(back.next_request(r));
  EXPECT_EQ(r.nr_indirect_pages, 1);
  ASSERT_EQ(validate_header(r, disk), Rejection::None);
  ASSERT_TRUE(decode_indirect_segments(r, guest_pages));
  EXPECT_EQ(validate(r, disk), Rejection::BadFirstLastSector);

  ASSERT_TRUE(back.next_request(r));
  EXPECT_EQ(r.nr_indirect_pages, kMaxIndirectPages);
  EXPECT_EQ(validate_header(r, disk), Rejection::TooManyIndirectSegments);
}

}  // namespace
}  // namespace xbb::ring
