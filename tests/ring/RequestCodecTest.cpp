// Encode -> decode round trips for every operation in every ABI.
#include "ring/protocol/RequestCodec.hpp"

#include <gtest/gtest.h>

#include <array>
#include <tuple>

#include "RequestBuilders.hpp"
#include "ring/protocol/Layouts.hpp"
#include "ring/protocol/ResponseCodec.hpp"

namespace xbb::ring {
namespace {

using test::direct_request;
using test::discard_request;
using test::full_pages_request;
using test::indirect_request;

void expect_same_header(const Request& a, const Request& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.wire_operation, b.wire_operation);
  EXPECT_EQ(a.operation, b.operation);
  EXPECT_EQ(a.handle, b.handle);
  EXPECT_EQ(a.sector_number, b.sector_number);
  EXPECT_EQ(a.nr_segments, b.nr_segments);
  EXPECT_EQ(a.indirect, b.indirect);
}

Request round_trip(Abi abi, const Request& in) {
  std::array<std::byte, layout::kMaxEntryBytes> slot;
  slot.fill(std::byte{0x5A});
  EXPECT_TRUE(encode_request(abi, in, slot));
  Request out;
  // Pre-poison: decode must overwrite everything it owns.
  out.id = ~0ull;
  out.indirect = !in.indirect;
  out.discard_nr_sectors = 12345;
  out.discard_secure = true;
  out.nr_indirect_pages = 200;
  EXPECT_TRUE(decode_request(abi, slot, out));
  return out;
}

class RoundTrip : public ::testing::TestWithParam<Abi> {};

TEST_P(RoundTrip, DirectOperations) {
  for (uint8_t op : {kOpRead, kOpWrite, kOpWriteBarrier}) {
    const Request in = direct_request(op, 0xdead0000beefull + op, 0x123456789ull,
                                      {{7, 0, 7}, {8, 1, 3}, {0xffffffffu, 7, 7}});
    const Request out = round_trip(GetParam(), in);
    expect_same_header(in, out);
    for (unsigned i = 0; i < 3; ++i) {
      EXPECT_EQ(out.segments[i].gref, in.segments[i].gref);
      EXPECT_EQ(out.segments[i].first_sect, in.segments[i].first_sect);
      EXPECT_EQ(out.segments[i].last_sect, in.segments[i].last_sect);
    }
    EXPECT_EQ(out.nr_indirect_pages, 0);
    EXPECT_EQ(out.discard_nr_sectors, 0u);
    EXPECT_FALSE(out.discard_secure);
    EXPECT_EQ(out.bytes(), (8 + 3 + 1) * 512u);
  }
}

TEST_P(RoundTrip, FullDirectRequest) {
  const Request in = full_pages_request(kOpWrite, 1, 2, kMaxDirectSegments);
  const Request out = round_trip(GetParam(), in);
  expect_same_header(in, out);
  for (unsigned i = 0; i < kMaxDirectSegments; ++i) EXPECT_EQ(out.segments[i].gref, in.segments[i].gref);
  EXPECT_EQ(out.bytes(), kMaxDirectSegments * 4096u);
}

TEST_P(RoundTrip, FlushWithoutSegments) {
  const Request in = direct_request(kOpFlushDiskCache, 42, 0, {});
  const Request out = round_trip(GetParam(), in);
  expect_same_header(in, out);
  EXPECT_EQ(out.operation, Operation::FlushDiskCache);
  EXPECT_EQ(out.bytes(), 0u);
}

TEST_P(RoundTrip, Discard) {
  for (bool secure : {false, true}) {
    const Request in = discard_request(0x77, 1ull << 40, (1ull << 33) + 8, secure);
    const Request out = round_trip(GetParam(), in);
    expect_same_header(in, out);
    EXPECT_EQ(out.discard_nr_sectors, in.discard_nr_sectors);
    EXPECT_EQ(out.discard_secure, secure);
    EXPECT_EQ(out.nr_segments, 0);
  }
}

// The byte after a discard's operation is its flag, not nr_segments (as in
// blkback, which only tests BLKIF_DISCARD_SECURE): other bits mean nothing,
// and a discard never has segments whatever that byte holds.
TEST_P(RoundTrip, DiscardFlagBitsOtherThanSecureAreIgnored) {
  for (uint8_t flag : {uint8_t{0xfe}, uint8_t{0xff}, uint8_t{0x0b}}) {
    std::array<std::byte, layout::kMaxEntryBytes> slot;
    ASSERT_TRUE(encode_request(GetParam(), discard_request(0x78, 64, 8, false), slot));
    slot[1] = std::byte{flag};
    Request out;
    ASSERT_TRUE(decode_request(GetParam(), slot, out));
    EXPECT_EQ(out.operation, Operation::Discard);
    EXPECT_EQ(out.discard_secure, (flag & kDiscardSecureFlag) != 0) << int(flag);
    EXPECT_EQ(out.nr_segments, 0) << int(flag);
    EXPECT_EQ(out.discard_nr_sectors, 8u);
  }
}

TEST_P(RoundTrip, IndirectReadAndWrite) {
  for (uint8_t op : {kOpRead, kOpWrite}) {
    for (unsigned n : {1u, 512u, 513u, 4096u, 65535u}) {
      const Request in = indirect_request(op, 0xabc + n, 4096, n);
      const Request out = round_trip(GetParam(), in);
      expect_same_header(in, out);
      EXPECT_EQ(out.nr_indirect_pages, in.nr_indirect_pages) << n;
      EXPECT_EQ(out.indirect_grefs, in.indirect_grefs);
      // Echoed in the response: the inner operation, as Linux expects.
      EXPECT_EQ(out.wire_operation, op);
    }
  }
}

TEST_P(RoundTrip, IndirectWithBadInnerOperation) {
  const Request in = indirect_request(kOpDiscard, 1, 0, 3);
  const Request out = round_trip(GetParam(), in);
  EXPECT_TRUE(out.indirect);
  EXPECT_EQ(out.operation, Operation::Unknown);
  EXPECT_EQ(out.wire_operation, kOpDiscard);
}

TEST_P(RoundTrip, UnknownOperationsKeepTheirIdAndByte) {
  for (uint8_t op : {uint8_t{4}, uint8_t{7}, uint8_t{0xff}}) {
    const Request in = direct_request(op, 0x0102030405060708ull, 9, {{1, 0, 0}});
    const Request out = round_trip(GetParam(), in);
    EXPECT_EQ(out.operation, Operation::Unknown);
    EXPECT_EQ(out.wire_operation, op);
    EXPECT_EQ(out.id, in.id);
    EXPECT_FALSE(out.indirect);
  }
}

TEST_P(RoundTrip, HostileDirectSegmentCountIsKeptButBounded) {
  Request in = full_pages_request(kOpRead, 1, 0, kMaxDirectSegments);
  in.nr_segments = 255;  // the wire field's maximum
  const Request out = round_trip(GetParam(), in);
  EXPECT_EQ(out.nr_segments, 255);
  EXPECT_EQ(out.segment_count(), kMaxDirectSegments);
  EXPECT_EQ(out.bytes(), kMaxDirectSegments * 4096u);

  in.nr_segments = 256;  // cannot be expressed in the 8-bit field
  std::array<std::byte, layout::kMaxEntryBytes> slot{};
  EXPECT_FALSE(encode_request(GetParam(), in, slot));
}

TEST_P(RoundTrip, Responses) {
  std::array<std::byte, layout::kMaxEntryBytes> slot{};
  for (int16_t status : {kStatusOkay, kStatusError, kStatusNotSupported}) {
    const Response in{0xfedcba9876543210ull, kOpIndirect, status};
    ASSERT_TRUE(encode_response(GetParam(), in, slot));
    Response out;
    ASSERT_TRUE(decode_response(GetParam(), slot, out));
    EXPECT_EQ(out.id, in.id);
    EXPECT_EQ(out.operation, in.operation);
    EXPECT_EQ(out.status, in.status);
  }
}

INSTANTIATE_TEST_SUITE_P(AllAbis, RoundTrip,
                         ::testing::Values(Abi::Native, Abi::X86_32, Abi::X86_64),
                         [](const auto& info) {
                           switch (info.param) {
                             case Abi::Native:
                               return std::string("Native");
                             case Abi::X86_32:
                               return std::string("X86_32");
                             case Abi::X86_64:
                               return std::string("X86_64");
                           }
                           return std::string("Invalid");
                         });

TEST(Codec, AbisDisagreeOnTheBytes) {
  // The same request must not encode identically in the two layouts,
  // otherwise a protocol mix-up would go unnoticed.
  const Request in = direct_request(kOpRead, 0x1234, 0x5678, {{1, 0, 7}});
  std::array<std::byte, layout::kMaxEntryBytes> a{}, b{};
  ASSERT_TRUE(encode_request(Abi::X86_32, in, a));
  ASSERT_TRUE(encode_request(Abi::X86_64, in, b));
  EXPECT_NE(a, b);
  Request crossed;
  ASSERT_TRUE(decode_request(Abi::X86_64, a, crossed));
  EXPECT_NE(crossed.id, in.id);
}

TEST(Codec, OperationNames) {
  EXPECT_EQ(to_string(Operation::Read), "read");
  EXPECT_EQ(to_string(Operation::FlushDiskCache), "flush-diskcache");
  EXPECT_EQ(to_string(Operation::Unknown), "unknown");
}

}  // namespace
}  // namespace xbb::ring
