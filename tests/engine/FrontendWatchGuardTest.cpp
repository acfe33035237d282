// The rule that takes a flooding frontend's watch away for a while: only a
// device over the limit, with cool-downs that double while the flood goes on
// and start again from the first after a calm second.
#include <gtest/gtest.h>

#include "backend/daemon/FrontendWatchGuard.hpp"

namespace xbb::backend {
namespace {

using namespace std::chrono_literals;
using Clock = FrontendWatchGuard::Clock;

// Events until the guard says the device is over the limit; 0 if never.
unsigned events_until_flood(FrontendWatchGuard& guard, const std::string& key, Clock::time_point& now,
                            unsigned at_most, std::chrono::milliseconds step) {
  for (unsigned i = 1; i <= at_most; ++i) {
    now += step;
    if (guard.note_events(key, 1, now)) return i;
  }
  return 0;
}

TEST(FrontendWatchGuard, ANormalFrontendIsNeverSuspended) {
  FrontendWatchGuard guard(100, 1000ms, 30000ms);
  Clock::time_point now{};
  // 90 state changes a second for a minute: more than any real frontend.
  EXPECT_EQ(events_until_flood(guard, "3/51712", now, 90 * 60, 11ms), 0u);
  EXPECT_FALSE(guard.next_deadline());
}

TEST(FrontendWatchGuard, SuspendsOnlyTheFloodingDeviceWithDoublingCooldowns) {
  FrontendWatchGuard guard(100, 1000ms, 4000ms);
  Clock::time_point now{};
  ASSERT_EQ(events_until_flood(guard, "3/51712", now, 1000, 1ms), 101u);
  EXPECT_FALSE(guard.note_events("4/51712", 1, now)) << "another device pays for the flood";
  EXPECT_EQ(guard.suspend("3/51712", now), 1000ms);
  EXPECT_TRUE(guard.suspended("3/51712"));
  EXPECT_FALSE(guard.suspended("4/51712"));
  EXPECT_EQ(*guard.next_deadline(), now + 1000ms);
  // Events queued before the watch went are not counted again.
  EXPECT_FALSE(guard.note_events("3/51712", 1, now + 1ms));
  EXPECT_TRUE(guard.resumable(now + 999ms).empty());
  now += 1000ms;
  EXPECT_EQ(guard.resumable(now), std::vector<std::string>{"3/51712"});
  EXPECT_FALSE(guard.suspended("3/51712"));

  // The flood goes on: 2 s, then 4 s, and no more than the longest.
  ASSERT_EQ(events_until_flood(guard, "3/51712", now, 1000, 1ms), 101u);
  EXPECT_EQ(guard.suspend("3/51712", now), 2000ms);
  now += 2000ms;
  ASSERT_EQ(guard.resumable(now).size(), 1u);
  ASSERT_EQ(events_until_flood(guard, "3/51712", now, 1000, 1ms), 101u);
  EXPECT_EQ(guard.suspend("3/51712", now), 4000ms);
  now += 4000ms;
  ASSERT_EQ(guard.resumable(now).size(), 1u);
  ASSERT_EQ(events_until_flood(guard, "3/51712", now, 1000, 1ms), 101u);
  EXPECT_EQ(guard.suspend("3/51712", now), 4000ms);
  now += 4000ms;
  ASSERT_EQ(guard.resumable(now).size(), 1u);

  // A calm second forgives: the next flood starts at the first cool-down.
  now += 100ms;
  EXPECT_FALSE(guard.note_events("3/51712", 1, now));
  now += 1500ms;
  ASSERT_EQ(events_until_flood(guard, "3/51712", now, 1000, 1ms), 101u);
  EXPECT_EQ(guard.suspend("3/51712", now), 1000ms);

  guard.forget("3/51712");
  EXPECT_FALSE(guard.suspended("3/51712"));
  EXPECT_FALSE(guard.next_deadline());
}

}  // namespace
}  // namespace xbb::backend
