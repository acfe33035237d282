// Every validation rule: a request that breaks exactly that rule and the
// reason reported, plus a valid request for every operation.
#include "ring/protocol/Validator.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

#include "RequestBuilders.hpp"

namespace xbb::ring {
namespace {

using test::direct_request;
using test::discard_request;
using test::full_pages_request;
using test::indirect_request;

constexpr uint64_t kDiskSectors = 1ull << 20;  // 512 MiB

DiskGeometry everything_supported() {
  DiskGeometry d;
  d.sectors = kDiskSectors;
  d.logical_block_size = 512;
  d.read_only = false;
  d.max_indirect_segments = 256;
  d.flush_supported = true;
  d.barrier_supported = true;
  d.discard_supported = true;
  d.secure_discard_supported = true;
  return d;
}

DiskGeometry read_only() {
  DiskGeometry d = everything_supported();
  d.read_only = true;
  return d;
}

DiskGeometry block_4k() {
  DiskGeometry d = everything_supported();
  d.logical_block_size = 4096;
  return d;
}

TEST(Validator, ValidRequestOfEveryOperationPasses) {
  const DiskGeometry disk = everything_supported();
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, 0, 1), disk), Rejection::None);
  EXPECT_EQ(validate(full_pages_request(kOpWrite, 1, 8, 11), disk), Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 3, {{1, 2, 2}}), disk), Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpWriteBarrier, 1, 0, {}), disk), Rejection::None);
  EXPECT_EQ(validate(full_pages_request(kOpWriteBarrier, 1, 0, 2), disk), Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpFlushDiskCache, 1, 0, {}), disk), Rejection::None);
  EXPECT_EQ(validate(discard_request(1, 0, kDiskSectors), disk), Rejection::None);
  EXPECT_EQ(validate(discard_request(1, 0, 8, true), disk), Rejection::None);
  EXPECT_EQ(validate(discard_request(1, 100, 0), disk), Rejection::None);
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 12), disk), Rejection::None);
  EXPECT_EQ(validate(indirect_request(kOpWrite, 1, 0, 256), disk), Rejection::None);
  // The very last sectors of the disk.
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, kDiskSectors - 8, 1), disk), Rejection::None);
}

TEST(Validator, ValidRequestsOnReadOnlyAndLargeBlockDisks) {
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, 0, 3), read_only()), Rejection::None);
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 40), read_only()), Rejection::None);
  // Flushing or ordering nothing changes nothing.
  EXPECT_EQ(validate(direct_request(kOpFlushDiskCache, 1, 0, {}), read_only()), Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpWriteBarrier, 1, 0, {}), read_only()), Rejection::None);
  EXPECT_EQ(validate(full_pages_request(kOpWrite, 1, 64, 4), block_4k()), Rejection::None);
  EXPECT_EQ(validate(discard_request(1, 64, 4096), block_4k()), Rejection::None);
  DiskGeometry k1 = everything_supported();
  k1.logical_block_size = 1024;
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 2, {{1, 2, 5}, {2, 0, 1}}), k1), Rejection::None);
}

TEST(Validator, UnknownOperation) {
  for (uint8_t op : {uint8_t{4}, uint8_t{7}, uint8_t{200}}) {
    EXPECT_EQ(validate(full_pages_request(op, 1, 0, 1), everything_supported()),
              Rejection::UnknownOperation);
  }
}

TEST(Validator, UnsupportedOperation) {
  DiskGeometry d = everything_supported();
  d.barrier_supported = false;
  EXPECT_EQ(validate(direct_request(kOpWriteBarrier, 1, 0, {}), d), Rejection::UnsupportedOperation);
  d = everything_supported();
  d.flush_supported = false;
  EXPECT_EQ(validate(direct_request(kOpFlushDiskCache, 1, 0, {}), d),
            Rejection::UnsupportedOperation);
  d = everything_supported();
  d.discard_supported = false;
  EXPECT_EQ(validate(discard_request(1, 0, 8), d), Rejection::UnsupportedOperation);
  d = everything_supported();
  d.max_indirect_segments = 0;
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 12), d), Rejection::UnsupportedOperation);
}

TEST(Validator, BadIndirectOperation) {
  for (uint8_t op : {kOpWriteBarrier, kOpFlushDiskCache, kOpDiscard, kOpIndirect, uint8_t{99}}) {
    EXPECT_EQ(validate(indirect_request(op, 1, 0, 12), everything_supported()),
              Rejection::BadIndirectOperation);
  }
}

TEST(Validator, NoSegments) {
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 0, {}), everything_supported()),
            Rejection::NoSegments);
  EXPECT_EQ(validate(direct_request(kOpWrite, 1, 0, {}), everything_supported()),
            Rejection::NoSegments);
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 0), everything_supported()),
            Rejection::NoSegments);
}

// Linux blkback writes a flush's data after flushing (REQ_PREFLUSH): a
// write, with a write's checks.
TEST(Validator, FlushWithDataIsAWrite) {
  EXPECT_EQ(validate(full_pages_request(kOpFlushDiskCache, 1, 0, 3), everything_supported()), Rejection::None);
  EXPECT_EQ(validate(full_pages_request(kOpFlushDiskCache, 1, 0, 3), read_only()), Rejection::WriteToReadOnly);
  EXPECT_EQ(validate(full_pages_request(kOpFlushDiskCache, 1, kDiskSectors - 8, 2), everything_supported()),
            Rejection::PastEndOfDisk);
  EXPECT_EQ(validate(full_pages_request(kOpFlushDiskCache, 1, 0, 12), everything_supported()),
            Rejection::TooManySegments);
  // Without data the sector number means nothing, as in blkback.
  EXPECT_EQ(validate(direct_request(kOpFlushDiskCache, 1, kDiskSectors + 99, {}), everything_supported()),
            Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpWriteBarrier, 1, kDiskSectors + 99, {}), everything_supported()),
            Rejection::None);
}

TEST(Validator, TooManySegments) {
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, 0, 12), everything_supported()),
            Rejection::TooManySegments);
  EXPECT_EQ(validate(full_pages_request(kOpWriteBarrier, 1, 0, 255), everything_supported()),
            Rejection::TooManySegments);
}

TEST(Validator, TooManyIndirectSegments) {
  DiskGeometry d = everything_supported();
  d.max_indirect_segments = 64;
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 64), d), Rejection::None);
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, 65), d), Rejection::TooManyIndirectSegments);
  // Whatever the disk claims, never more than Request::segments can hold.
  d.max_indirect_segments = 4096;
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, 0, kMaxSegments + 1), d),
            Rejection::TooManyIndirectSegments);
  EXPECT_EQ(validate(indirect_request(kOpWrite, 1, 0, 65535), d),
            Rejection::TooManyIndirectSegments);
}

TEST(Validator, BadFirstLastSector) {
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 0, {{1, 0, 7}, {2, 5, 3}}), everything_supported()),
            Rejection::BadFirstLastSector);
}

TEST(Validator, SectorBeyondPage) {
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 0, {{1, 0, 8}}), everything_supported()),
            Rejection::SectorBeyondPage);
  EXPECT_EQ(validate(direct_request(kOpWrite, 1, 0, {{1, 8, 8}}), everything_supported()),
            Rejection::SectorBeyondPage);
  Request r = indirect_request(kOpRead, 1, 0, 100);
  r.segments[99].last_sect = 255;
  EXPECT_EQ(validate(r, everything_supported()), Rejection::SectorBeyondPage);
}

TEST(Validator, MisalignedToLogicalBlock) {
  // Start not on a 4 KiB block.
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, 4, 1), block_4k()),
            Rejection::MisalignedToLogicalBlock);
  // A segment that is not whole blocks within its page.
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 0, {{1, 0, 3}}), block_4k()),
            Rejection::MisalignedToLogicalBlock);
  DiskGeometry k1 = everything_supported();
  k1.logical_block_size = 1024;
  EXPECT_EQ(validate(direct_request(kOpWrite, 1, 0, {{1, 0, 2}}), k1),
            Rejection::MisalignedToLogicalBlock);
  EXPECT_EQ(validate(direct_request(kOpWrite, 1, 3, {{1, 0, 1}}), k1),
            Rejection::MisalignedToLogicalBlock) << "a start off the block";
}

// Where a segment starts in its page is not the block size's business, as
// in blkback: one block at 512 bytes into the page, 2 KiB blocks at 1 KiB.
TEST(Validator, SegmentsMayStartAnywhereInTheirPage) {
  DiskGeometry k1 = everything_supported();
  k1.logical_block_size = 1024;
  EXPECT_EQ(validate(direct_request(kOpWrite, 1, 0, {{1, 1, 2}}), k1), Rejection::None);
  DiskGeometry k2 = everything_supported();
  k2.logical_block_size = 2048;
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 4, {{1, 2, 5}, {2, 0, 3}}), k2), Rejection::None);
  EXPECT_EQ(validate(direct_request(kOpRead, 1, 4, {{1, 2, 4}}), k2), Rejection::MisalignedToLogicalBlock);
}

TEST(Validator, SectorOverflow) {
  DiskGeometry d = everything_supported();
  d.sectors = UINT64_MAX;
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, UINT64_MAX - 3, 1), d),
            Rejection::SectorOverflow);
  EXPECT_EQ(validate(discard_request(1, UINT64_MAX - 1, 2), d), Rejection::SectorOverflow);
  EXPECT_EQ(validate(discard_request(1, 8, UINT64_MAX), d), Rejection::SectorOverflow);
}

TEST(Validator, PastEndOfDisk) {
  EXPECT_EQ(validate(full_pages_request(kOpRead, 1, kDiskSectors - 7, 1), everything_supported()),
            Rejection::PastEndOfDisk);
  EXPECT_EQ(validate(full_pages_request(kOpWrite, 1, kDiskSectors, 1), everything_supported()),
            Rejection::PastEndOfDisk);
  EXPECT_EQ(validate(discard_request(1, kDiskSectors - 8, 16), everything_supported()),
            Rejection::PastEndOfDisk);
  EXPECT_EQ(validate(indirect_request(kOpRead, 1, kDiskSectors - 8 * 255, 256),
                     everything_supported()),
            Rejection::PastEndOfDisk);
}

TEST(Validator, WriteToReadOnly) {
  EXPECT_EQ(validate(full_pages_request(kOpWrite, 1, 0, 1), read_only()), Rejection::WriteToReadOnly);
  EXPECT_EQ(validate(full_pages_request(kOpWriteBarrier, 1, 0, 1), read_only()),
            Rejection::WriteToReadOnly);
  EXPECT_EQ(validate(discard_request(1, 0, 8), read_only()), Rejection::WriteToReadOnly);
  EXPECT_EQ(validate(indirect_request(kOpWrite, 1, 0, 20), read_only()), Rejection::WriteToReadOnly);
}

TEST(Validator, DiscardMisaligned) {
  EXPECT_EQ(validate(discard_request(1, 4, 8), block_4k()), Rejection::DiscardMisaligned);
  EXPECT_EQ(validate(discard_request(1, 8, 12), block_4k()), Rejection::DiscardMisaligned);
}

TEST(Validator, HeaderBoundsIndirectCountBeforeSegmentsAreRead) {
  // Segments beyond nr_segments are garbage here, as they would be before
  // decode_indirect_segments(); the header check must not need them.
  Request r = indirect_request(kOpRead, 1, 0, 1);
  r.nr_segments = 300;
  EXPECT_EQ(validate_header(r, everything_supported()), Rejection::TooManyIndirectSegments);

  // A bounded count passes the header even though the (not yet read)
  // segments would fail the full check.
  Request ok_header = indirect_request(kOpRead, 1, 0, 30);
  ok_header.segments[29] = {1, 6, 2};
  EXPECT_EQ(validate_header(ok_header, everything_supported()), Rejection::None);
  EXPECT_EQ(validate(ok_header, everything_supported()), Rejection::BadFirstLastSector);
}

TEST(Validator, SecureDiscardIsIgnoredWhenNotAdvertised) {
  DiskGeometry d = everything_supported();
  d.secure_discard_supported = false;
  const Request r = discard_request(1, 0, 8, true);
  EXPECT_EQ(validate(r, d), Rejection::None);
  EXPECT_FALSE(wants_secure_discard(r, d));
  EXPECT_TRUE(wants_secure_discard(r, everything_supported()));
  EXPECT_FALSE(wants_secure_discard(discard_request(1, 0, 8, false), everything_supported()));
}

TEST(Validator, StatusAndNames) {
  const Rejection all[] = {
      Rejection::None,           Rejection::UnknownOperation,      Rejection::UnsupportedOperation,
      Rejection::BadIndirectOperation, Rejection::NoSegments,
      Rejection::TooManySegments, Rejection::TooManyIndirectSegments, Rejection::BadFirstLastSector,
      Rejection::SectorBeyondPage, Rejection::MisalignedToLogicalBlock, Rejection::SectorOverflow,
      Rejection::PastEndOfDisk,  Rejection::WriteToReadOnly,       Rejection::DiscardMisaligned,
  };
  std::set<std::string> names;
  for (Rejection r : all) {
    names.insert(std::string(to_string(r)));
    if (r == Rejection::None)
      EXPECT_EQ(response_status(r), kStatusOkay);
    else if (r == Rejection::UnknownOperation || r == Rejection::UnsupportedOperation)
      EXPECT_EQ(response_status(r), kStatusNotSupported);
    else
      EXPECT_EQ(response_status(r), kStatusError) << to_string(r);
  }
  EXPECT_EQ(names.size(), std::size(all));  // one distinct reason per rule
}

}  // namespace
}  // namespace xbb::ring
