// Focused tests of the copy-on-write origin and the snapshots it keeps.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/file/FileStorage.hpp"
#include "storage/ram/RamStorage.hpp"
#include "storage/snapshot/SnapshotStorage.hpp"
#include "storage/snapshot/SnapshotStore.hpp"
#include "tests/snapshot/SnapshotTestSupport.hpp"

namespace xbb::storage {
namespace {

using namespace snapshot_test;

constexpr uint64_t kSize = 1 << 20;

std::shared_ptr<CowOriginStorage> ram_origin(uint64_t size = kSize) {
  return CowOriginStorage::create(RamStorage::create(size, "", {}));
}

void write_id(StorageQueue& q, uint64_t offset, uint64_t length, uint64_t id) {
  Buffer b(length);
  fill_sectors(b.span(), offset, id);
  ASSERT_EQ(write_at(q, offset, b.span()), static_cast<int32_t>(length));
}

// Every sector of `ids` in [from, to) bytes has `id`.
::testing::AssertionResult ids_are(const std::vector<uint64_t>& ids, uint64_t from, uint64_t to, uint64_t id) {
  for (uint64_t s = from / kSector; s < to / kSector; ++s)
    if (ids[s] != id) return ::testing::AssertionFailure() << "sector " << s << " has id " << ids[s] << ", not " << id;
  return ::testing::AssertionSuccess();
}

TEST(CowOrigin, PassesIoThroughWithoutSnapshots) {
  auto origin = ram_origin();
  auto q = origin->open_queue(8);
  write_id(*q, 8192, 16384, 5);
  EXPECT_EQ(discard_at(*q, 8192, 4096), 0);
  auto ids = read_ids(*q, kSize);
  EXPECT_TRUE(ids_are(ids, 8192, 12288, 0));
  EXPECT_TRUE(ids_are(ids, 12288, 24576, 5));
  EXPECT_TRUE(ids_are(ids, 0, 8192, 0));
  EXPECT_EQ(origin->describe(), origin->inner().describe());
  // Bad requests are refused at submit like everywhere else.
  Buffer b(100);
  iovec v{b.data(), 100};
  IoRequest bad;
  bad.op = IoOp::Write;
  bad.iov = &v;
  bad.iovcnt = 1;
  EXPECT_EQ(q->submit(bad), -EINVAL);
}

TEST(CowOrigin, SnapshotKeepsThePointInTimeWhileTheOriginMovesOn) {
  TempDir dir;
  auto origin = ram_origin();
  auto q = origin->open_queue(8);
  write_id(*q, 0, kSize, 1);
  auto snap = origin->create_snapshot(dir.file("s.cow"), 65536);
  ASSERT_TRUE(snap->valid());
  EXPECT_EQ(snap->cluster_size(), 65536u);
  EXPECT_EQ(snap->copied_clusters(), 0u);
  write_id(*q, 70 * 1024, 1024, 2);               // partial cluster 1
  write_id(*q, 200 * 1024, 200 * 1024, 3);        // clusters 3..6
  EXPECT_EQ(discard_at(*q, 512 * 1024, 65536), 0);  // a discard destroys data too: cluster 8
  write_id(*q, 70 * 1024, 1024, 4);               // cluster 1 again: already copied
  EXPECT_EQ(snap->copied_clusters(), 1u + 4u + 1u);

  SnapshotStorage view(origin, snap);
  EXPECT_TRUE(view.properties().read_only);
  EXPECT_EQ(view.properties().size_bytes, kSize);
  auto sq = view.open_queue(4);
  EXPECT_TRUE(ids_are(read_ids(*sq, kSize), 0, kSize, 1));
  auto now = read_ids(*q, kSize);
  EXPECT_TRUE(ids_are(now, 70 * 1024, 71 * 1024, 4));
  EXPECT_TRUE(ids_are(now, 200 * 1024, 400 * 1024, 3));
  EXPECT_TRUE(ids_are(now, 512 * 1024, 576 * 1024, 0));
  EXPECT_TRUE(ids_are(now, 0, 70 * 1024, 1));
  // A read straddling copied and uncopied clusters, at an odd sector.
  Buffer part(130 * 1024);
  ASSERT_EQ(read_at(*sq, 60 * 1024 + 512, part.span()), static_cast<int32_t>(part.size()));
  for (uint64_t s = 0; s < part.size() / kSector; ++s)
    ASSERT_EQ(sector_id({part.data() + s * kSector, kSector}, 60 * 1024 + 512 + s * kSector), 1u) << s;
}

TEST(CowOrigin, SnapshotStorageRefusesWritesAndFlushSucceeds) {
  TempDir dir;
  auto origin = ram_origin();
  auto snap = origin->create_snapshot(dir.file("s.cow"), 4096);
  SnapshotStorage view(origin, snap);
  auto sq = view.open_queue(2);
  Buffer b(4096);
  iovec v{b.data(), 4096};
  IoRequest w;
  w.op = IoOp::Write;
  w.iov = &v;
  w.iovcnt = 1;
  EXPECT_EQ(sq->submit(w), -EROFS);
  IoRequest f;
  f.op = IoOp::Flush;
  f.tag = 9;
  EXPECT_EQ(run_one(*sq, f), 0);
  EXPECT_NE(view.describe().find("s.cow"), std::string::npos);
}

TEST(CowOrigin, SeveralSnapshotsEachKeepTheirOwnTime) {
  TempDir dir;
  auto origin = ram_origin();
  auto q = origin->open_queue(8);
  write_id(*q, 0, kSize, 1);
  auto a = origin->create_snapshot(dir.file("a.cow"), 4096);
  write_id(*q, 0, kSize / 2, 2);
  auto b = origin->create_snapshot(dir.file("b.cow"), 65536);
  write_id(*q, 0, kSize, 3);
  EXPECT_EQ(origin->snapshots().size(), 2u);
  EXPECT_EQ(origin->find_snapshot(a->id()), a);
  EXPECT_EQ(origin->find_snapshot(dir.file("b.cow")), b);
  auto qa = SnapshotStorage(origin, a).open_queue(2);
  auto qb = SnapshotStorage(origin, b).open_queue(2);
  EXPECT_TRUE(ids_are(read_ids(*qa, kSize), 0, kSize, 1));
  auto idb = read_ids(*qb, kSize);
  EXPECT_TRUE(ids_are(idb, 0, kSize / 2, 2));
  EXPECT_TRUE(ids_are(idb, kSize / 2, kSize, 1));
  EXPECT_TRUE(ids_are(read_ids(*q, kSize), 0, kSize, 3));
}

TEST(CowOrigin, RejectsBadClusterSizesAndExistingStores) {
  TempDir dir;
  auto origin = ram_origin();
  EXPECT_NE(error_of([&] { origin->create_snapshot(dir.file("x.cow"), 1024); }).find("cluster size"),
            std::string::npos);
  EXPECT_NE(error_of([&] { origin->create_snapshot(dir.file("x.cow"), 65536 + 4096); }).find("cluster size"),
            std::string::npos);
  make_file(dir.file("y.cow"), 10);
  EXPECT_NE(error_of([&] { origin->create_snapshot(dir.file("y.cow")); }).find("already exists"), std::string::npos);
  EXPECT_TRUE(origin->snapshots().empty());
}

TEST(CowOrigin, DeletedSnapshotsStopCopyingAndFailReads) {
  TempDir dir;
  auto origin = ram_origin();
  auto q = origin->open_queue(4);
  auto keep = origin->create_snapshot(dir.file("keep.cow"), 4096);
  auto gone = origin->create_snapshot(dir.file("gone.cow"), 4096);
  auto view = std::make_unique<SnapshotStorage>(origin, gone);
  auto sq = view->open_queue(2);
  EXPECT_TRUE(origin->delete_snapshot(gone->id(), true));
  EXPECT_FALSE(origin->delete_snapshot(gone->id()));
  EXPECT_FALSE(file_exists(dir.file("gone.cow")));
  EXPECT_TRUE(file_exists(dir.file("keep.cow")));
  EXPECT_FALSE(gone->active());
  write_id(*q, 0, 8192, 7);
  EXPECT_EQ(gone->copied_clusters(), 0u);
  EXPECT_EQ(keep->copied_clusters(), 2u);
  Buffer b(4096);
  EXPECT_EQ(read_at(*sq, 0, b.span()), -EIO);
  // A deleted snapshot cannot be presented again.
  EXPECT_NE(error_of([&] { SnapshotStorage(origin, gone); }).find("not an active snapshot"), std::string::npos);
  EXPECT_TRUE(origin->delete_snapshot(dir.file("keep.cow")));  // by path, store kept
  EXPECT_TRUE(file_exists(dir.file("keep.cow")));
}

class StoreFailure : public ::testing::TestWithParam<StoreIo> {};

TEST_P(StoreFailure, InvalidatesTheSnapshotButNeverTheOriginWrite) {
  TempDir dir;
  auto origin = ram_origin();
  auto q = origin->open_queue(4);
  write_id(*q, 0, kSize, 1);
  auto snap = origin->create_snapshot(dir.file("s.cow"), 16384);
  auto healthy = origin->create_snapshot(dir.file("h.cow"), 16384);
  auto sq = SnapshotStorage(origin, snap).open_queue(2);
  write_id(*q, 0, 16384, 2);  // copied fine
  const StoreIo failing = GetParam();
  snap->set_store_fault_hook([failing](StoreIo io) { return io == failing ? -ENOSPC : 0; });
  write_id(*q, 65536, 65536, 3);
  EXPECT_FALSE(snap->valid());
  EXPECT_NE(snap->invalid_reason().find("No space left"), std::string::npos) << snap->invalid_reason();
  write_id(*q, 262144, 4096, 4);  // no more copies are even tried
  Buffer b(4096);
  EXPECT_EQ(read_at(*sq, 0, b.span()), -EIO);
  // The origin has every write, the healthy snapshot the old data.
  auto now = read_ids(*q, kSize);
  EXPECT_TRUE(ids_are(now, 0, 16384, 2));
  EXPECT_TRUE(ids_are(now, 65536, 131072, 3));
  EXPECT_TRUE(ids_are(now, 262144, 266240, 4));
  EXPECT_TRUE(healthy->valid());
  EXPECT_TRUE(ids_are(read_ids(*SnapshotStorage(origin, healthy).open_queue(2), kSize), 0, kSize, 1));
  // The store header says so (the header write itself is not failed here).
  if (failing != StoreIo::HeaderWrite) {
    auto reopened = SnapshotStore::open(dir.file("s.cow"));
    EXPECT_EQ(reopened->header().state, SnapshotHeader::State::Invalid);
  }
}

INSTANTIATE_TEST_SUITE_P(EachStep, StoreFailure,
                         ::testing::Values(StoreIo::DataWrite, StoreIo::Sync, StoreIo::MapWrite));

TEST(CowOrigin, StoreOnAFullFilesystemInvalidatesTheSnapshot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to mount a small tmpfs";
  TempDir dir;
  if (::mount("tmpfs", dir.path().c_str(), "tmpfs", 0, "size=256k") != 0)
    GTEST_SKIP() << "cannot mount a tmpfs: " << std::strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{dir.path()};
  auto origin = ram_origin(4 << 20);
  auto q = origin->open_queue(4);
  write_id(*q, 0, 4 << 20, 1);
  auto snap = origin->create_snapshot(dir.file("s.cow"), 65536);
  for (uint64_t at = 0; at < (4 << 20); at += 65536) write_id(*q, at, 4096, 2);
  EXPECT_FALSE(snap->valid());
  EXPECT_NE(snap->invalid_reason().find("No space left"), std::string::npos) << snap->invalid_reason();
  auto now = read_ids(*q, 4 << 20);
  for (uint64_t at = 0; at < (4 << 20); at += 65536) {
    ASSERT_TRUE(ids_are(now, at, at + 4096, 2));
    ASSERT_TRUE(ids_are(now, at + 4096, at + 65536, 1));
  }
}

TEST(CowOrigin, ConcurrentWritesToOneUncopiedClusterCopyItOnce) {
  TempDir dir;
  auto origin = ram_origin();
  auto q1 = origin->open_queue(4);
  auto q2 = origin->open_queue(4);
  write_id(*q1, 0, kSize, 1);
  auto snap = origin->create_snapshot(dir.file("s.cow"), 65536);
  for (int round = 0; round < 8; ++round) {
    const uint64_t base = static_cast<uint64_t>(round) * 65536;
    std::thread t1([&] { write_id(*q1, base, 4096, 10 + round); });
    std::thread t2([&] { write_id(*q2, base + 32768, 4096, 20 + round); });
    t1.join();
    t2.join();
  }
  EXPECT_EQ(snap->copied_clusters(), 8u);
  EXPECT_TRUE(ids_are(read_ids(*SnapshotStorage(origin, snap).open_queue(2), kSize), 0, kSize, 1));
}

TEST(CowOrigin, CreationFailsCleanlyWhenWritesDoNotDrain) {
  TempDir dir;
  auto origin = ram_origin();
  origin->set_quiesce_timeout(std::chrono::milliseconds(50));
  auto stuck = origin->open_queue(4);
  Buffer b(4096);
  iovec v{b.data(), 4096};
  IoRequest w;
  w.op = IoOp::Write;
  w.iov = &v;
  w.iovcnt = 1;
  w.tag = 77;
  ASSERT_EQ(stuck->submit(w), 0);  // never reaped: this write never drains
  stuck->flush_submissions();
  const std::string error = error_of([&] { origin->create_snapshot(dir.file("s.cow")); });
  EXPECT_NE(error.find("did not drain"), std::string::npos) << error;
  EXPECT_FALSE(file_exists(dir.file("s.cow")));
  EXPECT_TRUE(origin->snapshots().empty());
  // The queue works on, and once it is drained and polled creation succeeds.
  IoCompletion done[2];
  EXPECT_EQ(stuck->reap(done), 1u);
  EXPECT_EQ(done[0].tag, 77u);
  origin->set_quiesce_timeout(std::chrono::milliseconds(5000));
  std::atomic<bool> stop{false};
  std::thread poller([&] {
    while (!stop) {
      IoCompletion c[2];
      stuck->reap(c);
      std::this_thread::yield();
    }
  });
  auto snap = origin->create_snapshot(dir.file("s.cow"));
  stop = true;
  poller.join();
  EXPECT_TRUE(snap->valid());
}

TEST(CowOrigin, SnapshotsSurviveARestartOfAFileOrigin) {
  TempDir dir;
  const std::string image = dir.file("origin.img");
  const std::string store = dir.file("s.cow");
  make_file(image, kSize);
  std::string id;
  {
    auto origin = CowOriginStorage::create(FileStorage::open(image, {}));
    auto q = origin->open_queue(4);
    write_id(*q, 0, kSize, 1);
    id = origin->create_snapshot(store, 16384)->id();
    write_id(*q, 0, kSize / 2, 2);
  }
  {
    auto origin = CowOriginStorage::create(FileStorage::open(image, {}));
    auto snap = origin->attach_snapshot(store);
    EXPECT_EQ(snap->id(), id);
    EXPECT_EQ(origin->attach_snapshot(store), snap);  // already active: the same one
    EXPECT_EQ(snap->copied_clusters(), kSize / 2 / 16384);
    auto q = origin->open_queue(4);
    write_id(*q, kSize / 2, kSize / 2, 3);  // copies the other half now
    EXPECT_TRUE(ids_are(read_ids(*SnapshotStorage(origin, snap).open_queue(2), kSize), 0, kSize, 1));
    auto now = read_ids(*q, kSize);
    EXPECT_TRUE(ids_are(now, 0, kSize / 2, 2));
    EXPECT_TRUE(ids_are(now, kSize / 2, kSize, 3));
  }
  {
    // Written before the snapshot was attached: it can no longer be trusted.
    auto origin = CowOriginStorage::create(FileStorage::open(image, {}));
    auto q = origin->open_queue(4);
    write_id(*q, 0, 4096, 4);
    const std::string error = error_of([&] { origin->attach_snapshot(store); });
    EXPECT_NE(error.find("has been written since"), std::string::npos) << error;
    EXPECT_TRUE(origin->snapshots().empty());
  }
  EXPECT_EQ(SnapshotStore::open(store)->header().state, SnapshotHeader::State::Invalid);
  auto origin = CowOriginStorage::create(FileStorage::open(image, {}));
  EXPECT_NE(error_of([&] { origin->attach_snapshot(store); }).find("is invalid"), std::string::npos);
}

TEST(CowOrigin, AttachRefusesStoresOfAnotherOrigin) {
  TempDir dir;
  auto small = ram_origin(kSize);
  small->create_snapshot(dir.file("s.cow"));
  auto big = ram_origin(2 * kSize);
  EXPECT_NE(error_of([&] { big->attach_snapshot(dir.file("s.cow")); }).find("was taken of"), std::string::npos);
  make_file(dir.file("o.img"), kSize);
  auto other = CowOriginStorage::create(FileStorage::open(dir.file("o.img"), {}));
  EXPECT_NE(error_of([&] { other->attach_snapshot(dir.file("s.cow")); }).find("was taken of"), std::string::npos);
  EXPECT_NE(error_of([&] { other->attach_snapshot(dir.file("none.cow")); }), "");
}

}  // namespace
}  // namespace xbb::storage
