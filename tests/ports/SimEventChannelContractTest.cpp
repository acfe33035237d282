// Contract of ports::EventChannel, checked against the simulated hypervisor:
// binding, notification in both directions, and xenevtchn's pending/unmask
// rules (a delivered port stays masked; events while masked coalesce and are
// delivered once after unmask).
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <system_error>

#include <gtest/gtest.h>

#include "tests/sim/guestmem/SimGuestEvents.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"

namespace xbb::sim {
namespace {

constexpr DomId kGuest = 4;
constexpr DomId kBackend = 0;

// Notifications are synchronous eventfd writes, so readiness is already
// decided when notify() returns: a zero timeout is exact, not a race.
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

class SimEventChannelTest : public ::testing::Test {
 protected:
  SimEventChannelTest()
      : memory_(kGuest, 4), link_(hv_.add_domain(memory_)), guest_(link_), backend_(hv_.open_event_channel()) {}

  // A connected channel: {guest port, backend port}.
  std::pair<EvtchnPort, EvtchnPort> connect() {
    EvtchnPort g = guest_.alloc_unbound(kBackend);
    auto b = backend_->bind_interdomain(kGuest, g);
    EXPECT_TRUE(b.has_value()) << std::strerror(errno);
    return {g, b.value_or(0)};
  }

  SimHypervisor hv_{kBackend};
  SimGuestMemory memory_;
  std::shared_ptr<SimDomainLink> link_;
  SimGuestEvents guest_;
  std::unique_ptr<ports::EventChannel> backend_;
};

TEST_F(SimEventChannelTest, NotificationsFlowBothWays) {
  auto [g, b] = connect();
  EXPECT_FALSE(readable(backend_->fd()));
  EXPECT_FALSE(backend_->pending().has_value());

  ASSERT_EQ(guest_.notify(g), 0);
  EXPECT_TRUE(readable(backend_->fd()));
  EXPECT_FALSE(readable(guest_.fd())) << "the sender is not notified";
  EXPECT_EQ(backend_->pending(), b);
  EXPECT_FALSE(backend_->pending().has_value());
  EXPECT_FALSE(readable(backend_->fd()));
  EXPECT_EQ(backend_->unmask(b), 0);
  EXPECT_FALSE(readable(backend_->fd())) << "unmask alone does not invent an event";

  ASSERT_EQ(backend_->notify(b), 0);
  EXPECT_TRUE(readable(guest_.fd()));
  EXPECT_FALSE(readable(backend_->fd()));
  EXPECT_EQ(guest_.pending(), g);
  EXPECT_EQ(guest_.unmask(g), 0);
  EXPECT_FALSE(guest_.pending().has_value());
}

TEST_F(SimEventChannelTest, EventsWhileMaskedCoalesceAndArriveAfterUnmask) {
  auto [g, b] = connect();
  ASSERT_EQ(guest_.notify(g), 0);
  ASSERT_EQ(backend_->pending(), b);  // now masked

  for (int i = 0; i < 3; ++i) ASSERT_EQ(guest_.notify(g), 0);
  EXPECT_FALSE(readable(backend_->fd())) << "a masked port is not delivered";
  EXPECT_FALSE(backend_->pending().has_value());

  ASSERT_EQ(backend_->unmask(b), 0);
  EXPECT_TRUE(readable(backend_->fd())) << "the events sent while masked are not lost";
  EXPECT_EQ(backend_->pending(), b);
  EXPECT_FALSE(backend_->pending().has_value()) << "three notifications, one delivery";
  ASSERT_EQ(backend_->unmask(b), 0);
  EXPECT_FALSE(readable(backend_->fd()));
}

TEST_F(SimEventChannelTest, OneFdServesEveryBoundPort) {
  auto [g1, b1] = connect();
  auto [g2, b2] = connect();
  auto [g3, b3] = connect();
  EXPECT_NE(b1, b2);
  ASSERT_EQ(guest_.notify(g1), 0);
  ASSERT_EQ(guest_.notify(g3), 0);
  std::set<EvtchnPort> seen;
  while (auto p = backend_->pending()) seen.insert(*p);
  EXPECT_EQ(seen, (std::set<EvtchnPort>{b1, b3}));
  (void)g2;
  (void)b2;
}

TEST_F(SimEventChannelTest, BindRefusesWhatXenRefuses) {
  errno = 0;
  EXPECT_FALSE(backend_->bind_interdomain(/*no such domain*/ 42, 1).has_value());
  EXPECT_EQ(errno, ESRCH);
  errno = 0;
  EXPECT_FALSE(backend_->bind_interdomain(kGuest, /*never allocated*/ 999).has_value());
  EXPECT_EQ(errno, EINVAL);

  EvtchnPort for_other = guest_.alloc_unbound(/*remote=*/3);
  errno = 0;
  EXPECT_FALSE(backend_->bind_interdomain(kGuest, for_other).has_value()) << "port is for domain 3";
  EXPECT_EQ(errno, EINVAL);

  EvtchnPort g = guest_.alloc_unbound(kBackend);
  auto b = backend_->bind_interdomain(kGuest, g);
  ASSERT_TRUE(b.has_value());
  auto other = hv_.open_event_channel();
  EXPECT_FALSE(other->bind_interdomain(kGuest, g).has_value()) << "already bound";

  // Unbinding makes the guest's port bindable again (a backend reconnect).
  EXPECT_EQ(backend_->unbind(*b), 0);
  EXPECT_EQ(backend_->unbind(*b), -EINVAL);
  EXPECT_NE(backend_->notify(*b), 0);
  EXPECT_NE(backend_->unmask(*b), 0);
  auto again = other->bind_interdomain(kGuest, g);
  ASSERT_TRUE(again.has_value());
  ASSERT_EQ(guest_.notify(g), 0);
  EXPECT_EQ(other->pending(), again);
  EXPECT_FALSE(backend_->pending().has_value());
}

TEST_F(SimEventChannelTest, NotificationsBeforeBindAreDropped) {
  EvtchnPort g = guest_.alloc_unbound(kBackend);
  ASSERT_EQ(guest_.notify(g), 0);  // nobody is bound: Xen drops it
  auto b = backend_->bind_interdomain(kGuest, g);
  ASSERT_TRUE(b.has_value());
  EXPECT_FALSE(backend_->pending().has_value());
}

TEST_F(SimEventChannelTest, ClosingHandlesReleasesPorts) {
  EvtchnPort g = guest_.alloc_unbound(kBackend);
  {
    auto handle = hv_.open_event_channel();
    ASSERT_TRUE(handle->bind_interdomain(kGuest, g).has_value());
  }
  EXPECT_TRUE(backend_->bind_interdomain(kGuest, g).has_value())
      << "closing a handle unbinds its ports";

  EXPECT_EQ(guest_.close(g), 0);
  EXPECT_NE(guest_.close(g), 0);
  auto other = hv_.open_event_channel();
  EXPECT_FALSE(other->bind_interdomain(kGuest, g).has_value()) << "a closed guest port is gone";
}

TEST_F(SimEventChannelTest, DestroyedDomainRefusesBindsButNotifyDoesNotFail) {
  auto [g, b] = connect();
  EvtchnPort spare = guest_.alloc_unbound(kBackend);
  ASSERT_TRUE(hv_.remove_domain(kGuest));
  EXPECT_FALSE(backend_->bind_interdomain(kGuest, spare).has_value());
  EXPECT_EQ(backend_->notify(b), 0) << "as on Xen, a send to a dead peer is dropped silently";
  EXPECT_THROW(guest_.alloc_unbound(kBackend), std::system_error);
  EXPECT_EQ(backend_->unbind(b), 0);
  (void)g;
}

}  // namespace
}  // namespace xbb::sim
