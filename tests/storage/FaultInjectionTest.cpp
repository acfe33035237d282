// FaultInjectionStorage: replayable failures, their rate, per-op selection,
// runtime switching and non-blocking latency.
#include <time.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <set>

#include <gtest/gtest.h>

#include "StorageTestSupport.hpp"
#include "storage/fault/FaultInjection.hpp"
#include "storage/ram/RamStorage.hpp"

namespace xbb::storage::test {
namespace {

std::unique_ptr<FaultInjectionStorage> faulty_ram(const FaultSettings& settings) {
  return std::make_unique<FaultInjectionStorage>(RamStorage::create(1 << 20, "", {}), settings);
}

// Runs `count` requests of `op` one by one; returns the indexes that failed with -EIO.
std::vector<unsigned> failing_requests(StorageQueue& q, IoOp op, unsigned count) {
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  std::vector<unsigned> failed;
  for (unsigned i = 0; i < count; ++i) {
    IoRequest r{op, (i % 256) * 4096ull, op == IoOp::Discard ? 4096u : 0u, &v, 1, i};
    if (op == IoOp::Flush || op == IoOp::Discard) r.iov = nullptr, r.iovcnt = 0;
    const IoCompletion c = run_one(q, r);
    EXPECT_EQ(c.tag, i);
    if (c.result == -EIO)
      failed.push_back(i);
    else
      EXPECT_EQ(c.result, op == IoOp::Read || op == IoOp::Write ? 4096 : 0);
  }
  return failed;
}

TEST(FaultInjection, SameSeedFailsTheSameRequests) {
  const FaultSettings settings{.fail_per_10000 = 500, .seed = 42};
  auto a = faulty_ram(settings), b = faulty_ram(settings);
  auto qa = a->open_queue(4), qb = b->open_queue(4);
  const auto fa = failing_requests(*qa, IoOp::Read, 2000);
  const auto fb = failing_requests(*qb, IoOp::Read, 2000);
  EXPECT_FALSE(fa.empty());
  EXPECT_EQ(fa, fb);
  auto c = faulty_ram({.fail_per_10000 = 500, .seed = 43});
  auto qc = c->open_queue(4);
  EXPECT_NE(failing_requests(*qc, IoOp::Read, 2000), fa) << "another seed fails other requests";
}

TEST(FaultInjection, DecisionIsAPureFunctionOfSeedQueueAndIndex) {
  const FaultSettings s{.fail_per_10000 = 5000, .latency_min_us = 10, .latency_max_us = 20, .seed = 7};
  for (uint64_t k = 0; k < 100; ++k) {
    const auto d1 = decide_fault(s, 1, k, IoOp::Write), d2 = decide_fault(s, 1, k, IoOp::Write);
    EXPECT_EQ(d1.fail, d2.fail);
    EXPECT_EQ(d1.latency_us, d2.latency_us);
    EXPECT_GE(d1.latency_us, 10u);
    EXPECT_LE(d1.latency_us, 20u);
  }
  unsigned differ = 0;
  for (uint64_t k = 0; k < 100; ++k) differ += decide_fault(s, 0, k, IoOp::Write).fail != decide_fault(s, 1, k, IoOp::Write).fail;
  EXPECT_GT(differ, 0u) << "queues draw from different streams";
}

TEST(FaultInjection, RateMatchesTheSetting) {
  for (uint32_t rate : {0u, 100u, 2500u, 10000u}) {
    const FaultSettings s{.fail_per_10000 = rate, .seed = 99};
    unsigned failed = 0;
    constexpr unsigned kTrials = 100000;
    for (uint64_t k = 0; k < kTrials; ++k) failed += decide_fault(s, 0, k, IoOp::Read).fail;
    const double expected = kTrials * (rate / 10000.0);
    // 6 standard deviations of a binomial: deterministic for this seed anyway.
    const double sigma = std::sqrt(kTrials * (rate / 10000.0) * (1 - rate / 10000.0));
    EXPECT_NEAR(failed, expected, 6 * sigma + 0.5) << "rate " << rate;
  }
  // Through a real queue as well.
  auto storage = faulty_ram({.fail_per_10000 = 1000, .seed = 5});
  auto q = storage->open_queue(8);
  const auto failed = failing_requests(*q, IoOp::Write, 3000);
  EXPECT_NEAR(static_cast<double>(failed.size()), 300.0, 6 * std::sqrt(3000 * 0.1 * 0.9));
}

TEST(FaultInjection, OnlySelectedOpsFail) {
  auto storage = faulty_ram({.fail_per_10000 = 10000, .op_mask = FaultSettings::bit(IoOp::Write)});
  auto q = storage->open_queue(4);
  EXPECT_TRUE(failing_requests(*q, IoOp::Read, 50).empty());
  EXPECT_TRUE(failing_requests(*q, IoOp::Flush, 50).empty());
  EXPECT_TRUE(failing_requests(*q, IoOp::Discard, 50).empty());
  EXPECT_EQ(failing_requests(*q, IoOp::Write, 50).size(), 50u);
}

TEST(FaultInjection, FailedWriteDoesNotReachTheDisk) {
  auto storage = faulty_ram({});
  auto q = storage->open_queue(2);
  AlignedBuffer first(4096), second(4096), back(4096);
  fill_pattern(first.span(), 1);
  fill_pattern(second.span(), 2);
  ASSERT_EQ(write_at(*q, 0, first.span()), 4096);
  storage->set_settings({.fail_per_10000 = 10000, .op_mask = FaultSettings::bit(IoOp::Write)});
  EXPECT_EQ(write_at(*q, 0, second.span()), -EIO) << "settings switched at runtime take effect";
  ASSERT_EQ(read_at(*q, 0, back.span()), 4096);
  EXPECT_EQ(std::memcmp(back.data(), first.data(), 4096), 0);
  storage->set_settings({});
  EXPECT_EQ(write_at(*q, 0, second.span()), 4096) << "and can be switched off again";
  EXPECT_EQ(storage->settings(), FaultSettings{});
}

TEST(FaultInjection, InvalidRequestsAreRefusedNotFailed) {
  auto storage = faulty_ram({.fail_per_10000 = 10000});
  auto q = storage->open_queue(1);
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  EXPECT_EQ(q->submit({IoOp::Read, 1 << 20, 0, &v, 1, 1}), -EINVAL);
  EXPECT_EQ(q->in_flight(), 0u);
  ASSERT_EQ(q->submit({IoOp::Read, 0, 0, &v, 1, 2}), 0);
  EXPECT_EQ(q->submit({IoOp::Read, 0, 0, &v, 1, 3}), -EAGAIN) << "capacity is enforced";
  EXPECT_EQ(wait_for(*q, 1).at(0).result, -EIO);
}

uint64_t monotonic_us() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

TEST(FaultInjection, LatencyDelaysCompletionsWithoutBlockingSubmit) {
  // Lower bounds only: a completion must never arrive before its latency.
  auto storage = faulty_ram({.latency_min_us = 150'000, .latency_max_us = 150'000});
  auto q = storage->open_queue(4);
  AlignedBuffer buf(4096);
  iovec v = buf.iov(0, 4096);
  const uint64_t start = monotonic_us();
  for (unsigned i = 0; i < 3; ++i) ASSERT_EQ(q->submit({IoOp::Read, 0, 0, &v, 1, i}), 0);
  q->flush_submissions();
  std::array<IoCompletion, 4> out{};
  const size_t early = q->reap(out);
  const uint64_t after_reap = monotonic_us();
  if (after_reap - start < 150'000) {
    EXPECT_EQ(early, 0u) << "completed before the injected latency";
  }
  const auto done = wait_for(*q, 3 - early);
  EXPECT_GE(monotonic_us() - start, 150'000u);
  EXPECT_EQ(done.size() + early, 3u);
  for (const auto& c : done) EXPECT_EQ(c.result, 4096);

  // Latency applies to failures too, and only to selected ops.
  storage->set_settings({.fail_per_10000 = 10000, .op_mask = FaultSettings::bit(IoOp::Flush),
                         .latency_min_us = 100'000, .latency_max_us = 100'000});
  const uint64_t t0 = monotonic_us();
  EXPECT_EQ(flush(*q), -EIO);
  EXPECT_GE(monotonic_us() - t0, 100'000u);
  EXPECT_EQ(read_at(*q, 0, buf.span()), 4096);
}

TEST(FaultInjection, ManyDelayedRequestsEachCompleteOnce) {
  auto storage = faulty_ram({.latency_min_us = 1, .latency_max_us = 40'000, .seed = 3});
  auto q = storage->open_queue(16);
  AlignedBuffer buf(16 * 4096);
  std::vector<iovec> v(16);
  for (unsigned i = 0; i < 16; ++i) {
    v[i] = buf.iov(i * 4096, 4096);
    ASSERT_EQ(q->submit({IoOp::Write, i * 4096ull, 0, &v[i], 1, i}), 0);
  }
  q->flush_submissions();
  const auto done = wait_for(*q, 16);
  ASSERT_EQ(done.size(), 16u);
  std::set<uint64_t> tags;
  for (const auto& c : done) {
    EXPECT_EQ(c.result, 4096);
    tags.insert(c.tag);
  }
  EXPECT_EQ(tags.size(), 16u) << "each request completes exactly once";
  EXPECT_EQ(q->in_flight(), 0u);
}

}  // namespace
}  // namespace xbb::storage::test
