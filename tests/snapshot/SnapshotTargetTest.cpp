// "snapshot:ORIGIN:STORE" targets and the origin registry.
#include <gtest/gtest.h>

#include "storage/snapshot/CowOriginRegistry.hpp"
#include "storage/snapshot/CowOriginStorage.hpp"
#include "storage/file/FileStorage.hpp"
#include "storage/snapshot/SnapshotTarget.hpp"
#include "storage/Target.hpp"
#include "tests/snapshot/SnapshotTestSupport.hpp"

namespace xbb::storage {
namespace {

using namespace snapshot_test;

TEST(SnapshotTarget, OpensASnapshotOfARegisteredOrigin) {
  TempDir dir;
  make_file(dir.file("o.img"), 1 << 20);
  const std::string store = dir.file("s.cow");
  {
    auto origin = CowOriginStorage::create(FileStorage::open(dir.file("o.img"), {}));
    origin->create_snapshot(store, 4096);
    auto q = origin->open_queue(2);
    Buffer b(8192);
    fill_sectors(b.span(), 0, 9);
    ASSERT_EQ(write_at(*q, 0, b.span()), 8192);
  }
  // A fresh daemon: the target attaches the store itself.
  auto origin = CowOriginStorage::create(FileStorage::open(dir.file("o.img"), {}));
  OriginRegistry::instance().add("3/xvda", origin);
  auto view = open_target("snapshot:3/xvda:" + store, {});
  EXPECT_TRUE(view->properties().read_only);
  ASSERT_EQ(origin->snapshots().size(), 1u);
  auto q = view->open_queue(2);
  auto ids = read_ids(*q, 1 << 20);
  for (uint64_t id : ids) ASSERT_EQ(id, 0u);
  // Opening again uses the active snapshot.
  auto again = open_target("snapshot:3/xvda:" + store, {});
  EXPECT_EQ(origin->snapshots().size(), 1u);
  OriginRegistry::instance().remove("3/xvda");
}

TEST(SnapshotTarget, ExplainsBadTargets) {
  EXPECT_NE(error_of([] { open_target("snapshot:3/xvda", {}); }).find("ORIGIN:STORE"), std::string::npos);
  EXPECT_NE(error_of([] { open_target("snapshot::/x.cow", {}); }).find("ORIGIN:STORE"), std::string::npos);
  EXPECT_NE(error_of([] { open_target("snapshot:9/xvdz:/x.cow", {}); }).find("not a disk this daemon serves"),
            std::string::npos);
}

TEST(OriginRegistry, HoldsOriginsWeakly) {
  auto& registry = OriginRegistry::instance();
  {
    TempDir dir;
    make_file(dir.file("o.img"), 1 << 20);
    auto origin = CowOriginStorage::create(FileStorage::open(dir.file("o.img"), {}));
    registry.add("7/xvdb", origin);
    EXPECT_EQ(registry.find("7/xvdb"), origin);
  }
  EXPECT_EQ(registry.find("7/xvdb"), nullptr);
  registry.remove("7/xvdb");
  EXPECT_EQ(registry.find("never"), nullptr);
}

}  // namespace
}  // namespace xbb::storage
