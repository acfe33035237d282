// One contract, three adapters: the in-process simulated store, the same
// store over its unix socket, and the production libxenstore adapter talking
// to that socket. Whatever the daemon relies on is asserted here once.
#include <algorithm>
#include <cerrno>
#include <functional>

#include <gtest/gtest.h>

#include "tests/sim/xenstore/ToolstackLayout.hpp"
#include "tests/xenstore/XenStoreAdapters.hpp"
#include "xenstore/Xenbus.hpp"

namespace xbb::xs::testing {
namespace {

using Access = Permission::Access;

template <class Adapter>
class XenStoreContract : public ::testing::Test {
 protected:
  Adapter adapter;
  std::unique_ptr<XenStore> dom0 = adapter.dom0();

  static int errno_of(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.code().value();
    }
    return 0;
  }
};

struct AdapterNames {
  template <class T>
  static std::string GetName(int) {
    if (std::is_same_v<T, InProcessAdapter>) return "InProcess";
    if (std::is_same_v<T, SocketAdapter>) return "Socket";
    return "Libxenstore";
  }
};

using Adapters = ::testing::Types<InProcessAdapter, SocketAdapter, LibxenstoreAdapter>;
TYPED_TEST_SUITE(XenStoreContract, Adapters, AdapterNames);

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// ------------------------------------------------------------- basic nodes

TYPED_TEST(XenStoreContract, WriteThenReadReturnsTheValueAndCreatesParents) {
  auto& xs = *this->dom0;
  xs.write(kNoTransaction, "/a/b/c", "hello");
  EXPECT_EQ(xs.read(kNoTransaction, "/a/b/c"), "hello");
  EXPECT_EQ(xs.read(kNoTransaction, "/a/b"), "");  // created implicitly, empty
  xs.write(kNoTransaction, "/a/b/c", "again");
  EXPECT_EQ(xs.read(kNoTransaction, "/a/b/c"), "again");
}

TYPED_TEST(XenStoreContract, ValuesAreBytesNotCStrings) {
  const std::string binary("x\0y\xff", 4);
  this->dom0->write(kNoTransaction, "/bin", binary);
  EXPECT_EQ(this->dom0->read(kNoTransaction, "/bin"), binary);
  this->dom0->write(kNoTransaction, "/empty", "");
  EXPECT_EQ(this->dom0->read(kNoTransaction, "/empty"), "");
}

TYPED_TEST(XenStoreContract, MissingNodesReadAsNullopt) {
  EXPECT_EQ(this->dom0->read(kNoTransaction, "/no/such/node"), std::nullopt);
  EXPECT_EQ(this->dom0->directory(kNoTransaction, "/no/such/dir"), std::nullopt);
  EXPECT_EQ(this->errno_of([&] { this->dom0->get_permissions(kNoTransaction, "/no/such"); }), ENOENT);
}

TYPED_TEST(XenStoreContract, DirectoryListsImmediateChildrenOnly) {
  auto& xs = *this->dom0;
  xs.write(kNoTransaction, "/d/x", "1");
  xs.write(kNoTransaction, "/d/y/z", "2");
  xs.write(kNoTransaction, "/d-sibling", "3");  // sorts between "/d" and "/d/..."
  EXPECT_EQ(sorted(*xs.directory(kNoTransaction, "/d")), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(xs.directory(kNoTransaction, "/d/x"), std::vector<std::string>{});
}

TYPED_TEST(XenStoreContract, MkdirCreatesAnEmptyNodeAndIsIdempotent) {
  auto& xs = *this->dom0;
  xs.mkdir(kNoTransaction, "/m/n");
  EXPECT_EQ(xs.read(kNoTransaction, "/m/n"), "");
  xs.write(kNoTransaction, "/m/n", "keep");
  xs.mkdir(kNoTransaction, "/m/n");
  EXPECT_EQ(xs.read(kNoTransaction, "/m/n"), "keep");
}

TYPED_TEST(XenStoreContract, RmIsRecursiveAndAbsentIsNotAnError) {
  auto& xs = *this->dom0;
  xs.write(kNoTransaction, "/r/a/b", "1");
  xs.write(kNoTransaction, "/r-keep", "2");
  xs.rm(kNoTransaction, "/r");
  EXPECT_EQ(xs.read(kNoTransaction, "/r/a/b"), std::nullopt);
  EXPECT_EQ(xs.read(kNoTransaction, "/r"), std::nullopt);
  EXPECT_EQ(xs.read(kNoTransaction, "/r-keep"), "2");
  EXPECT_NO_THROW(xs.rm(kNoTransaction, "/r"));
  EXPECT_NO_THROW(xs.rm(kNoTransaction, "/never/existed/at/all"));
}

TYPED_TEST(XenStoreContract, PermissionsRoundTrip) {
  auto& xs = *this->dom0;
  xs.write(kNoTransaction, "/p", "v");
  const std::vector<Permission> perms{{5, Access::None}, {0, Access::Read}, {7, Access::Both}, {9, Access::Write}};
  xs.set_permissions(kNoTransaction, "/p", perms);
  EXPECT_EQ(xs.get_permissions(kNoTransaction, "/p"), perms);
}

TYPED_TEST(XenStoreContract, InvalidPathsAreRejectedWithEinval) {
  auto& xs = *this->dom0;
  EXPECT_EQ(this->errno_of([&] { xs.write(kNoTransaction, "/bad//path", "x"); }), EINVAL);
  EXPECT_EQ(this->errno_of([&] { xs.write(kNoTransaction, "/trailing/", "x"); }), EINVAL);
  EXPECT_EQ(this->errno_of([&] { xs.read(kNoTransaction, "/sp ace"); }), EINVAL);
  EXPECT_EQ(this->errno_of([&] { xs.rm(kNoTransaction, "/"); }), EINVAL);
}

TYPED_TEST(XenStoreContract, OversizedValuesAreRejected) {
  const std::string huge(5000, 'x');
  EXPECT_NE(this->errno_of([&] { this->dom0->write(kNoTransaction, "/huge", huge); }), 0);
  EXPECT_EQ(this->dom0->read(kNoTransaction, "/huge"), std::nullopt);
}

// ------------------------------------------------------------------ watches

TYPED_TEST(XenStoreContract, WatchFiresOnRegistrationWithTheWatchedPath) {
  auto& xs = *this->dom0;
  xs.watch("/w", "tok");
  auto ev = wait_event(xs);
  ASSERT_TRUE(ev);
  EXPECT_EQ(ev->path, "/w");
  EXPECT_EQ(ev->token, "tok");
  EXPECT_EQ(xs.read_watch(), std::nullopt);
}

TYPED_TEST(XenStoreContract, WatchFiresForEveryChangeInTheSubtreeOnly) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  xs.watch("/w", "tok");
  EventSync sync(xs, *writer);
  ASSERT_EQ(sync.before_registration().size(), 1u);  // the watch's own registration event

  writer->write(kNoTransaction, "/w/a", "1");
  writer->mkdir(kNoTransaction, "/w/b/c");
  writer->write(kNoTransaction, "/w", "self");
  writer->set_permissions(kNoTransaction, "/w/a", {{0, Access::Read}});
  writer->write(kNoTransaction, "/wx", "not below /w");
  writer->write(kNoTransaction, "/other/w", "no");
  writer->rm(kNoTransaction, "/w/a");
  auto events = sync.sync();
  std::vector<std::string> paths;
  for (const auto& e : events) {
    EXPECT_EQ(e.token, "tok");
    paths.push_back(e.path);
  }
  EXPECT_EQ(paths, (std::vector<std::string>{"/w/a", "/w/b/c", "/w", "/w/a", "/w/a"}));
}

TYPED_TEST(XenStoreContract, RemovingAnAncestorFiresWatchesOnDescendants) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  writer->write(kNoTransaction, "/top/mid/leaf", "1");
  xs.watch("/top/mid/leaf", "leaf");
  EventSync sync(xs, *writer);
  writer->rm(kNoTransaction, "/top");
  auto events = sync.sync();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].path, "/top/mid/leaf");
  EXPECT_EQ(events[0].token, "leaf");
}

TYPED_TEST(XenStoreContract, TokensDistinguishWatchesOnTheSamePath) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  xs.watch("/t", "one");
  xs.watch("/t", "two");
  EventSync sync(xs, *writer);
  writer->write(kNoTransaction, "/t/x", "1");
  auto events = sync.sync();
  std::vector<std::string> tokens;
  for (const auto& e : events) {
    EXPECT_EQ(e.path, "/t/x");
    tokens.push_back(e.token);
  }
  EXPECT_EQ(sorted(tokens), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(this->errno_of([&] { xs.watch("/t", "one"); }), EEXIST);
}

TYPED_TEST(XenStoreContract, UnwatchStopsEvents) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  xs.watch("/u", "gone");
  xs.watch("/u", "stays");
  EventSync sync(xs, *writer);
  xs.unwatch("/u", "gone");
  writer->write(kNoTransaction, "/u/x", "1");
  auto events = sync.sync();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].token, "stays");
  EXPECT_NE(this->errno_of([&] { xs.unwatch("/u", "gone"); }), 0);
}

TYPED_TEST(XenStoreContract, SpecialDomainWatchesFire) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  xs.watch("@introduceDomain", "intro");
  xs.watch("@releaseDomain", "release");
  EventSync sync(xs, *writer);
  ASSERT_EQ(sync.before_registration().size(), 2u);
  this->adapter.store->introduce_domain(3);
  this->adapter.store->release_domain(3);
  auto events = sync.sync();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].path, "@introduceDomain");
  EXPECT_EQ(events[0].token, "intro");
  EXPECT_EQ(events[1].path, "@releaseDomain");
  EXPECT_EQ(events[1].token, "release");
}

TYPED_TEST(XenStoreContract, WatchFdIsReadableExactlyWhileEventsAreQueued) {
  auto& xs = *this->dom0;
  xs.watch("/fd", "t");
  pollfd pfd{xs.watch_fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 20000), 1) << "registration event never signalled";
  ASSERT_TRUE(xs.read_watch());
  EXPECT_EQ(xs.read_watch(), std::nullopt);
  EXPECT_EQ(::poll(&pfd, 1, 0), 0) << "still readable with nothing queued";
}

// ------------------------------------------------------------- transactions

TYPED_TEST(XenStoreContract, TransactionChangesAreInvisibleUntilCommit) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  const TxId tx = xs.transaction_start();
  ASSERT_NE(tx, kNoTransaction);
  xs.write(tx, "/tx/a", "1");
  EXPECT_EQ(xs.read(tx, "/tx/a"), "1");
  EXPECT_EQ(other->read(kNoTransaction, "/tx/a"), std::nullopt);
  EXPECT_TRUE(xs.transaction_end(tx, true));
  EXPECT_EQ(other->read(kNoTransaction, "/tx/a"), "1");
}

TYPED_TEST(XenStoreContract, AbortedTransactionLeavesNoTrace) {
  auto& xs = *this->dom0;
  xs.write(kNoTransaction, "/ab/keep", "k");
  const TxId tx = xs.transaction_start();
  xs.write(tx, "/ab/new", "n");
  xs.rm(tx, "/ab/keep");
  EXPECT_TRUE(xs.transaction_end(tx, false));
  EXPECT_EQ(xs.read(kNoTransaction, "/ab/new"), std::nullopt);
  EXPECT_EQ(xs.read(kNoTransaction, "/ab/keep"), "k");
}

TYPED_TEST(XenStoreContract, TransactionSeesASnapshot) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  xs.write(kNoTransaction, "/snap", "before");
  const TxId tx = xs.transaction_start();
  other->write(kNoTransaction, "/snap", "after");
  EXPECT_EQ(xs.read(tx, "/snap"), "before");
  EXPECT_TRUE(xs.transaction_end(tx, false));
}

TYPED_TEST(XenStoreContract, ConflictingCommitFailsAndChangesNothing) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  xs.write(kNoTransaction, "/race/x", "0");
  const TxId tx = xs.transaction_start();
  ASSERT_EQ(xs.read(tx, "/race/x"), "0");
  other->write(kNoTransaction, "/race/x", "other");  // races with the transaction
  xs.write(tx, "/race/y", "derived from x=0");
  EXPECT_FALSE(xs.transaction_end(tx, true));
  EXPECT_EQ(xs.read(kNoTransaction, "/race/y"), std::nullopt);
  EXPECT_EQ(xs.read(kNoTransaction, "/race/x"), "other");
}

TYPED_TEST(XenStoreContract, UnrelatedChangesDoNotConflict) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  xs.write(kNoTransaction, "/iso/a/v", "0");
  xs.write(kNoTransaction, "/iso/b/v", "0");
  const TxId tx = xs.transaction_start();
  ASSERT_EQ(xs.read(tx, "/iso/a/v"), "0");
  xs.write(tx, "/iso/a/v", "1");
  other->write(kNoTransaction, "/iso/b/v", "1");
  EXPECT_TRUE(xs.transaction_end(tx, true));
  EXPECT_EQ(xs.read(kNoTransaction, "/iso/a/v"), "1");
}

TYPED_TEST(XenStoreContract, TwoTransactionsWritingTheSameNodeCannotBothCommit) {
  auto& a = *this->dom0;
  auto b = this->adapter.dom0();
  a.write(kNoTransaction, "/both", "0");
  const TxId ta = a.transaction_start();
  const TxId tb = b->transaction_start();
  a.write(ta, "/both", "a");
  b->write(tb, "/both", "b");
  EXPECT_TRUE(a.transaction_end(ta, true));
  EXPECT_FALSE(b->transaction_end(tb, true));
  EXPECT_EQ(a.read(kNoTransaction, "/both"), "a");
}

TYPED_TEST(XenStoreContract, WatchesFireAtCommitNotBefore) {
  auto& xs = *this->dom0;
  auto writer = this->adapter.dom0();
  xs.watch("/wc", "t");
  EventSync sync(xs, *writer);
  const TxId tx = writer->transaction_start();
  writer->write(tx, "/wc/x", "1");
  EXPECT_TRUE(sync.sync().empty());
  ASSERT_TRUE(writer->transaction_end(tx, true));
  auto events = sync.sync();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].path, "/wc/x");
}

TYPED_TEST(XenStoreContract, WithTransactionRetriesUntilItCommits) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  xs.write(kNoTransaction, "/counter", "0");
  int attempts = 0;
  const uint64_t result = with_transaction(xs, [&](TxId tx) {
    ++attempts;
    const uint64_t v = *read_uint(xs, tx, "/counter");
    if (attempts == 1) other->write(kNoTransaction, "/counter", "10");  // forces one conflict
    xs.write(tx, "/counter", std::to_string(v + 1));
    return v + 1;
  });
  EXPECT_EQ(attempts, 2);
  EXPECT_EQ(result, 11u);
  EXPECT_EQ(xs.read(kNoTransaction, "/counter"), "11");
}

TYPED_TEST(XenStoreContract, WithTransactionGivesUpOnEndlessConflicts) {
  auto& xs = *this->dom0;
  auto other = this->adapter.dom0();
  xs.write(kNoTransaction, "/hot", "0");
  int attempts = 0;
  EXPECT_EQ(this->errno_of([&] {
    with_transaction(
        xs,
        [&](TxId tx) {
          ++attempts;
          xs.read(tx, "/hot");
          other->write(kNoTransaction, "/hot", std::to_string(attempts));
        },
        3);
  }),
            EAGAIN);
  EXPECT_EQ(attempts, 3);
}

TYPED_TEST(XenStoreContract, WithTransactionAbortsWhenTheBodyThrows) {
  auto& xs = *this->dom0;
  EXPECT_THROW(with_transaction(xs,
                                [&](TxId tx) {
                                  xs.write(tx, "/thrown", "x");
                                  throw std::runtime_error("give up");
                                }),
               std::runtime_error);
  EXPECT_EQ(xs.read(kNoTransaction, "/thrown"), std::nullopt);
}

// -------------------------------------------- guests and permissions (libxl)

// A domain with one vbd, laid out as libxl does (see ToolstackLayout.hpp):
// the frontend dir owned by the guest and readable by dom0, the backend dir
// owned by dom0 and readable by the guest.
void make_vbd(XenStore& dom0, DomId d, uint32_t devid) {
  sim::toolstack_prepare_domain(dom0, d);
  sim::VbdSpec spec;
  spec.frontend_domid = d;
  spec.devid = devid;
  spec.params = "/var/lib/xen/guest.img";
  sim::toolstack_add_vbd(dom0, spec);
}

TYPED_TEST(XenStoreContract, GuestWorksInItsFrontendDirectory) {
  make_vbd(*this->dom0, 5, 51712);
  auto guest = this->adapter.guest(5);
  const std::string fe = "/local/domain/5/device/vbd/51712";
  EXPECT_EQ(guest->read(kNoTransaction, fe + "/state"), "1");
  guest->write(kNoTransaction, fe + "/state", "3");
  guest->write(kNoTransaction, fe + "/ring-ref", "8");
  EXPECT_EQ(this->dom0->read(kNoTransaction, fe + "/ring-ref"), "8");
  // A node the guest creates is owned by the guest, readable by dom0.
  EXPECT_EQ(guest->get_permissions(kNoTransaction, fe + "/ring-ref"),
            (std::vector<Permission>{{5, Access::None}, {0, Access::Read}}));
  // Relative paths are relative to the guest's home.
  EXPECT_EQ(guest->read(kNoTransaction, "device/vbd/51712/ring-ref"), "8");
  EXPECT_EQ(guest->read(kNoTransaction, fe + "/missing"), std::nullopt);
}

TYPED_TEST(XenStoreContract, GuestCanReadButNotWriteItsBackend) {
  make_vbd(*this->dom0, 5, 51712);
  auto guest = this->adapter.guest(5);
  const std::string be = "/local/domain/0/backend/vbd/5/51712";
  EXPECT_EQ(guest->read(kNoTransaction, be + "/state"), "1");
  EXPECT_EQ(this->errno_of([&] { guest->write(kNoTransaction, be + "/params", "/etc/shadow"); }), EACCES);
  EXPECT_EQ(this->errno_of([&] { guest->write(kNoTransaction, be + "/new-key", "x"); }), EACCES);
  EXPECT_EQ(this->errno_of([&] { guest->rm(kNoTransaction, be); }), EACCES);
  EXPECT_EQ(this->errno_of([&] { guest->set_permissions(kNoTransaction, be, {{5, Access::Both}}); }), EACCES);
  EXPECT_EQ(this->dom0->read(kNoTransaction, be + "/params"), "/var/lib/xen/guest.img");
  // The backend of another domain is not even visible.
  EXPECT_EQ(this->errno_of([&] { guest->read(kNoTransaction, "/local/domain/0/backend/vbd/6/51712/params"); }),
            EACCES);
}

TYPED_TEST(XenStoreContract, GuestCannotTouchAnotherDomain) {
  make_vbd(*this->dom0, 5, 51712);
  make_vbd(*this->dom0, 6, 51712);
  auto guest = this->adapter.guest(5);
  const std::string fe6 = "/local/domain/6/device/vbd/51712";
  EXPECT_EQ(this->errno_of([&] { guest->read(kNoTransaction, fe6 + "/state"); }), EACCES);
  EXPECT_EQ(this->errno_of([&] { guest->write(kNoTransaction, fe6 + "/state", "5"); }), EACCES);
  EXPECT_EQ(this->errno_of([&] { guest->directory(kNoTransaction, "/local/domain/6"); }), EACCES);
  // Absence is not leaked either: a missing node under an unreadable parent is EACCES.
  EXPECT_EQ(this->errno_of([&] { guest->read(kNoTransaction, "/local/domain/6/nope"); }), EACCES);
  EXPECT_EQ(this->dom0->read(kNoTransaction, fe6 + "/state"), "1");
}

TYPED_TEST(XenStoreContract, GuestCannotCreateDevicesOrGiveNodesAway) {
  make_vbd(*this->dom0, 5, 51712);
  auto guest = this->adapter.guest(5);
  EXPECT_EQ(this->errno_of([&] { guest->write(kNoTransaction, "/local/domain/5/device/vbd/999/state", "1"); }),
            EACCES);
  const std::string fe = "/local/domain/5/device/vbd/51712";
  EXPECT_EQ(this->errno_of([&] { guest->set_permissions(kNoTransaction, fe, {{0, Access::None}}); }), EPERM);
  guest->set_permissions(kNoTransaction, fe + "/state", {{5, Access::Read}});
  EXPECT_EQ(this->dom0->get_permissions(kNoTransaction, fe + "/state"),
            (std::vector<Permission>{{5, Access::Read}}));
}

TYPED_TEST(XenStoreContract, GuestWatchesOnlySeeNodesItMayRead) {
  make_vbd(*this->dom0, 5, 51712);
  make_vbd(*this->dom0, 6, 51712);
  auto guest = this->adapter.guest(5);
  guest->watch("/local/domain/0/backend/vbd/5/51712/state", "mine");
  guest->watch("/local/domain/6", "spy");
  guest->watch("/local/domain/0/backend", "broad");
  EventSync sync(*guest, *this->dom0);
  ASSERT_EQ(sync.before_registration().size(), 3u) << "registration always fires";
  this->dom0->write(kNoTransaction, "/local/domain/6/device/vbd/51712/state", "4");
  this->dom0->write(kNoTransaction, "/local/domain/0/backend/vbd/6/51712/state", "4");
  this->dom0->write(kNoTransaction, "/local/domain/0/backend/vbd/5/51712/state", "2");
  auto events = sync.sync();
  std::vector<std::string> tokens;
  for (const auto& e : events) {
    EXPECT_EQ(e.path, "/local/domain/0/backend/vbd/5/51712/state");
    tokens.push_back(e.token);
  }
  EXPECT_EQ(sorted(tokens), (std::vector<std::string>{"broad", "mine"}));
}

TYPED_TEST(XenStoreContract, GuestRelativeWatchesReportRelativePaths) {
  make_vbd(*this->dom0, 5, 51712);
  auto guest = this->adapter.guest(5);
  guest->watch("device/vbd/51712/state", "rel");
  auto reg = wait_event(*guest);
  ASSERT_TRUE(reg);
  EXPECT_EQ(reg->path, "device/vbd/51712/state");
  EventSync sync(*guest, *this->dom0);
  this->dom0->write(kNoTransaction, "/local/domain/5/device/vbd/51712/state", "5");
  auto events = sync.sync();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].path, "device/vbd/51712/state");
}

}  // namespace
}  // namespace xbb::xs::testing
