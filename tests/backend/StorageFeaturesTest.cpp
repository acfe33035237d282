// The daemon's storage features through its control commands, as xbbctl
// drives them: snapshots of a live disk (taken, served read-only to another
// guest, listed, deleted, re-attached after a daemon restart) and fault
// injection switched at runtime, reproducible from its seed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <vector>

#include <xen/io/blkif.h>

#include "storage/Target.hpp"
#include "storage/snapshot/CowOriginStorage.hpp"
#include "tests/backend/DaemonHarness.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::VbdSpec;
using xs::XenbusState;

class TempDir {
 public:
  TempDir() {
    char dir[] = "/tmp/xbb-features-XXXXXX";
    if (!::mkdtemp(dir)) throw std::runtime_error("mkdtemp");
    path_ = dir;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::vector<std::byte> read_sectors(frontend::SoftBlkfront& disk, uint64_t sector, uint32_t sectors) {
  std::vector<std::byte> out(size_t(sectors) * 512);
  EXPECT_EQ(disk.read(sector, out), BLKIF_RSP_OKAY);
  return out;
}

constexpr uint32_t kXvda = 51712;

TEST(Snapshots, TakenLiveServedToAnotherGuestListedAndDeleted) {
  TempDir dir;
  TempFile origin_file(8 << 20);
  DaemonHarness h;
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.devid = kXvda;
  spec.target = origin_file.path();
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(kXvda);
  ASSERT_NO_THROW(disk->connect());

  const auto before = frontend::pattern(1, 0, 256, 1);
  ASSERT_EQ(disk->write(0, before), BLKIF_RSP_OKAY);
  const std::string store = dir.path() + "/snap.cow";
  auto created = h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", store},
                            {"cluster_size", 16384}});
  ASSERT_TRUE(created.value("ok", false)) << created.dump();
  const std::string id = created["snapshot"]["id"];

  // The origin moves on; the snapshot keeps the moment it was taken.
  const auto after = frontend::pattern(1, 0, 256, 2);
  ASSERT_EQ(disk->write(0, after), BLKIF_RSP_OKAY);
  EXPECT_EQ(read_sectors(*disk, 0, 256), after);

  // Served read-only to another guest through the documented target syntax.
  auto other = h.world().add_guest(4);
  VbdSpec view;
  view.domid = 4;
  view.devid = kXvda;
  view.target = "snapshot:3/xvda:" + store;
  view.writable = false;
  h.toolstack().add_vbd(view);
  auto snap_disk = other->disk(kXvda);
  ASSERT_NO_THROW(snap_disk->connect());
  EXPECT_TRUE(snap_disk->backend().info & VDISK_READONLY);
  EXPECT_EQ(read_sectors(*snap_disk, 0, 256), before);
  EXPECT_NE(snap_disk->write(0, after), BLKIF_RSP_OKAY);

  auto list = h.command({{"command", "snapshot-list"}, {"device", "3/xvda"}});
  ASSERT_TRUE(list.value("ok", false)) << list.dump();
  ASSERT_EQ(list["snapshots"].size(), 1u);
  EXPECT_EQ(list["snapshots"][0]["id"], id);
  EXPECT_EQ(list["snapshots"][0]["valid"], true);
  EXPECT_GT(list["snapshots"][0]["copied_clusters"].get<uint64_t>(), 0u);

  // Refusals are answered with a reason, never a crash.
  auto again = h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", store}});
  EXPECT_FALSE(again.value("ok", true));
  auto relative = h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", "snap.cow"}});
  EXPECT_FALSE(relative.value("ok", true));
  auto nodev = h.command({{"command", "snapshot-create"}, {"device", "9/xvda"}, {"store", store + "2"}});
  EXPECT_FALSE(nodev.value("ok", true));
  auto unknown = h.command({{"command", "snapshot-delete"}, {"device", "3/xvda"}, {"snapshot", "nope"}});
  EXPECT_FALSE(unknown.value("ok", true));

  snap_disk->close();
  ASSERT_TRUE(h.toolstack().remove_vbd(4, kXvda, 10s));
  auto deleted = h.command({{"command", "snapshot-delete"}, {"device", "3/xvda"}, {"snapshot", id},
                            {"delete_store", true}});
  EXPECT_TRUE(deleted.value("ok", false)) << deleted.dump();
  EXPECT_FALSE(std::filesystem::exists(store));
  EXPECT_TRUE(h.command({{"command", "snapshot-list"}})["snapshots"].empty());
  EXPECT_EQ(read_sectors(*disk, 0, 256), after);
}

// The disk goes (a reboot, a detach) while another guest still reads its
// snapshot, and the image is served again to a new domain. It must be served
// through the origin the snapshot still uses: a second origin would attach
// the same store (two writers of one store) and the snapshot's reader would
// miss the copies the new one makes, reading data written after the
// snapshot.
TEST(Snapshots, StayCorrectWhenTheirImageIsServedAgainWhileASnapshotIsRead) {
  TempDir dir;
  TempFile origin_file(8 << 20);
  auto options = default_options();
  options.state_dir = dir.path();
  DaemonHarness h(options);
  auto first = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.target = origin_file.path();
  h.toolstack().add_vbd(spec);
  auto disk = first->disk(kXvda);
  ASSERT_NO_THROW(disk->connect());
  const auto before = frontend::pattern(1, 0, 256, 1);
  ASSERT_EQ(disk->write(0, before), BLKIF_RSP_OKAY);
  const std::string store = dir.path() + "/snap.cow";
  auto created = h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", store},
                            {"cluster_size", 16384}});
  ASSERT_TRUE(created.value("ok", false)) << created.dump();

  auto reader = h.world().add_guest(4);
  VbdSpec view;
  view.domid = 4;
  view.target = "snapshot:3/xvda:" + store;
  view.writable = false;
  h.toolstack().add_vbd(view);
  auto snap_disk = reader->disk(kXvda);
  ASSERT_NO_THROW(snap_disk->connect());
  EXPECT_EQ(read_sectors(*snap_disk, 0, 256), before);

  // The first domain's disk goes; the image comes back for domain 5.
  disk->close();
  ASSERT_TRUE(h.toolstack().remove_vbd(3, kXvda, 10s));
  auto again = h.world().add_guest(5);
  VbdSpec next = spec;
  next.domid = 5;
  h.toolstack().add_vbd(next);
  auto next_disk = again->disk(kXvda);
  ASSERT_NO_THROW(next_disk->connect());
  const auto later = frontend::pattern(5, 0, 256, 9);
  ASSERT_EQ(next_disk->write(0, later), BLKIF_RSP_OKAY);
  EXPECT_EQ(read_sectors(*next_disk, 0, 256), later);
  EXPECT_EQ(read_sectors(*snap_disk, 0, 256), before) << "the snapshot shows data written after it was taken";
  auto list = h.command({{"command", "snapshot-list"}, {"device", "5/xvda"}});
  ASSERT_TRUE(list.value("ok", false)) << list.dump();
  ASSERT_EQ(list["snapshots"].size(), 1u) << list.dump();
  EXPECT_EQ(list["snapshots"][0]["valid"], true) << list.dump();
}

// One origin per image holds for images; two RAM disks with the same
// target text are two stores, even while a snapshot keeps one origin alive.
TEST(Snapshots, TwoRamDisksOfOneSizeAreTwoDisks) {
  TempDir dir;
  auto options = default_options();
  options.state_dir = dir.path();
  DaemonHarness h(options);
  auto first = h.world().add_guest(3);
  auto second = h.world().add_guest(4);
  VbdSpec a;
  a.domid = 3;
  a.target = "ram:8M";
  VbdSpec b = a;
  b.domid = 4;
  h.toolstack().add_vbd(a);
  auto disk_a = first->disk(kXvda);
  ASSERT_NO_THROW(disk_a->connect());
  const auto written_a = frontend::pattern(3, 0, 64, 1);
  ASSERT_EQ(disk_a->write(0, written_a), BLKIF_RSP_OKAY);
  auto created = h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", dir.path() + "/ram.cow"},
                            {"cluster_size", 16384}});
  ASSERT_TRUE(created.value("ok", false)) << created.dump();

  h.toolstack().add_vbd(b);
  auto disk_b = second->disk(kXvda);
  ASSERT_NO_THROW(disk_b->connect());
  EXPECT_EQ(read_sectors(*disk_b, 0, 64), std::vector<std::byte>(64 * 512)) << "a new RAM disk holds another's data";
  const auto written_b = frontend::pattern(4, 0, 64, 2);
  ASSERT_EQ(disk_b->write(0, written_b), BLKIF_RSP_OKAY);
  EXPECT_EQ(read_sectors(*disk_a, 0, 64), written_a) << "a RAM disk shows another disk's writes";
  EXPECT_EQ(read_sectors(*disk_b, 0, 64), written_b);
  // Nor is the first one's snapshot a later one's once the first has gone
  // (the catalog is by target, and a RAM disk starts empty).
  disk_a->close();
  ASSERT_TRUE(h.toolstack().remove_vbd(3, kXvda, 10s));
  auto third = h.world().add_guest(5);
  VbdSpec c = a;
  c.domid = 5;
  h.toolstack().add_vbd(c);
  auto disk_c = third->disk(kXvda);
  ASSERT_NO_THROW(disk_c->connect());
  auto list = h.command({{"command", "snapshot-list"}, {"device", "5/xvda"}});
  ASSERT_TRUE(list.value("ok", false)) << list.dump();
  EXPECT_EQ(list["snapshots"].size(), 0u) << list.dump();
}

// A store is written by one origin at a time: a second origin of the same
// image (another process, say) cannot attach a store the first one holds.
TEST(Snapshots, AStoreHasOneWriter) {
  TempDir dir;
  TempFile origin_file(8 << 20);
  auto a = storage::CowOriginStorage::create(storage::open_target(origin_file.path(), {}));
  const std::string store = dir.path() + "/one.cow";
  a->create_snapshot(store, 16384);
  auto b = storage::CowOriginStorage::create(storage::open_target(origin_file.path(), {}));
  try {
    b->attach_snapshot(store);
    ADD_FAILURE() << "a second origin attached a store the first one writes";
  } catch (const storage::StorageInUse& e) {
    EXPECT_NE(std::string(e.what()).find("in use"), std::string::npos) << e.what();
  }
}

TEST(Snapshots, SurviveADaemonRestart) {
  TempDir dir;
  TempFile origin_file(4 << 20);
  const std::string store = dir.path() + "/keep.cow";
  const auto before = frontend::pattern(2, 64, 128, 1);
  const auto after = frontend::pattern(2, 64, 128, 2);
  auto options = default_options();
  options.state_dir = dir.path();
  {
    DaemonHarness h(options);
    auto guest = h.world().add_guest(3);
    VbdSpec spec;
    spec.domid = 3;
    spec.target = origin_file.path();
    h.toolstack().add_vbd(spec);
    auto disk = guest->disk(spec.devid);
    ASSERT_NO_THROW(disk->connect());
    ASSERT_EQ(disk->write(64, before), BLKIF_RSP_OKAY);
    ASSERT_TRUE(h.command({{"command", "snapshot-create"}, {"device", "3/xvda"}, {"store", store}}).value("ok", false));
    ASSERT_EQ(disk->write(64, after), BLKIF_RSP_OKAY);
    EXPECT_EQ(h.stop(), 0);
  }
  ASSERT_TRUE(std::filesystem::exists(dir.path() + "/snapshots.json"));
  // A new daemon serving the same file re-attaches the store before the
  // origin is written again, and the snapshot still holds the old data.
  DaemonHarness h(options);
  auto guest = h.world().add_guest(3);
  VbdSpec spec;
  spec.domid = 3;
  spec.target = origin_file.path();
  h.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_EQ(disk->write(64, frontend::pattern(2, 64, 128, 3)), BLKIF_RSP_OKAY);
  auto list = h.command({{"command", "snapshot-list"}, {"device", "3/xvda"}});
  ASSERT_EQ(list["snapshots"].size(), 1u) << list.dump();
  EXPECT_EQ(list["snapshots"][0]["valid"], true) << list.dump();

  auto other = h.world().add_guest(5);
  VbdSpec view;
  view.domid = 5;
  view.target = "snapshot:3/xvda:" + store;
  view.writable = false;
  h.toolstack().add_vbd(view);
  auto snap_disk = other->disk(view.devid);
  ASSERT_NO_THROW(snap_disk->connect());
  EXPECT_EQ(read_sectors(*snap_disk, 64, 128), before);
}

// Which of `count` sequential writes fail under `spec`, in a fresh daemon.
std::vector<bool> failing_writes(const std::string& spec, int count) {
  auto options = default_options();
  options.vbd.fault_injection = true;
  DaemonHarness h(options);
  auto guest = h.world().add_guest(3);
  VbdSpec vbd;
  vbd.domid = 3;
  vbd.target = "ram:8M";
  h.toolstack().add_vbd(vbd);
  frontend::FrontendConfig config;
  config.queues = 1;
  auto disk = guest->disk(vbd.devid, config);
  disk->connect();
  auto answer = h.command({{"command", "fault"}, {"device", "3/xvda"}, {"spec", spec}});
  EXPECT_TRUE(answer.value("ok", false)) << answer.dump();
  std::vector<bool> failed;
  for (int i = 0; i < count; ++i) {
    const auto data = frontend::pattern(3, uint64_t(i) * 8, 8, 1);
    failed.push_back(disk->write(uint64_t(i) * 8, data) != BLKIF_RSP_OKAY);
  }
  // Reads were not selected: they all succeed, and a failed write left the old data.
  for (int i = 0; i < count; ++i) {
    auto back = read_sectors(*disk, uint64_t(i) * 8, 8);
    if (failed[i]) {
      EXPECT_NE(back, frontend::pattern(3, uint64_t(i) * 8, 8, 1)) << "a failed write reached the disk";
    } else {
      EXPECT_EQ(back, frontend::pattern(3, uint64_t(i) * 8, 8, 1));
    }
  }
  EXPECT_TRUE(h.command({{"command", "fault"}, {"device", "3/xvda"}, {"spec", "off"}}).value("ok", false));
  EXPECT_EQ(disk->write(0, frontend::pattern(3, 0, 8, 9)), BLKIF_RSP_OKAY);
  return failed;
}

TEST(FaultInjection, SwitchedAtRuntimeAndReproducibleFromItsSeed) {
  const auto first = failing_writes("rate=3000,ops=write,seed=77", 200);
  const auto replay = failing_writes("rate=3000,ops=write,seed=77", 200);
  const auto other_seed = failing_writes("rate=3000,ops=write,seed=78", 200);
  const auto failures = std::count(first.begin(), first.end(), true);
  EXPECT_GT(failures, 20);
  EXPECT_LT(failures, 120);
  EXPECT_EQ(first, replay) << "the same seed must fail the same requests";
  EXPECT_NE(first, other_seed);
}

TEST(FaultInjection, RefusedWhenTheDaemonHasItOffOrTheSpecIsBad) {
  DaemonHarness h;  // fault injection not enabled
  auto guest = h.world().add_guest(3);
  VbdSpec vbd;
  vbd.domid = 3;
  vbd.target = "ram:4M";
  h.toolstack().add_vbd(vbd);
  auto disk = guest->disk(vbd.devid);
  ASSERT_NO_THROW(disk->connect());
  auto off = h.command({{"command", "fault"}, {"device", "3/xvda"}, {"spec", "rate=10"}});
  EXPECT_FALSE(off.value("ok", true));
  EXPECT_NE(off.value("error", "").find("fault-injection"), std::string::npos) << off.dump();

  auto options = default_options();
  options.vbd.fault_injection = true;
  DaemonHarness with(options);
  auto g2 = with.world().add_guest(3);
  with.toolstack().add_vbd(vbd);
  auto d2 = g2->disk(vbd.devid);
  ASSERT_NO_THROW(d2->connect());
  for (const char* bad : {"rate=10001", "rate=x", "ops=scribble", "latency=9-1", "sometimes", ""}) {
    auto answer = with.command({{"command", "fault"}, {"device", "3/xvda"}, {"spec", bad}});
    EXPECT_FALSE(answer.value("ok", true)) << bad;
  }
}

}  // namespace
}  // namespace xbb::backendtest
