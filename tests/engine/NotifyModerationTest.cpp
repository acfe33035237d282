// NotifyModeration: when a held event goes out, with the clock in the test's
// hands (microseconds below).
#include <gtest/gtest.h>

#include "backend/engine/NotifyModeration.hpp"

namespace xbb::backend {
namespace {

constexpr uint64_t kUs = 1000;
constexpr uint32_t kBatch = 8;
constexpr uint64_t kMaxDelay = 2000 * kUs;
constexpr uint32_t kDeep = 2 * kBatch;  // outstanding requests that make a queue deep
constexpr uint32_t kShallow = 1;

// A moderation whose frontend has been sending a request every `gap`, up to `now`.
NotifyModeration primed(uint64_t& now, uint64_t gap = 100 * kUs) {
  NotifyModeration m;
  m.configure(kBatch, kMaxDelay);
  for (int i = 0; i < 64; ++i) m.on_requests(now += gap);
  return m;
}

TEST(NotifyModeration, OffSendsEveryEventAtOnce) {
  for (auto [batch, delay] : {std::pair<uint32_t, uint64_t>{0, kMaxDelay}, {1, kMaxDelay}, {kBatch, 0}}) {
    NotifyModeration m;
    m.configure(batch, delay);
    EXPECT_FALSE(m.active());
    EXPECT_TRUE(m.on_publish(true, 1, 32, 1000));
    EXPECT_FALSE(m.on_publish(false, 1, 32, 1001)) << "nobody asked";
    EXPECT_FALSE(m.holding());
  }
}

TEST(NotifyModeration, ResponsesNobodyAskedAboutStartNoHold) {
  uint64_t now = 0;
  auto m = primed(now);
  EXPECT_FALSE(m.on_publish(false, 5, 32, now));
  EXPECT_FALSE(m.holding());
}

TEST(NotifyModeration, ADeepQueueIsHeldUntilABatchWaits) {
  uint64_t now = 0;
  auto m = primed(now);
  EXPECT_FALSE(m.on_publish(true, 3, 32, now));
  EXPECT_TRUE(m.holding());
  EXPECT_FALSE(m.on_publish(false, 4, 32, now + 10 * kUs));
  EXPECT_TRUE(m.on_publish(false, 1, 32, now + 20 * kUs)) << "the 8th response releases the event";
  EXPECT_FALSE(m.holding());
  EXPECT_TRUE(m.engaged());
}

TEST(NotifyModeration, AHoldEndsAtTheMaximumDelayWhileRequestsKeepComing) {
  uint64_t now = 0;
  auto m = primed(now);
  const uint64_t start = now;
  EXPECT_FALSE(m.on_publish(true, 1, kDeep, start));
  while (now + 100 * kUs < start + kMaxDelay) {
    m.on_requests(now += 100 * kUs);
    EXPECT_FALSE(m.due(now + 50 * kUs)) << "requests are still coming at " << (now - start) / kUs << " us";
  }
  EXPECT_TRUE(m.due(start + kMaxDelay));
  EXPECT_FALSE(m.holding());
}

TEST(NotifyModeration, AHoldEndsWhenTheFrontendGoesQuiet) {
  uint64_t now = 0;
  auto m = primed(now);  // a request every 100 us
  EXPECT_FALSE(m.on_publish(true, 1, kDeep, now));
  m.on_requests(now += 100 * kUs);
  EXPECT_FALSE(m.due(now + 190 * kUs)) << "quiet means twice the usual gap";
  EXPECT_TRUE(m.due(now + 201 * kUs));
  EXPECT_FALSE(m.due(now + 300 * kUs)) << "released once";
}

TEST(NotifyModeration, AQueueIsDeepFromTwiceTheBatch) {
  uint64_t now = 0;
  auto m = primed(now);
  EXPECT_TRUE(m.on_publish(true, 1, kDeep - 1, now)) << "one short of deep: at once";
  EXPECT_FALSE(m.on_publish(true, 1, kDeep, now += kUs)) << "deep: held";
  EXPECT_TRUE(m.holding());
}

TEST(NotifyModeration, AShallowQueueGetsItsEventsAtOnceUntilAProbe) {
  uint64_t now = 0;
  auto m = primed(now);
  for (uint32_t i = 1; i < NotifyModeration::kFirstProbeInterval; ++i) {
    EXPECT_TRUE(m.on_publish(true, 1, kShallow, now += 100 * kUs)) << "event " << i;
  }
  EXPECT_FALSE(m.on_publish(true, 1, kShallow, now += 100 * kUs)) << "the probe holds one";
  EXPECT_TRUE(m.holding());
  EXPECT_TRUE(m.due(now + kMaxDelay));
  EXPECT_FALSE(m.engaged()) << "no request came while it was held";
}

TEST(NotifyModeration, AProbeThatSeesRequestsEngages) {
  uint64_t now = 0;
  auto m = primed(now);
  for (uint32_t i = 1; i < NotifyModeration::kFirstProbeInterval; ++i) m.on_publish(true, 1, kShallow, now);
  ASSERT_FALSE(m.on_publish(true, 1, kShallow, now));
  m.on_requests(now += 50 * kUs);  // the frontend kept submitting without the event
  EXPECT_TRUE(m.due(now + kMaxDelay));
  EXPECT_TRUE(m.engaged());
  EXPECT_FALSE(m.on_publish(true, 1, kShallow, now + kMaxDelay + 1)) << "engaged: held at once";
}

TEST(NotifyModeration, TwoFruitlessHoldsInARowDisengage) {
  uint64_t now = 0;
  auto m = primed(now);
  ASSERT_TRUE(m.on_publish(true, kBatch, kDeep, now));  // a full batch engages
  ASSERT_TRUE(m.engaged());
  ASSERT_FALSE(m.on_publish(true, 1, kShallow, now += kUs));
  ASSERT_TRUE(m.due(now += kMaxDelay));
  EXPECT_TRUE(m.engaged()) << "one quiet hold may be a descheduled vCPU";
  ASSERT_FALSE(m.on_publish(true, 1, kShallow, now += kUs));
  ASSERT_TRUE(m.due(now += kMaxDelay));
  EXPECT_FALSE(m.engaged());
  EXPECT_TRUE(m.on_publish(true, 1, kShallow, now += kUs)) << "disengaged: at once";
}

TEST(NotifyModeration, FruitlessProbesComeEverLessOften) {
  uint64_t now = 0;
  auto m = primed(now);
  // Count the events a latency-bound frontend (queue depth 1, never a
  // request while one is held) gets at once between held ones.
  std::vector<uint32_t> gaps;
  uint32_t at_once = 0;
  for (int event = 0; event < 20000 && gaps.size() < 12; ++event) {
    now += 100 * kUs;
    if (m.on_publish(true, 1, kShallow, now)) {
      ++at_once;
      continue;
    }
    ASSERT_TRUE(m.due(now += kMaxDelay));
    gaps.push_back(at_once);
    at_once = 0;
  }
  ASSERT_EQ(gaps.size(), 12u);
  EXPECT_EQ(gaps[0], NotifyModeration::kFirstProbeInterval - 1);
  for (size_t i = 2; i < gaps.size(); ++i) EXPECT_GE(gaps[i], gaps[i - 1]) << "probe " << i;
  EXPECT_EQ(gaps.back(), NotifyModeration::kMaxProbeInterval - 1);
}

TEST(NotifyModeration, FlushSendsWhatIsHeldOnce) {
  uint64_t now = 0;
  auto m = primed(now);
  EXPECT_FALSE(m.flush()) << "nothing held";
  ASSERT_FALSE(m.on_publish(true, 1, kDeep, now));
  EXPECT_TRUE(m.flush());
  EXPECT_FALSE(m.holding());
  EXPECT_FALSE(m.flush());
}

TEST(NotifyModeration, NewSettingsStartDisengaged) {
  uint64_t now = 0;
  auto m = primed(now);
  ASSERT_TRUE(m.on_publish(true, kBatch, kDeep, now));
  ASSERT_TRUE(m.engaged());
  m.configure(kBatch, kMaxDelay);
  EXPECT_FALSE(m.engaged());
}

}  // namespace
}  // namespace xbb::backend
