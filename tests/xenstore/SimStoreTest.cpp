// SimStore behaviour beyond the shared contract: transaction conflict corner
// cases, connection lifetime and quotas.
#include <poll.h>

#include <cerrno>
#include <functional>

#include <gtest/gtest.h>

#include "tests/sim/xenstore/SimXenStore.hpp"
#include "tests/sim/xenstore/ToolstackLayout.hpp"
#include "xenstore/Xenbus.hpp"

namespace xbb::sim {
namespace {

using xs::kNoTransaction;
using Access = Permission::Access;

int errno_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const xs::Error& e) {
    return e.code().value();
  }
  return 0;
}

class SimStoreTest : public ::testing::Test {
 protected:
  std::shared_ptr<SimStore> store = std::make_shared<SimStore>();
  SimXenStore a{store, 0};
  SimXenStore b{store, 0};
};

TEST_F(SimStoreTest, ReadingAMissingNodeConflictsWithItsCreation) {
  const TxId tx = a.transaction_start();
  EXPECT_EQ(a.read(tx, "/maybe"), std::nullopt);
  b.write(kNoTransaction, "/maybe", "now exists");
  a.write(tx, "/decision", "it was missing");
  EXPECT_FALSE(a.transaction_end(tx, true));
  EXPECT_EQ(a.read(kNoTransaction, "/decision"), std::nullopt);
}

TEST_F(SimStoreTest, ListingADirectoryConflictsWithANewChild) {
  a.mkdir(kNoTransaction, "/dir");
  const TxId tx = a.transaction_start();
  EXPECT_EQ(a.directory(tx, "/dir"), std::vector<std::string>{});
  b.write(kNoTransaction, "/dir/new", "1");
  a.write(tx, "/count", "0");
  EXPECT_FALSE(a.transaction_end(tx, true));
}

TEST_F(SimStoreTest, RemovingASubtreeConflictsWithAConcurrentChild) {
  a.write(kNoTransaction, "/sub/x", "1");
  const TxId tx = a.transaction_start();
  a.rm(tx, "/sub");
  b.write(kNoTransaction, "/sub/y", "2");
  EXPECT_FALSE(a.transaction_end(tx, true));
  EXPECT_EQ(a.read(kNoTransaction, "/sub/y"), "2");
}

TEST_F(SimStoreTest, CommittedRemovalAndCreationApplyExactly) {
  a.write(kNoTransaction, "/t/old/deep", "1");
  const TxId tx = a.transaction_start();
  a.rm(tx, "/t/old");
  a.write(tx, "/t/new/deep", "2");
  a.set_permissions(tx, "/t/new", {{0, Access::Read}});
  ASSERT_TRUE(a.transaction_end(tx, true));
  EXPECT_EQ(b.read(kNoTransaction, "/t/old/deep"), std::nullopt);
  EXPECT_EQ(b.read(kNoTransaction, "/t/old"), std::nullopt);
  EXPECT_EQ(b.read(kNoTransaction, "/t/new/deep"), "2");
  EXPECT_EQ(b.get_permissions(kNoTransaction, "/t/new"), (std::vector<Permission>{{0, Access::Read}}));
  EXPECT_EQ(store->open_transactions(), 0u);
}

TEST_F(SimStoreTest, TransactionsBelongToTheirConnection) {
  const TxId tx = a.transaction_start();
  EXPECT_EQ(errno_of([&] { b.read(tx, "/"); }), EINVAL);
  EXPECT_EQ(errno_of([&] { b.transaction_end(tx, true); }), EINVAL);
  EXPECT_EQ(errno_of([&] { a.read(tx + 1000, "/"); }), EINVAL);
  EXPECT_TRUE(a.transaction_end(tx, true));
  EXPECT_EQ(errno_of([&] { a.transaction_end(tx, true); }), EINVAL) << "already ended";
}

TEST_F(SimStoreTest, ClosingAConnectionAbortsItsTransactions) {
  {
    SimXenStore c(store, 0);
    const TxId tx = c.transaction_start();
    c.write(tx, "/never", "1");
    EXPECT_EQ(store->open_transactions(), 1u);
  }
  EXPECT_EQ(store->open_transactions(), 0u);
  EXPECT_EQ(a.read(kNoTransaction, "/never"), std::nullopt);
}

TEST_F(SimStoreTest, GuestNodesCreatedInATransactionAreOwnedByTheGuest) {
  a.mkdir(kNoTransaction, "/local/domain/4");
  a.set_permissions(kNoTransaction, "/local/domain/4", {{4, Access::None}});
  SimXenStore guest(store, 4);
  const TxId tx = guest.transaction_start();
  guest.write(tx, "data/x/y", "1");
  ASSERT_TRUE(guest.transaction_end(tx, true));
  EXPECT_EQ(a.get_permissions(kNoTransaction, "/local/domain/4/data/x"), (std::vector<Permission>{{4, Access::None}}));
  EXPECT_EQ(a.read(kNoTransaction, "/local/domain/4/data/x/y"), "1");
}

TEST_F(SimStoreTest, GuestWatchQuotaIsEnforced) {
  SimXenStore guest(store, 9);
  int accepted = 0;
  int err = 0;
  while (accepted < 1000 && err == 0) {
    err = errno_of([&] { guest.watch("/q" + std::to_string(accepted), "t"); });
    if (err == 0) ++accepted;
  }
  EXPECT_EQ(err, E2BIG);
  EXPECT_EQ(accepted, 128);
}

TEST_F(SimStoreTest, EventQueueAndEventFdStayInStep) {
  a.watch("/e", "t");
  b.write(kNoTransaction, "/e/1", "x");
  b.write(kNoTransaction, "/e/2", "x");
  pollfd pfd{a.watch_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 1);
  EXPECT_EQ(a.read_watch()->path, "/e");
  EXPECT_EQ(::poll(&pfd, 1, 0), 1);
  EXPECT_EQ(a.read_watch()->path, "/e/1");
  EXPECT_EQ(a.read_watch()->path, "/e/2");
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  b.write(kNoTransaction, "/e/3", "x");
  EXPECT_EQ(::poll(&pfd, 1, 0), 1);
  a.unwatch("/e", "t");  // drops the queued event with the watch
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  EXPECT_EQ(a.read_watch(), std::nullopt);
}

TEST_F(SimStoreTest, SetPermissionsEventsReachWatchersWhoLoseAccess) {
  a.mkdir(kNoTransaction, "/local/domain/3/shared");
  a.set_permissions(kNoTransaction, "/local/domain/3/shared", {{0, Access::None}, {3, Access::Read}});
  SimXenStore guest(store, 3);
  guest.watch("/local/domain/3/shared", "t");
  ASSERT_TRUE(guest.read_watch());  // registration
  a.set_permissions(kNoTransaction, "/local/domain/3/shared", {{0, Access::None}});
  auto ev = guest.read_watch();
  ASSERT_TRUE(ev) << "xenstored reports a permission change to whoever could see the node before";
  EXPECT_EQ(ev->path, "/local/domain/3/shared");
  a.write(kNoTransaction, "/local/domain/3/shared", "secret");
  EXPECT_EQ(guest.read_watch(), std::nullopt);
}

TEST_F(SimStoreTest, ToolstackLayoutMatchesWhatTheBackendChecks) {
  toolstack_prepare_domain(a, 12);
  VbdSpec spec;
  spec.frontend_domid = 12;
  spec.devid = *xs::parse_vdev("xvdb");
  spec.params = "ram:64M";
  spec.mode = "r";
  spec.discard_enable = false;
  const VbdPaths p = toolstack_add_vbd(a, spec);
  EXPECT_EQ(p.backend, "/local/domain/0/backend/vbd/12/51728");
  auto bp = xs::parse_backend_path(p.backend);
  ASSERT_TRUE(bp);
  EXPECT_TRUE(xs::is_expected_frontend(*a.read(kNoTransaction, p.backend + "/frontend"), bp->frontend_domid,
                                       bp->devid, bp->type));
  EXPECT_EQ(xs::read_uint(a, kNoTransaction, p.backend + "/frontend-id"), 12u);
  EXPECT_EQ(a.read(kNoTransaction, p.backend + "/dev"), "xvdb");
  EXPECT_EQ(a.read(kNoTransaction, p.backend + "/mode"), "r");
  EXPECT_EQ(a.read(kNoTransaction, p.backend + "/params"), "ram:64M");
  EXPECT_EQ(xs::read_bool(a, kNoTransaction, p.backend + "/discard-enable"), false);
  EXPECT_EQ(xs::read_state(a, kNoTransaction, p.backend), xs::XenbusState::Initialising);
  EXPECT_EQ(xs::read_state(a, kNoTransaction, p.frontend), xs::XenbusState::Initialising);
  // Everything under the backend dir is dom0's; the guest can only read it.
  EXPECT_EQ(a.get_permissions(kNoTransaction, p.backend + "/params"),
            (std::vector<Permission>{{0, Access::None}, {12, Access::Read}}));
  EXPECT_EQ(a.get_permissions(kNoTransaction, p.frontend + "/state"),
            (std::vector<Permission>{{12, Access::None}, {0, Access::Read}}));

  spec.backend_type = "vbd3";
  const VbdPaths tap = toolstack_add_vbd(a, spec);
  EXPECT_EQ(tap.backend, "/local/domain/0/backend/vbd3/12/51728");
  EXPECT_EQ(tap.frontend, p.frontend) << "vbd3 disks still have a device/vbd frontend";

  toolstack_remove_vbd(a, p);
  EXPECT_EQ(a.read(kNoTransaction, p.backend), std::nullopt);
  EXPECT_EQ(a.read(kNoTransaction, p.frontend), std::nullopt);
}

}  // namespace
}  // namespace xbb::sim
