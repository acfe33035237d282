// The backing-store file: header format, validation on open, map persistence.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <gtest/gtest.h>

#include "storage/snapshot/SnapshotStore.hpp"
#include "storage/snapshot/SnapshotStoreFormat.hpp"
#include "tests/snapshot/SnapshotTestSupport.hpp"

namespace xbb::storage {
namespace {

using namespace snapshot_test;

TEST(SnapshotHeader, RoundTripsEveryField) {
  SnapshotHeader h = SnapshotHeader::for_origin(10 << 20, 65536, "file:/srv/a.img");
  h.state = SnapshotHeader::State::Invalid;
  h.created_sec = 1700000000;
  h.created_nsec = 123;
  h.uuid = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  h.invalid_reason = "No space left on device";
  std::array<uint8_t, SnapshotHeader::kHeaderSize> raw{};
  encode_snapshot_header(h, raw);
  SnapshotHeader back;
  ASSERT_EQ(decode_snapshot_header(raw, back), "");
  EXPECT_EQ(back.cluster_size, 65536u);
  EXPECT_EQ(back.origin_size, 10u << 20);
  EXPECT_EQ(back.cluster_count, 160u);
  EXPECT_EQ(back.state, SnapshotHeader::State::Invalid);
  EXPECT_EQ(back.created_sec, 1700000000);
  EXPECT_EQ(back.created_nsec, 123u);
  EXPECT_EQ(back.uuid, h.uuid);
  EXPECT_EQ(back.origin_identity, "file:/srv/a.img");
  EXPECT_EQ(back.invalid_reason, "No space left on device");
  EXPECT_EQ(back.uuid_text(), "01020304-0506-0708-090a-0b0c0d0e0f10");
  EXPECT_EQ(back.data_offset % 65536, 0u);
  EXPECT_GE(back.data_offset, back.map_offset + 160 * 8);
}

TEST(SnapshotHeader, RejectsCorruptionWithAReason) {
  SnapshotHeader h = SnapshotHeader::for_origin(1 << 20, 4096, "ram:1M");
  std::array<uint8_t, SnapshotHeader::kHeaderSize> raw{};
  encode_snapshot_header(h, raw);
  SnapshotHeader back;
  auto flipped = raw;
  flipped[30] ^= 1;
  EXPECT_NE(decode_snapshot_header(flipped, back).find("checksum"), std::string::npos);
  auto magic = raw;
  magic[0] = 'Y';
  EXPECT_NE(decode_snapshot_header(magic, back).find("magic"), std::string::npos);
  // A well-formed header with an impossible cluster size.
  SnapshotHeader bad = h;
  bad.cluster_size = 5000;
  encode_snapshot_header(bad, raw);
  EXPECT_NE(decode_snapshot_header(raw, back).find("cluster size"), std::string::npos);
}

// Found by fuzz_snapshot: for an origin size within a cluster of 2^64, the
// cluster count wrapped around to 0, so a header claiming an origin of
// 16 EiB with no clusters and an empty map passed as consistent. A Snapshot
// opened from it would index its bitmap (zero words) with any cluster the
// origin has. The layout must always cover the origin.
TEST(SnapshotHeader, AnOriginSizeWhoseLayoutOverflowsIsRefused) {
  const uint64_t huge = UINT64_MAX - 511;  // the largest multiple of 512
  const SnapshotHeader layout = SnapshotHeader::for_origin(huge, 4096, "x");
  EXPECT_GE(static_cast<unsigned __int128>(layout.cluster_count) * 4096, huge) << "the clusters do not cover the origin";
  SnapshotHeader h = layout;
  h.cluster_count = 0;  // what the wrapped-around computation produced
  h.data_offset = 4096;
  std::array<uint8_t, SnapshotHeader::kHeaderSize> raw{};
  encode_snapshot_header(h, raw);
  SnapshotHeader back;
  EXPECT_NE(decode_snapshot_header(raw, back), "");
  // The true layout is consistent (open() then refuses the file as too short for it).
  encode_snapshot_header(layout, raw);
  ASSERT_EQ(decode_snapshot_header(raw, back), "");
  EXPECT_EQ(back.cluster_count, uint64_t{1} << 52);
}

TEST(SnapshotStore, CreateRefusesBadParametersAndExistingFiles) {
  TempDir dir;
  EXPECT_NE(error_of([&] { SnapshotStore::create(dir.file("a"), "ram:1M", 1 << 20, 3000); }).find("cluster size"),
            std::string::npos);
  EXPECT_NE(error_of([&] { SnapshotStore::create(dir.file("a"), "ram:1M", 1000, 4096); }).find("origin size"),
            std::string::npos);
  EXPECT_FALSE(file_exists(dir.file("a")));
  make_file(dir.file("b"), 100);
  EXPECT_NE(error_of([&] { SnapshotStore::create(dir.file("b"), "ram:1M", 1 << 20, 4096); }).find("already exists"),
            std::string::npos);
  EXPECT_NE(error_of([&] { SnapshotStore::create("/nonexistent-dir/x.cow", "ram:1M", 1 << 20, 4096); }), "");
}

TEST(SnapshotStore, CopiesAndMapSurviveReopen) {
  TempDir dir;
  const std::string path = dir.file("s.cow");
  std::string uuid;
  {
    auto store = SnapshotStore::create(path, "file:/o.img", 1 << 20, 4096);
    uuid = store->header().uuid_text();
    Buffer data(4096);
    fill_sectors(data.span(), 7 * 4096, 42);
    uint64_t at = 0;
    ASSERT_EQ(store->write_cluster(7, data.data(), 4096, at), 0);
    ASSERT_EQ(store->sync(), 0);
    ASSERT_EQ(store->write_map_entry(7, at), 0);
    // Data without a map entry (a crash between the two steps) is not "copied".
    uint64_t orphan = 0;
    ASSERT_EQ(store->write_cluster(9, data.data(), 4096, orphan), 0);
    ASSERT_EQ(store->sync(), 0);
  }
  auto store = SnapshotStore::open(path);
  EXPECT_EQ(store->header().uuid_text(), uuid);
  EXPECT_EQ(store->copied_at_open(), 1u);
  auto bits = store->take_copied_bitmap();
  ASSERT_FALSE(bits.empty());
  EXPECT_EQ(bits[0], uint64_t{1} << 7);
  Buffer back(4096);
  ASSERT_EQ(store->read_copied(7, 0, back.data(), 4096), 0);
  EXPECT_EQ(sector_id({back.data() + 512, 512}, 7 * 4096 + 512), 42u);
  EXPECT_NO_THROW(store->check_origin("file:/o.img", 1 << 20));
  EXPECT_NE(error_of([&] { store->check_origin("file:/other.img", 1 << 20); }).find("was taken of 'file:/o.img'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { store->check_origin("file:/o.img", 2 << 20); }).find("bytes"), std::string::npos);
}

TEST(SnapshotStore, OpenRejectsGarbageAndCorruptMaps) {
  TempDir dir;
  make_file(dir.file("zeros"), 8192);
  EXPECT_NE(error_of([&] { SnapshotStore::open(dir.file("zeros")); }).find("bad magic"), std::string::npos);
  EXPECT_NE(error_of([&] { SnapshotStore::open(dir.file("missing")); }), "");
  const std::string path = dir.file("s.cow");
  { SnapshotStore::create(path, "ram:1M", 1 << 20, 4096); }
  // A map entry pointing into the header.
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  const uint64_t bogus = 4096;
  ASSERT_EQ(::pwrite(fd, &bogus, 8, 4096 + 3 * 8), 8);
  ::close(fd);
  EXPECT_NE(error_of([&] { SnapshotStore::open(path); }).find("corrupt cluster map"), std::string::npos);
}

TEST(SnapshotStore, MarkInvalidIsRecordedInTheHeader) {
  TempDir dir;
  const std::string path = dir.file("s.cow");
  {
    auto store = SnapshotStore::create(path, "ram:1M", 1 << 20, 4096);
    ASSERT_EQ(store->mark_invalid("No space left on device"), 0);
  }
  auto store = SnapshotStore::open(path);
  EXPECT_EQ(store->header().state, SnapshotHeader::State::Invalid);
  EXPECT_EQ(store->header().invalid_reason, "No space left on device");
}

TEST(SnapshotStore, FaultHookFailsTheChosenOperation) {
  TempDir dir;
  auto store = SnapshotStore::create(dir.file("s.cow"), "ram:1M", 1 << 20, 4096);
  store->set_fault_hook([](StoreIo io) { return io == StoreIo::Sync ? -EIO : 0; });
  Buffer data(4096);
  uint64_t at = 0;
  EXPECT_EQ(store->write_cluster(0, data.data(), 4096, at), 0);
  EXPECT_EQ(store->sync(), -EIO);
}

}  // namespace
}  // namespace xbb::storage
