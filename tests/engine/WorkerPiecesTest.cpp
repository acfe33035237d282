// The pieces of a queue worker that are not the request path: the barrier
// sequence, the command mailbox and the idle policy's busy-poll budget.
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <map>
#include <thread>

#include "backend/engine/BarrierSequence.hpp"
#include "backend/engine/EventBackoff.hpp"
#include "backend/engine/PersistentGrants.hpp"
#include "backend/engine/IdlePolicy.hpp"
#include "backend/engine/WorkerMailbox.hpp"

namespace xbb::backend {
namespace {

using Step = BarrierSequence::Step;

TEST(BarrierSequence, DrainsFlushesWritesFlushesThenAnswers) {
  BarrierSequence b;
  EXPECT_FALSE(b.active());
  EXPECT_EQ(b.begin(BarrierSequence::barrier(/*has_data=*/true, /*flush=*/true)), Step::Wait);
  EXPECT_TRUE(b.active());
  EXPECT_TRUE(b.draining());
  EXPECT_EQ(b.drained(), Step::Flush);
  EXPECT_FALSE(b.draining());
  EXPECT_EQ(b.drained(), Step::Wait) << "drained() means nothing once the flush is out";
  EXPECT_EQ(b.finished(0), Step::Write);
  EXPECT_EQ(b.finished(4096), Step::Flush);
  EXPECT_TRUE(b.active());
  EXPECT_EQ(b.finished(0), Step::Answer);
  EXPECT_EQ(b.result(), 0);
  EXPECT_FALSE(b.active());
}

TEST(BarrierSequence, WithoutDataOnlyFlushes) {
  BarrierSequence b;
  EXPECT_EQ(b.begin(BarrierSequence::barrier(false, true)), Step::Wait);
  EXPECT_EQ(b.drained(), Step::Flush);
  EXPECT_EQ(b.finished(0), Step::Answer);
  EXPECT_EQ(b.result(), 0);
}

TEST(BarrierSequence, StorageWithoutCacheOnlyWrites) {
  BarrierSequence b;
  b.begin(BarrierSequence::barrier(true, false));
  EXPECT_EQ(b.drained(), Step::Write);
  EXPECT_EQ(b.finished(512), Step::Answer);
  EXPECT_EQ(b.result(), 0);
  b.begin(BarrierSequence::barrier(false, false));
  EXPECT_EQ(b.drained(), Step::Answer) << "nothing to flush, nothing to write";
  EXPECT_FALSE(b.active());
}

TEST(BarrierSequence, TheFirstFailureIsTheAnswer) {
  BarrierSequence b;
  b.begin(BarrierSequence::barrier(true, true));
  ASSERT_EQ(b.drained(), Step::Flush);
  EXPECT_EQ(b.finished(-EIO), Step::Answer) << "no write after a failed flush";
  EXPECT_EQ(b.result(), -EIO);

  b.begin(BarrierSequence::barrier(true, true));
  ASSERT_EQ(b.drained(), Step::Flush);
  ASSERT_EQ(b.finished(0), Step::Write);
  EXPECT_EQ(b.finished(-ENOSPC), Step::Answer) << "no flush after a failed write";
  EXPECT_EQ(b.result(), -ENOSPC);

  b.begin(BarrierSequence::barrier(true, true));
  ASSERT_EQ(b.drained(), Step::Flush);
  ASSERT_EQ(b.finished(0), Step::Write);
  ASSERT_EQ(b.finished(4096), Step::Flush);
  EXPECT_EQ(b.finished(-EIO), Step::Answer);
  EXPECT_EQ(b.result(), -EIO);
}

// Linux blkback's REQ_PREFLUSH write: no drain, a flush, the data, no flush after.
TEST(BarrierSequence, AFlushWithDataFlushesThenWritesWithoutDraining) {
  BarrierSequence b;
  EXPECT_EQ(b.begin(BarrierSequence::flushed_write(/*flush=*/true)), Step::Flush) << "nothing to wait for";
  EXPECT_TRUE(b.active());
  EXPECT_EQ(b.finished(0), Step::Write);
  EXPECT_EQ(b.finished(8192), Step::Answer);
  EXPECT_EQ(b.result(), 0);
  EXPECT_EQ(b.begin(BarrierSequence::flushed_write(/*flush=*/false)), Step::Write) << "no cache: just the write";
  EXPECT_EQ(b.finished(-EIO), Step::Answer);
  EXPECT_EQ(b.result(), -EIO);
}

bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

TEST(WorkerMailbox, TheFirstLookTakesNothingButLooks) {
  WorkerMailbox box;
  EXPECT_TRUE(box.pending()) << "a new worker's first pass looks";
  WorkerMailbox::Commands c;
  EXPECT_TRUE(box.take(c));
  EXPECT_FALSE(c.stop);
  EXPECT_FALSE(c.tunables);
  EXPECT_FALSE(box.pending());
  EXPECT_FALSE(box.take(c));
}

TEST(WorkerMailbox, DeliversStopAndTheLatestTunablesFromAnotherThread) {
  WorkerMailbox box;
  WorkerMailbox::Commands c;
  box.take(c);
  ASSERT_FALSE(readable(box.fd()));
  std::thread control([&] {
    Tunables t;
    t.notify_batch = 4;
    box.post_tunables(t);
    t.notify_batch = 8;
    box.post_tunables(t);
  });
  control.join();
  EXPECT_TRUE(readable(box.fd())) << "a sleeping worker wakes";
  EXPECT_TRUE(box.pending());
  ASSERT_TRUE(box.take(c));
  ASSERT_TRUE(c.tunables);
  EXPECT_EQ(c.tunables->notify_batch, 8u) << "the latest settings win";
  EXPECT_FALSE(c.stop);
  EXPECT_FALSE(readable(box.fd())) << "taking drains the eventfd";
  box.post_stop();
  ASSERT_TRUE(box.take(c));
  EXPECT_TRUE(c.stop);
  EXPECT_FALSE(c.tunables) << "tunables are delivered once";
}

TEST(IdlePolicy, PollsOnlyAfterWorkAndSleepsUntilADeadline) {
  WorkerMailbox box;
  IdlePolicy idle({box.fd()});
  WorkerMailbox::Commands c;
  box.take(c);
  int looks = 0;
  EXPECT_FALSE(idle.poll([&] { return ++looks > 0; }, IdlePolicy::kNoDeadline))
      << "no budget before any work: straight to sleep";
  EXPECT_EQ(looks, 0);
  idle.woke_to_work();
  EXPECT_TRUE(idle.poll([&] { return ++looks >= 3; }, IdlePolicy::kNoDeadline));
  EXPECT_EQ(looks, 3);
  EXPECT_TRUE(idle.poll([] { return false; }, 0)) << "a deadline already past ends the poll as due";

  std::array<epoll_event, 2> events;
  EXPECT_EQ(idle.sleep(events, fast_clock::now_ns()), 0) << "nothing readable: back at the deadline";
  box.post_stop();
  ASSERT_EQ(idle.sleep(events, IdlePolicy::kNoDeadline), 1);
  EXPECT_EQ(events[0].data.fd, box.fd());
}


// Linux's late EOI schedule: the first spurious event is free, then 1 ms,
// 2 ms, ... up to 1 s; any request seen resets it.
TEST(EventBackoff, DoublesFromTheSecondSpuriousEventAndResetsOnARequest) {
  EventBackoff b;
  EXPECT_EQ(b.event_handled(), 0u) << "one event with nothing to do is not a storm";
  EXPECT_EQ(b.event_handled(), 1'000'000u);
  EXPECT_EQ(b.event_handled(), 2'000'000u);
  EXPECT_EQ(b.event_handled(), 4'000'000u);
  for (int i = 0; i < 40; ++i) b.event_handled();
  EXPECT_EQ(b.event_handled(), EventBackoff::kMaxDelayNs) << "capped at a second, however long the storm";
  b.requests_seen();
  EXPECT_EQ(b.event_handled(), 0u) << "an event that found requests";
  EXPECT_EQ(b.spurious_in_a_row(), 0u);
  EXPECT_EQ(b.event_handled(), 0u);
  EXPECT_EQ(b.event_handled(), 1'000'000u);
  b.requests_seen();  // found by polling between two events: the next one is not spurious
  EXPECT_EQ(b.event_handled(), 0u);
}

// A grant table that hands out distinct fake addresses and records unmaps.
class FakeGrants final : public ports::GrantTable {
 public:
  void* map(ports::DomId, std::span<const ports::GrantRef> refs, bool) override {
    void* address = reinterpret_cast<void*>(0x10000 * (refs[0] + 1));
    mapped[address] = refs[0];
    return address;
  }
  int unmap(void* address, size_t) override {
    unmapped.push_back(mapped.at(address));
    mapped.erase(address);
    return 0;
  }
  int copy(std::span<ports::GrantCopySegment>) override { return -ENOSYS; }
  size_t mapped_pages() const override { return mapped.size(); }

  std::map<void*, ports::GrantRef> mapped;
  std::vector<ports::GrantRef> unmapped;
};

TEST(PersistentGrants, FullCacheOverflowsThenThePurgeTakesTheLeastRecentlyUsedIdleOnes) {
  FakeGrants table;
  {
    PersistentGrants cache(table, 3, 4);
    bool failed = false;
    for (ports::GrantRef ref = 1; ref <= 4; ++ref) ASSERT_NE(cache.lookup_or_map(ref, /*now=*/ref * 10, failed), nullptr);
    EXPECT_FALSE(cache.overflowed());
    EXPECT_EQ(cache.lookup_or_map(5, 50, failed), nullptr) << "full: grant copy for this one";
    EXPECT_FALSE(failed);
    EXPECT_TRUE(cache.overflowed());
    cache.lookup_or_map(1, 60, failed);  // 1 is used again: now the most recent
    EXPECT_EQ(cache.purge_count(), 1u) << "5% of 4, at least one";
    // Grants used at or after 30 may belong to a request still in flight.
    EXPECT_EQ(cache.purge(2, /*in_use_since=*/30), 1u) << "only 2 (used at 20) and 3 (30 is in use) qualify: 2";
    EXPECT_EQ(table.unmapped, std::vector<ports::GrantRef>{2});
    EXPECT_FALSE(cache.overflowed());
    EXPECT_EQ(cache.purge(2, 100), 2u);
    std::sort(table.unmapped.begin() + 1, table.unmapped.end());
    EXPECT_EQ(table.unmapped, (std::vector<ports::GrantRef>{2, 3, 4})) << "the least recently used: 3 and 4, not 1 (used at 60)";
    EXPECT_EQ(cache.size(), 1u);
    EXPECT_NE(cache.lookup_or_map(5, 70, failed), nullptr) << "room again";
  }
  EXPECT_TRUE(table.mapped.empty()) << "everything unmapped with the cache";
}

}  // namespace
}  // namespace xbb::backend
