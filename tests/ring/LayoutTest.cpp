// Wire layouts checked byte by byte: native against the official header
// structs, x86_32 and x86_64 against the offsets blkif.h implies for them.
#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include <xen/xen.h>
#include <xen/grant_table.h>
#include <xen/io/ring.h>
#include <xen/io/blkif.h>

#include "ring/protocol/RequestCodec.hpp"
#include "ring/protocol/ResponseCodec.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {
namespace {

using Slot = std::array<std::byte, layout::kMaxEntryBytes>;

template <typename T>
T read_at(const Slot& s, size_t offset) {
  T v;
  std::memcpy(&v, s.data() + offset, sizeof(v));
  return v;
}

template <typename T>
void write_at(Slot& s, size_t offset, T v) {
  std::memcpy(s.data() + offset, &v, sizeof(v));
}

TEST(Layout, NativeDirectRequestDecodesFromTheHeaderStruct) {
  blkif_request_t w{};
  w.operation = BLKIF_OP_WRITE;
  w.nr_segments = 2;
  w.handle = 0x51;
  w.id = 0x1122334455667788ull;
  w.sector_number = 0xabcdef012345ull;
  w.seg[0] = {0x100, 1, 6};
  w.seg[1] = {0x200, 0, 7};
  Slot slot{};
  std::memcpy(slot.data(), &w, sizeof(w));

  for (Abi abi : {Abi::Native, Abi::X86_64}) {
    Request r;
    ASSERT_TRUE(decode_request(abi, slot, r));
    EXPECT_EQ(r.wire_operation, BLKIF_OP_WRITE);
    EXPECT_EQ(r.operation, Operation::Write);
    EXPECT_EQ(r.nr_segments, 2);
    EXPECT_EQ(r.handle, 0x51);
    EXPECT_EQ(r.id, 0x1122334455667788ull);
    EXPECT_EQ(r.sector_number, 0xabcdef012345ull);
    EXPECT_EQ(r.segments[0].gref, 0x100u);
    EXPECT_EQ(r.segments[0].first_sect, 1);
    EXPECT_EQ(r.segments[0].last_sect, 6);
    EXPECT_EQ(r.segments[1].gref, 0x200u);
    EXPECT_FALSE(r.indirect);
  }
}

TEST(Layout, NativeDiscardAndIndirectDecodeFromTheHeaderStructs) {
  blkif_request_discard_t d{};
  d.operation = BLKIF_OP_DISCARD;
  d.flag = BLKIF_DISCARD_SECURE;
  d.handle = 3;
  d.id = 77;
  d.sector_number = 4096;
  d.nr_sectors = 2048;
  Slot slot{};
  std::memcpy(slot.data(), &d, sizeof(d));
  Request r;
  ASSERT_TRUE(decode_request(Abi::Native, slot, r));
  EXPECT_EQ(r.operation, Operation::Discard);
  EXPECT_EQ(r.id, 77u);
  EXPECT_EQ(r.handle, 3);
  EXPECT_EQ(r.sector_number, 4096u);
  EXPECT_EQ(r.discard_nr_sectors, 2048u);
  EXPECT_TRUE(r.discard_secure);

  blkif_request_indirect_t ind{};
  ind.operation = BLKIF_OP_INDIRECT;
  ind.indirect_op = BLKIF_OP_READ;
  ind.nr_segments = 600;
  ind.id = 99;
  ind.sector_number = 8;
  ind.handle = 4;
  for (unsigned i = 0; i < BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST; ++i) ind.indirect_grefs[i] = 1000 + i;
  slot = {};
  std::memcpy(slot.data(), &ind, sizeof(ind));
  ASSERT_TRUE(decode_request(Abi::Native, slot, r));
  EXPECT_TRUE(r.indirect);
  EXPECT_EQ(r.operation, Operation::Read);
  EXPECT_EQ(r.wire_operation, BLKIF_OP_READ);
  EXPECT_EQ(r.nr_segments, 600);
  EXPECT_EQ(r.nr_indirect_pages, 2);
  EXPECT_EQ(r.id, 99u);
  EXPECT_EQ(r.sector_number, 8u);
  EXPECT_EQ(r.handle, 4);
  for (unsigned i = 0; i < kMaxIndirectPages; ++i) EXPECT_EQ(r.indirect_grefs[i], 1000 + i);
}

TEST(Layout, NativeResponseIsTheHeaderStruct) {
  Slot slot;
  slot.fill(std::byte{0xAA});
  ASSERT_TRUE(encode_response(Abi::Native, Response{0x0102030405060708ull, BLKIF_OP_READ,
                                                    BLKIF_RSP_EOPNOTSUPP},
                              slot));
  blkif_response_t w;
  std::memcpy(&w, slot.data(), sizeof(w));
  EXPECT_EQ(w.id, 0x0102030405060708ull);
  EXPECT_EQ(w.operation, BLKIF_OP_READ);
  EXPECT_EQ(w.status, BLKIF_RSP_EOPNOTSUPP);
  EXPECT_EQ(sizeof(w), response_bytes(Abi::Native));
}

TEST(Layout, X86_32RequestOffsets) {
  Request r;
  r.wire_operation = BLKIF_OP_READ;
  r.operation = Operation::Read;
  r.nr_segments = 11;
  r.handle = 0x0a0b;
  r.id = 0x1111222233334444ull;
  r.sector_number = 0x5555666677778888ull;
  for (unsigned i = 0; i < 11; ++i) r.segments[i] = {0xc0de0000u + i, uint8_t(i % 8), 7};
  Slot slot;
  slot.fill(std::byte{0xEE});
  ASSERT_TRUE(encode_request(Abi::X86_32, r, slot));
  EXPECT_EQ(read_at<uint8_t>(slot, 0), BLKIF_OP_READ);
  EXPECT_EQ(read_at<uint8_t>(slot, 1), 11);
  EXPECT_EQ(read_at<uint16_t>(slot, 2), 0x0a0b);
  EXPECT_EQ(read_at<uint64_t>(slot, 4), 0x1111222233334444ull);
  EXPECT_EQ(read_at<uint64_t>(slot, 12), 0x5555666677778888ull);
  for (unsigned i = 0; i < 11; ++i) {
    EXPECT_EQ(read_at<uint32_t>(slot, 20 + 8 * i), 0xc0de0000u + i);
    EXPECT_EQ(read_at<uint8_t>(slot, 24 + 8 * i), i % 8);
    EXPECT_EQ(read_at<uint8_t>(slot, 25 + 8 * i), 7);
    EXPECT_EQ(read_at<uint16_t>(slot, 26 + 8 * i), 0);  // segment padding zeroed
  }
  // Exactly 108 bytes written: the byte after is untouched.
  EXPECT_EQ(read_at<uint8_t>(slot, 108), 0xEE);
}

TEST(Layout, X86_32DiscardIndirectAndResponseOffsets) {
  Slot slot{};
  write_at<uint8_t>(slot, 0, BLKIF_OP_DISCARD);
  write_at<uint8_t>(slot, 1, 0);
  write_at<uint16_t>(slot, 2, 9);
  write_at<uint64_t>(slot, 4, 0xfeedull);
  write_at<uint64_t>(slot, 12, 64);
  write_at<uint64_t>(slot, 20, 128);
  Request r;
  ASSERT_TRUE(decode_request(Abi::X86_32, slot, r));
  EXPECT_EQ(r.operation, Operation::Discard);
  EXPECT_EQ(r.handle, 9);
  EXPECT_EQ(r.id, 0xfeedu);
  EXPECT_EQ(r.sector_number, 64u);
  EXPECT_EQ(r.discard_nr_sectors, 128u);
  EXPECT_FALSE(r.discard_secure);

  slot = {};
  write_at<uint8_t>(slot, 0, BLKIF_OP_INDIRECT);
  write_at<uint8_t>(slot, 1, BLKIF_OP_WRITE);
  write_at<uint16_t>(slot, 2, 513);
  write_at<uint64_t>(slot, 4, 0xbeefull);
  write_at<uint64_t>(slot, 12, 1024);
  write_at<uint16_t>(slot, 20, 7);
  for (unsigned i = 0; i < 8; ++i) write_at<uint32_t>(slot, 24 + 4 * i, 50 + i);
  ASSERT_TRUE(decode_request(Abi::X86_32, slot, r));
  EXPECT_TRUE(r.indirect);
  EXPECT_EQ(r.operation, Operation::Write);
  EXPECT_EQ(r.nr_segments, 513);
  EXPECT_EQ(r.nr_indirect_pages, 2);
  EXPECT_EQ(r.id, 0xbeefu);
  EXPECT_EQ(r.sector_number, 1024u);
  EXPECT_EQ(r.handle, 7);
  for (unsigned i = 0; i < 8; ++i) EXPECT_EQ(r.indirect_grefs[i], 50 + i);

  slot.fill(std::byte{0xAA});
  ASSERT_TRUE(encode_response(Abi::X86_32, Response{0x0102030405060708ull, 1, -1}, slot));
  EXPECT_EQ(read_at<uint64_t>(slot, 0), 0x0102030405060708ull);
  EXPECT_EQ(read_at<uint8_t>(slot, 8), 1);
  EXPECT_EQ(read_at<uint8_t>(slot, 9), 0);  // padding zeroed
  EXPECT_EQ(read_at<int16_t>(slot, 10), -1);
  EXPECT_EQ(read_at<uint8_t>(slot, 12), 0xAA);  // 12 bytes, not one more
}

TEST(Layout, X86_64IndirectAndResponseOffsets) {
  Request r;
  r.indirect = true;
  r.wire_operation = BLKIF_OP_READ;
  r.operation = Operation::Read;
  r.nr_segments = 17;
  r.id = 5;
  r.sector_number = 6;
  r.handle = 0x0708;
  for (unsigned i = 0; i < 8; ++i) r.indirect_grefs[i] = 0x90 + i;
  Slot slot;
  slot.fill(std::byte{0xEE});
  ASSERT_TRUE(encode_request(Abi::X86_64, r, slot));
  EXPECT_EQ(read_at<uint8_t>(slot, 0), BLKIF_OP_INDIRECT);
  EXPECT_EQ(read_at<uint8_t>(slot, 1), BLKIF_OP_READ);
  EXPECT_EQ(read_at<uint16_t>(slot, 2), 17);
  EXPECT_EQ(read_at<uint32_t>(slot, 4), 0u);
  EXPECT_EQ(read_at<uint64_t>(slot, 8), 5u);
  EXPECT_EQ(read_at<uint64_t>(slot, 16), 6u);
  EXPECT_EQ(read_at<uint16_t>(slot, 24), 0x0708);
  EXPECT_EQ(read_at<uint16_t>(slot, 26), 0);
  for (unsigned i = 0; i < 8; ++i) EXPECT_EQ(read_at<uint32_t>(slot, 28 + 4 * i), 0x90 + i);
  EXPECT_EQ(read_at<uint32_t>(slot, 60), 0u);
  EXPECT_EQ(read_at<uint8_t>(slot, 64), 0xEE);

  slot.fill(std::byte{0xAA});
  ASSERT_TRUE(encode_response(Abi::X86_64, Response{1, 2, -2}, slot));
  EXPECT_EQ(read_at<uint64_t>(slot, 0), 1u);
  EXPECT_EQ(read_at<uint8_t>(slot, 8), 2);
  EXPECT_EQ(read_at<uint8_t>(slot, 9), 0);
  EXPECT_EQ(read_at<int16_t>(slot, 10), -2);
  EXPECT_EQ(read_at<uint32_t>(slot, 12), 0u);
  EXPECT_EQ(read_at<uint8_t>(slot, 16), 0xAA);
}

TEST(Layout, ShortBuffersAreRefused) {
  std::array<std::byte, 107> small{};
  Request r;
  EXPECT_FALSE(decode_request(Abi::X86_32, small, r));
  EXPECT_FALSE(encode_request(Abi::X86_32, r, small));
  std::array<std::byte, 15> tiny{};
  EXPECT_FALSE(encode_response(Abi::X86_64, Response{}, tiny));
  EXPECT_TRUE(encode_response(Abi::X86_32, Response{}, tiny));
}

}  // namespace
}  // namespace xbb::ring
