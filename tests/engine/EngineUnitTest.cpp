// Unit tests of the engine's pure pieces: tunables, the daemon's config
// parser, statistics, the bounce-buffer pool and the frontend ring keys.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "backend/engine/BufferPool.hpp"
#include "backend/daemon/DaemonConfig.hpp"
#include "backend/daemon/PostBox.hpp"
#include "backend/engine/FrontendRings.hpp"
#include "backend/engine/LogLimiter.hpp"
#include "backend/engine/Statistics.hpp"
#include "backend/engine/Tunables.hpp"
#include "tests/sim/xenstore/SimStore.hpp"
#include "tests/sim/xenstore/SimXenStore.hpp"

namespace xbb::backend {
namespace {

TEST(Tunables, SetsEveryTunableAndRejectsBadValues) {
  Tunables t;
  EXPECT_FALSE(t.set("no_coalesce_reqs", "1"));
  EXPECT_TRUE(t.no_coalesce_reqs);
  EXPECT_FALSE(t.set("disable_flush", "yes"));
  EXPECT_TRUE(t.disable_flush);
  EXPECT_FALSE(t.set("flush_interval", "8"));
  EXPECT_EQ(t.flush_interval, 8u);
  EXPECT_FALSE(t.set("max_list_segments", "64"));
  EXPECT_EQ(t.max_list_segments, 64u);
  EXPECT_FALSE(t.set("notify_batch", "0"));
  EXPECT_EQ(t.notify_batch, 0u);
  EXPECT_FALSE(t.set("notify_delay_us", "500"));
  EXPECT_EQ(t.notify_delay_us, 500u);
  EXPECT_TRUE(t.ordered_responses) << "crash-safe ring order by default";
  EXPECT_FALSE(t.set("ordered_responses", "0"));
  EXPECT_FALSE(t.ordered_responses);

  const Tunables before = t;
  auto error = t.set("flush_interval", "-1");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("flush_interval"), std::string::npos);
  EXPECT_TRUE(t.set("no_coalesce_reqs", "maybe"));
  EXPECT_TRUE(t.set("max_list_segments", "0"));
  EXPECT_TRUE(t.set("max_list_segments", "99999"));
  EXPECT_TRUE(t.set("notify_batch", "2000"));
  EXPECT_TRUE(t.set("notify_delay_us", "100001"));
  EXPECT_TRUE(t.set("ordered_responses", "2"));
  error = t.set("no_such_tunable", "1");
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("unknown tunable"), std::string::npos);
  EXPECT_EQ(t, before) << "a rejected value must change nothing";
}

TEST(Tunables, ListRoundTripsThroughSet) {
  Tunables t;
  t.no_coalesce_reqs = true;
  t.flush_interval = 3;
  t.ordered_responses = false;
  Tunables copy;
  for (auto& [name, value] : t.list()) EXPECT_FALSE(copy.set(name, value)) << name;
  EXPECT_EQ(copy, t);
}

TEST(DaemonConfig, ParsesSettingsAndTunables) {
  DaemonConfig c;
  EXPECT_FALSE(c.set("max-queues", "4"));
  EXPECT_EQ(c.options.vbd.max_queues, 4u);
  EXPECT_FALSE(c.set("backend-type", "vbd3"));
  EXPECT_EQ(c.options.backend_type, "vbd3");
  EXPECT_FALSE(c.set("persistent-grants", "0"));
  EXPECT_FALSE(c.options.vbd.persistent_grants);
  EXPECT_FALSE(c.set("domain", "7"));
  EXPECT_EQ(c.options.only_domain, std::optional<xs::DomId>(7));
  EXPECT_FALSE(c.set("disable_flush", "1"));
  EXPECT_TRUE(c.options.vbd.tunables.disable_flush);
  // Per-queue caps: ring order and queues above, grants and bounce memory here.
  EXPECT_FALSE(c.set("persistent-grants-per-queue", "64"));
  EXPECT_EQ(c.options.vbd.persistent_grants_per_queue, 64u);
  EXPECT_FALSE(c.set("bounce-pages-per-queue", "512"));
  EXPECT_EQ(c.options.vbd.bounce_pages_per_queue, 512u);
  EXPECT_FALSE(c.set("max-ring-page-order", "2"));
  EXPECT_EQ(c.options.vbd.max_ring_page_order, 2u);

  EXPECT_TRUE(c.set("max-queues", "0"));
  EXPECT_TRUE(c.set("max-ring-page-order", "6"));
  EXPECT_TRUE(c.set("max-indirect-segments", "257"));
  EXPECT_TRUE(c.set("backend-type", "tap"));
  EXPECT_TRUE(c.set("domain", "32752"));  // DOMID_FIRST_RESERVED
  EXPECT_TRUE(c.set("log-level", "loud"));
  EXPECT_TRUE(c.set("persistent-grants-per-queue", "many"));
  EXPECT_TRUE(c.set("bounce-pages-per-queue", "16"));
}

TEST(DaemonConfig, ReportsTheFileAndLineOfABadSetting) {
  char path[] = "/tmp/xbbd-conf-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "# comment\n\nmax-queues = 2   # trailing comment\nno_coalesce_reqs=1\nflush_interval = often\n";
  }
  DaemonConfig c;
  auto error = c.load_file(path);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find(std::string(path) + ":5:"), std::string::npos) << *error;
  EXPECT_EQ(c.options.vbd.max_queues, 2u);
  EXPECT_TRUE(c.options.vbd.tunables.no_coalesce_reqs);
  {
    std::ofstream out(path);
    out << "max-queues 2\n";
  }
  error = c.load_file(path);
  ASSERT_TRUE(error);
  EXPECT_NE(error->find("expected 'name = value'"), std::string::npos);
  std::remove(path);
  EXPECT_TRUE(c.load_file("/nonexistent/xbbd.conf"));
}

TEST(Statistics, SnapshotsSumAndPercentiles) {
  QueueStats q;
  q.received[static_cast<size_t>(StatOp::Read)].add(3);
  q.completed[static_cast<size_t>(StatOp::Read)].add(3);
  q.failed[static_cast<size_t>(StatOp::Write)].add(1);
  q.bytes_read.add(12288);
  for (int i = 0; i < 98; ++i) q.record_latency_ns(3'000);    // 3 us -> bucket [2,4)
  for (int i = 0; i < 2; ++i) q.record_latency_ns(900'000);   // 900 us -> bucket [512,1024)
  StatsSnapshot s = q.snapshot();
  StatsSnapshot total = s;
  total += s;
  EXPECT_EQ(total.total_received(), 6u);
  EXPECT_EQ(total.total_failed(), 2u);
  EXPECT_EQ(total.bytes_read, 24576u);
  EXPECT_EQ(s.latency_percentile_us(50), 4u);
  EXPECT_EQ(s.latency_percentile_us(99), 1024u);
  nlohmann::json j = s;
  EXPECT_EQ(j["operations"]["read"]["completed"], 3);
  EXPECT_EQ(j["bytes_read"], 12288);
  EXPECT_EQ(j["latency_p99_us"], 1024);
  // The exact sum of what was recorded, not of bucket bounds: Prometheus's
  // histogram _sum (xbbctl stats --prometheus) divides it by the count for the mean.
  EXPECT_EQ(s.latency_ns_sum, 98u * 3'000 + 2u * 900'000);
  EXPECT_EQ(total.latency_ns_sum, 2 * s.latency_ns_sum);
  EXPECT_EQ(j["latency_sum_ns"], 98 * 3'000 + 2 * 900'000);
}

TEST(BufferPool, TakesAllOrNothingAndReusesPages) {
  BufferPool pool(8);
  std::array<uint32_t, 6> six{};
  ASSERT_TRUE(pool.take(six));
  EXPECT_EQ(pool.free_pages(), 2u);
  std::array<uint32_t, 3> three{};
  EXPECT_FALSE(pool.take(three));
  EXPECT_EQ(pool.free_pages(), 2u) << "a failed take must not consume pages";
  for (auto p : six) {
    EXPECT_LT(p, 8u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(pool.page(p)) % BufferPool::kPageSize, 0u);
  }
  pool.give(six);
  EXPECT_EQ(pool.free_pages(), 8u);
  std::array<uint32_t, 8> all{};
  EXPECT_TRUE(pool.take(all));
}

class FrontendRingsTest : public ::testing::Test {
 protected:
  std::shared_ptr<sim::SimStore> store = std::make_shared<sim::SimStore>();
  sim::SimXenStore xs{store, 0};
  const std::string fe = "/local/domain/3/device/vbd/51712";
  FrontendLimits limits{5, 4};
  void put(const std::string& key, const std::string& value) { xs.write(xs::kNoTransaction, fe + "/" + key, value); }
  std::string error() {
    auto r = read_frontend_rings(xs, fe, limits);
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "";
  }
};

TEST_F(FrontendRingsTest, SinglePageSingleQueue) {
  put("ring-ref", "8");
  put("event-channel", "5");
  auto r = read_frontend_rings(xs, fe, limits);
  ASSERT_TRUE(std::holds_alternative<FrontendRings>(r)) << std::get<std::string>(r);
  const auto& rings = std::get<FrontendRings>(r);
  EXPECT_EQ(rings.abi, ring::Abi::Native);
  ASSERT_EQ(rings.queues.size(), 1u);
  EXPECT_EQ(rings.queues[0].ring_refs, std::vector<ports::GrantRef>{8});
  EXPECT_EQ(rings.queues[0].event_channel, 5u);
  EXPECT_FALSE(rings.wants_persistent);
}

TEST_F(FrontendRingsTest, MultiPageMultiQueueWithProtocolAndPersistence) {
  put("ring-page-order", "1");
  put("multi-queue-num-queues", "2");
  put("protocol", "x86_32-abi");
  put("feature-persistent", "1");
  for (int q = 0; q < 2; ++q) {
    put("queue-" + std::to_string(q) + "/ring-ref0", std::to_string(10 + q * 2));
    put("queue-" + std::to_string(q) + "/ring-ref1", std::to_string(11 + q * 2));
    put("queue-" + std::to_string(q) + "/event-channel", std::to_string(20 + q));
  }
  auto r = read_frontend_rings(xs, fe, limits);
  ASSERT_TRUE(std::holds_alternative<FrontendRings>(r)) << std::get<std::string>(r);
  const auto& rings = std::get<FrontendRings>(r);
  EXPECT_EQ(rings.abi, ring::Abi::X86_32);
  EXPECT_EQ(rings.ring_page_order, 1u);
  ASSERT_EQ(rings.queues.size(), 2u);
  EXPECT_EQ(rings.queues[1].ring_refs, (std::vector<ports::GrantRef>{12, 13}));
  EXPECT_EQ(rings.queues[1].event_channel, 21u);
  EXPECT_TRUE(rings.wants_persistent);
}

TEST_F(FrontendRingsTest, EveryBadKeyIsNamed) {
  EXPECT_NE(error().find("ring-ref0"), std::string::npos);  // nothing written
  put("ring-ref", "8");
  EXPECT_NE(error().find("event-channel"), std::string::npos);
  put("event-channel", "five");
  EXPECT_NE(error().find("event-channel"), std::string::npos);
  put("event-channel", "5");
  EXPECT_EQ(error(), "");
  put("protocol", "sparc-abi");
  EXPECT_NE(error().find("protocol"), std::string::npos);
  put("protocol", "x86_64-abi");
  put("ring-page-order", "6");
  EXPECT_NE(error().find("ring-page-order"), std::string::npos);
  put("ring-page-order", "0");
  put("multi-queue-num-queues", "5");
  EXPECT_NE(error().find("multi-queue-num-queues"), std::string::npos);
  put("multi-queue-num-queues", "0");
  EXPECT_NE(error().find("multi-queue-num-queues"), std::string::npos);
  put("multi-queue-num-queues", "2");
  EXPECT_NE(error().find("queue-0"), std::string::npos);
}

TEST(LogLimiter, ABurstThenOneLinePerIntervalCountingWhatWasLeftOut) {
  LogLimiter limiter;
  const auto t0 = LogLimiter::Clock::now();
  unsigned allowed = 0;
  for (int i = 0; i < 1000; ++i) allowed += limiter.allow(t0) ? 1 : 0;
  EXPECT_EQ(allowed, LogLimiter::kBurst);
  EXPECT_EQ(limiter.take_suppressed(), 1000u - LogLimiter::kBurst);
  EXPECT_EQ(limiter.take_suppressed(), 0u);
  // Three intervals later, three more lines.
  const auto later = t0 + 3 * LogLimiter::kInterval + std::chrono::milliseconds(1);
  allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limiter.allow(later) ? 1 : 0;
  EXPECT_EQ(allowed, 3u);
  // A long quiet spell refills the burst, never more.
  const auto much_later = later + 1000 * LogLimiter::kInterval;
  allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limiter.allow(much_later) ? 1 : 0;
  EXPECT_EQ(allowed, LogLimiter::kBurst);
}

// A closure that throws (a device's set-up out of memory) is logged; the rest
// of the batch runs, and the loop goes on. After close(), posts are dropped.
TEST(PostBox, AThrowingClosureDoesNotStopTheOthersAndClosedBoxesDrop) {
  PostBox box;
  int ran = 0;
  box.post([&] { ++ran; });
  box.post([] { throw std::bad_alloc(); });
  box.post([&] { ++ran; });
  EXPECT_NO_THROW(box.run());
  EXPECT_EQ(ran, 2);
  box.close();
  box.post([&] { ++ran; });
  box.run();
  EXPECT_EQ(ran, 2);
}

}  // namespace
}  // namespace xbb::backend
