// Requests Linux blkback answers OKAY must not be failed by xbbd, neither by
// a limit of our own nor by a rule stricter than blkback's
// (drivers/block/xen-blkback/blkback.c: dispatch_rw_block_io,
// dispatch_discard_io, dispatch_other_io). One test per corner of the
// protocol; where blkback fails a request, the test pins the same answer.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::BlkRequest;
using frontend::FrontendConfig;
using frontend::VbdSpec;
using Kind = BlkRequest::Kind;

struct Disk {
  explicit Disk(const std::string& target, FrontendConfig config = {}, bool writable = true,
                backend::DaemonOptions options = default_options(),
                std::optional<storage::Properties> failing = std::nullopt)
      : h(options) {
    h.failing_properties = failing;
    guest = h.world().add_guest(5);
    spec.domid = 5;
    spec.target = target;
    spec.writable = writable;
    h.toolstack().add_vbd(spec);
    disk = guest->disk(spec.devid, config);
    disk->connect();
  }
  nlohmann::json stats() { return h.device_stats("5/51712")["stats"]; }

  DaemonHarness h;
  VbdSpec spec;
  std::unique_ptr<frontend::InProcessGuest> guest;
  std::unique_ptr<frontend::SoftBlkfront> disk;
};

// blkback turns BLKIF_OP_FLUSH_DISKCACHE into a REQ_PREFLUSH write: with
// segments, the data is written after the flush and the answer is OKAY.
TEST(BlkbackParity, AFlushCarryingDataWritesItAfterFlushing) {
  for (bool file : {true, false}) {
    std::optional<TempFile> image;
    if (file) image.emplace(16ull << 20);
    Disk d(file ? image->path() : "ram:16M");
    ASSERT_EQ(d.disk->backend().flush, file) << "a file has a cache to flush, RAM has not";
    BlkRequest flush;
    flush.kind = Kind::Flush;
    flush.sector = 40;
    flush.data = frontend::pattern(5, 40, 24, 1);
    const auto done = d.disk->execute(flush);
    EXPECT_EQ(done.status, ring::kStatusOkay) << (file ? "file" : "ram");
    EXPECT_EQ(done.operation, ring::kOpFlushDiskCache);
    std::vector<std::byte> out(24 * 512);
    ASSERT_EQ(d.disk->read(40, out), 0);
    EXPECT_EQ(out, flush.data) << "the flush's data is on the disk";
    const auto stats = d.stats();
    EXPECT_EQ(stats["operations"]["flush"]["completed"].get<uint64_t>(), 1u);
    EXPECT_EQ(stats["operations"]["flush"]["failed"].get<uint64_t>(), 0u);
    EXPECT_EQ(stats["bytes_written"].get<uint64_t>(), 24u * 512);
    EXPECT_TRUE(d.disk->violations().empty());
  }
  // On a read-only disk it is a write, refused as blkback refuses it.
  Disk ro("ram:16M", {}, /*writable=*/false);
  BlkRequest flush;
  flush.kind = Kind::Flush;
  flush.data = frontend::pattern(5, 0, 8, 1);
  EXPECT_EQ(ro.disk->execute(flush).status, ring::kStatusError);
  EXPECT_EQ(ro.disk->flush(), ring::kStatusOkay) << "without data it is only a flush";
}

// A barrier without data drains and flushes, and is answered OKAY; its
// sector number means nothing (blkback submits an empty REQ_PREFLUSH bio).
TEST(BlkbackParity, ABarrierWithoutDataIsAFlushAfterADrain) {
  TempFile image(16ull << 20);
  Disk d(image.path());
  BlkRequest barrier;
  barrier.kind = Kind::Barrier;
  barrier.sector = 1ull << 40;
  auto done = d.disk->execute(barrier);
  EXPECT_EQ(done.status, ring::kStatusOkay);
  EXPECT_EQ(done.operation, ring::kOpWriteBarrier);
  BlkRequest flush;
  flush.kind = Kind::Flush;
  flush.sector = 1ull << 40;
  EXPECT_EQ(d.disk->execute(flush).status, ring::kStatusOkay);
  EXPECT_EQ(d.stats()["operations"]["barrier"]["completed"].get<uint64_t>(), 1u);
}

// BLKIF_OP_INDIRECT carries READ or WRITE, however few segments; any other
// indirect_op is failed (ERROR, not EOPNOTSUPP) and answered with that
// indirect_op in the response, as blkback does.
TEST(BlkbackParity, IndirectWithEachIndirectOp) {
  for (bool persistent : {false, true}) {
    FrontendConfig config;
    config.persistent_grants = persistent;
    Disk d("ram:16M", config);
    BlkRequest write;
    write.kind = Kind::Write;
    write.force_indirect = true;
    write.sector = 8;
    write.data = frontend::pattern(6, 8, 8, 1);
    auto done = d.disk->execute(write);
    EXPECT_EQ(done.status, ring::kStatusOkay) << "one segment, sent indirect";
    EXPECT_EQ(done.operation, ring::kOpWrite);
    BlkRequest read;
    read.kind = Kind::Read;
    read.force_indirect = true;
    read.sector = 8;
    read.sectors = 8;
    done = d.disk->execute(read);
    EXPECT_EQ(done.status, ring::kStatusOkay);
    EXPECT_EQ(done.operation, ring::kOpRead);
    EXPECT_EQ(done.data, write.data);

    for (uint8_t op : {ring::kOpWriteBarrier, ring::kOpFlushDiskCache, uint8_t{4}, ring::kOpDiscard,
                       ring::kOpIndirect, uint8_t{0x42}}) {
      BlkRequest odd = write;
      odd.wire_operation = op;
      done = d.disk->execute(odd);
      EXPECT_EQ(done.status, ring::kStatusError) << "indirect_op " << int(op);
      EXPECT_EQ(done.operation, op) << "the response carries the indirect_op";
    }
    EXPECT_TRUE(d.disk->violations().empty()) << d.disk->violations().front();
    std::vector<std::byte> out(8 * 512);
    ASSERT_EQ(d.disk->read(8, out), 0);
    EXPECT_EQ(out, write.data) << "no failed indirect request wrote anything";
  }
}

// Operations blkif does not define (or that no backend implements, like 4,
// BLKIF_OP_RESERVED_1) are answered EOPNOTSUPP with their own byte.
TEST(BlkbackParity, UnknownOperationsAreNotSupported) {
  Disk d("ram:16M");
  for (uint8_t op : {uint8_t{4}, uint8_t{7}, uint8_t{8}, uint8_t{0x42}, uint8_t{0xff}}) {
    BlkRequest r;
    r.kind = Kind::Read;
    r.sector = 0;
    r.sectors = 8;
    r.wire_operation = op;
    const auto done = d.disk->execute(r);
    EXPECT_EQ(done.status, ring::kStatusNotSupported) << int(op);
    EXPECT_EQ(done.operation, op);
  }
  EXPECT_TRUE(d.disk->violations().empty()) << d.disk->violations().front();
  EXPECT_EQ(d.stats()["operations"]["other"]["failed"].get<uint64_t>(), 5u);
}

// blkback hands a discard to blkdev_issue_discard, which refuses an empty
// one (-EINVAL): ERROR, the same here.
TEST(BlkbackParity, AnEmptyDiscardIsAnError) {
  Disk d("ram:16M");
  ASSERT_TRUE(d.disk->backend().discard);
  EXPECT_EQ(d.disk->discard(64, 0), ring::kStatusError);
  EXPECT_EQ(d.disk->discard(64, 8), ring::kStatusOkay);
}

// With 2 KiB logical blocks (a CD-ROM, some arrays), blkback checks that the
// start and every segment's length are whole blocks, not where a segment
// starts in its page: Linux blkfront's DMA alignment is 512 bytes, so a
// guest's O_DIRECT buffer may start 1 KiB into a page.
TEST(BlkbackParity, SegmentsMayStartOffTheLogicalBlockInTheirPage) {
  storage::Properties props;
  props.size_bytes = 16ull << 20;
  props.logical_block_size = 2048;
  props.physical_block_size = 2048;
  props.can_discard = false;
  for (bool persistent : {false, true}) {
    FrontendConfig config;
    config.persistent_grants = persistent;
    config.first_sector_offset = 2;  // the data starts 1 KiB into its first page
    config.segment_sectors = 4;      // and every segment is one 2 KiB block
    Disk d("failing:ram:16M", config, true, default_options(), props);
    ASSERT_EQ(d.disk->backend().sector_size, 2048u);
    const auto data = frontend::pattern(9, 16, 32, 1);
    EXPECT_EQ(d.disk->write(16, data), ring::kStatusOkay) << (persistent ? "persistent" : "copied");
    std::vector<std::byte> out(32 * 512);
    EXPECT_EQ(d.disk->read(16, out), ring::kStatusOkay);
    EXPECT_EQ(out, data);
    // A segment that is not whole blocks is still refused, as in blkback.
    d.disk->config().segment_sectors = 3;
    EXPECT_EQ(d.disk->write(16, frontend::pattern(9, 16, 12, 2)), ring::kStatusError);
  }
}

// max_list_segments lets contiguous requests merge into lists of up to 4096
// segments, but storage takes at most IOV_MAX (1024) iovecs, and segments
// that end inside their pages never share one: lists must stop short of it.
TEST(BlkbackParity, MergedListsNeverExceedWhatStorageAccepts) {
  auto options = default_options();
  options.vbd.tunables.max_list_segments = 4096;
  options.vbd.bounce_pages_per_queue = 4096;
  for (bool persistent : {false, true}) {
    FrontendConfig config;
    config.persistent_grants = persistent;
    config.segment_sectors = 7;  // 3.5 KiB per segment: one iovec per segment
    Disk d("ram:16M", config, true, options);
    const uint32_t per_request = d.disk->max_request_sectors();  // 256 segments
    ASSERT_EQ(per_request, 256u * 7);
    constexpr unsigned kRequests = 5;  // 1280 segments, contiguous on the disk
    auto run = [&](Kind kind) {
      std::vector<BlkRequest> requests(kRequests);
      for (unsigned i = 0; i < kRequests; ++i) {
        BlkRequest& r = requests[i];
        r.kind = kind;
        r.sector = uint64_t(i) * per_request;
        if (kind == Kind::Write) {
          r.data = frontend::pattern(7, r.sector, per_request, 1);
        } else {
          r.sectors = per_request;
        }
        // Published together, so the worker sees them in one pass and merges them.
        ASSERT_TRUE(d.disk->submit(r, /*last=*/i + 1 == kRequests));
      }
      for (unsigned done = 0; done < kRequests;) {
        auto completions = d.disk->poll(std::chrono::milliseconds(5000));
        ASSERT_FALSE(completions.empty()) << "no completion within 5 s";
        for (auto& c : completions) {
          EXPECT_EQ(c.status, ring::kStatusOkay) << (kind == Kind::Write ? "write" : "read")
                                                 << (persistent ? ", persistent grants" : ", grant copy");
          ++done;
        }
      }
    };
    const uint64_t coalesced_before = d.stats()["coalesced_requests"].get<uint64_t>();
    run(Kind::Write);
    ASSERT_FALSE(HasFatalFailure());
    EXPECT_GE(d.stats()["coalesced_requests"].get<uint64_t>(), coalesced_before + 3)
        << "the writes were merged (the case under test)";
    run(Kind::Read);
    ASSERT_FALSE(HasFatalFailure());
    std::vector<std::byte> out(per_request * 512);
    for (unsigned i = 0; i < kRequests; ++i) {
      ASSERT_EQ(d.disk->read(uint64_t(i) * per_request, out), 0);
      EXPECT_EQ(out, frontend::pattern(7, uint64_t(i) * per_request, per_request, 1)) << "request " << i;
    }
    EXPECT_TRUE(d.disk->violations().empty()) << d.disk->violations().front();
  }
}

}  // namespace
}  // namespace xbb::backendtest
