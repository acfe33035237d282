// What one guest can do to its worker, and the per-queue caps: a guest that
// storms its ring or its event channel keeps neither its own disk's commands
// (pause, stop) nor another guest's disk from being served, and a guest that
// uses more persistent grants than a queue keeps gets the least recently
// used ones evicted, as Linux blkback does, instead of grant copy forever.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <future>
#include <thread>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/Polling.hpp"
#include "tests/backend/RandomIo.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::FrontendConfig;
using frontend::VbdSpec;
using Clock = std::chrono::steady_clock;

// Only guards against hanging forever when something is broken.
constexpr auto kHangGuard = 20s;

template <class Pred>
bool eventually(Pred done) {
  return poll_until(done, kHangGuard, 5ms);
}

// A storming guest (domain 5) and a well-behaved one (domain 6) on one daemon.
class Storm : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto domid : {xs::DomId{5}, xs::DomId{6}}) {
      VbdSpec spec;
      spec.domid = domid;
      // The storming disk's storage lets the test act at each submit.
      if (domid == 5) spec.target = "failing:ram:16M";
      h_.toolstack().add_vbd(spec);
    }
    FrontendConfig config;
    config.ring_page_order = 0;
    bad_ = bad_guest_->disk(51712, config);
    good_ = good_guest_->disk(51712, config);
    ASSERT_NO_THROW(bad_->connect());
    ASSERT_NO_THROW(good_->connect());
  }
  void TearDown() override {
    end_storm();
    h_.stop();  // no worker may call on_submit once the members it uses are gone
  }

  template <class Fn>
  void start_storm(Fn fn) {
    storm_ = std::thread([this, fn] { produced_ = fn(*bad_, stop_); });
  }
  void end_storm() {
    stop_ = true;
    if (storm_.joinable()) storm_.join();
  }
  nlohmann::json stats(const std::string& device) { return h_.device_stats(device)["stats"]; }
  void good_disk_serves(uint64_t round) {
    for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(good_->write(i * 8, frontend::pattern(6, i * 8, 8, round)), 0);
    std::vector<std::byte> out(8 * 512);
    for (uint64_t i = 0; i < 8; ++i) {
      ASSERT_EQ(good_->read(i * 8, out), 0);
      ASSERT_EQ(out, frontend::pattern(6, i * 8, 8, round));
    }
  }
  // A command for the storming disk, answered however long the worker takes.
  nlohmann::json command_during_storm(const std::string& name) {
    auto answer = std::async(std::launch::async, [&] { return h_.command({{"command", name}, {"device", "5/xvda"}}); });
    if (answer.wait_for(kHangGuard) != std::future_status::ready) {
      end_storm();  // lets the worker off its ring, so that the test can end
      ADD_FAILURE() << name << " was not answered while the guest stormed";
    }
    return answer.get();
  }

  DaemonHarness h_;
  std::unique_ptr<frontend::InProcessGuest> bad_guest_ = h_.world().add_guest(5);
  std::unique_ptr<frontend::InProcessGuest> good_guest_ = h_.world().add_guest(6);
  std::unique_ptr<frontend::SoftBlkfront> bad_, good_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> produced_{0};
  std::mutex storm_mutex_;  // the guest's ring, refilled from the worker's thread and the test's
  std::thread storm_;
};

// A guest that refills its ring as fast as it is answered (valid reads,
// responses never read): its worker still takes a pause, a resume and the
// daemon's stop between two rings' worth of requests. The guest refills from
// the storage's submit, on the worker's own thread, so it is exactly as fast
// as the worker however busy the machine is.
TEST_F(Storm, ARingKeptFullDoesNotKeepTheWorkerFromItsCommands) {
  h_.failures()->set_on_submit([this] {
    std::lock_guard lock(storm_mutex_);
    if (!stop_.load(std::memory_order_relaxed)) produced_ += bad_->storm_requests_once(0);
  });
  {
    std::lock_guard lock(storm_mutex_);
    produced_ += bad_->storm_requests_once(0);  // the first ring's worth; the worker's submits do the rest
  }
  ASSERT_TRUE(eventually([&] {
    return stats("5/51712")["operations"]["read"]["completed"].get<uint64_t>() > 100 * bad_->queue_depth();
  })) << "the storm does not reach the worker";

  auto paused = command_during_storm("pause");
  EXPECT_TRUE(paused.value("ok", false)) << paused.dump();
  EXPECT_EQ(h_.device_stats("5/51712").value("phase", ""), "paused");
  good_disk_serves(1);
  auto resumed = command_during_storm("resume");
  EXPECT_TRUE(resumed.value("ok", false)) << resumed.dump();
  const uint64_t after_resume = stats("5/51712")["operations"]["read"]["completed"].get<uint64_t>();
  ASSERT_TRUE(eventually([&] {
    return stats("5/51712")["operations"]["read"]["completed"].get<uint64_t>() > after_resume + 10 * bad_->queue_depth();
  })) << "the resumed worker does not serve the storm";
  good_disk_serves(2);

  // The daemon's stop (SIGTERM) drains every worker, the storming one too.
  auto stopped = std::async(std::launch::async, [&] { return h_.stop(); });
  if (stopped.wait_for(kHangGuard) != std::future_status::ready) {
    end_storm();
    ADD_FAILURE() << "the daemon did not stop while the guest stormed";
  }
  EXPECT_EQ(stopped.get(), 0);
  end_storm();
  std::printf("request storm: %llu requests queued by the guest\n", static_cast<unsigned long long>(produced_.load()));
}

// A guest that notifies in a loop without queueing anything: after two such
// events in a row its port stays masked for a while, doubling up to a second
// (late EOI), so it wakes its worker a few times instead of keeping it busy;
// its own requests are served once it queues some, and everything else as
// before.
TEST_F(Storm, EventsWithoutRequestsAreBackedOff) {
  const uint64_t woken_before = stats("5/51712")["notifications_received"].get<uint64_t>();
  const auto started = Clock::now();
  start_storm([](frontend::SoftBlkfront& d, const std::atomic<bool>& stop) { return d.storm_events(0, stop); });
  ASSERT_TRUE(eventually([&] { return stats("5/51712")["events_deferred"].get<uint64_t>() >= 8; }))
      << "the storming guest's port is never left masked";
  auto paused = command_during_storm("pause");
  EXPECT_TRUE(paused.value("ok", false)) << paused.dump();
  auto resumed = command_during_storm("resume");
  EXPECT_TRUE(resumed.value("ok", false)) << resumed.dump();
  good_disk_serves(1);
  end_storm();
  const auto storm_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
  const auto s = stats("5/51712");
  const uint64_t woken = s["notifications_received"].get<uint64_t>() - woken_before;
  std::printf("event storm: %llu events in %lld ms woke the worker %llu times (%llu unmasks deferred)\n",
              static_cast<unsigned long long>(produced_.load()), static_cast<long long>(storm_ms),
              static_cast<unsigned long long>(woken), static_cast<unsigned long long>(s["events_deferred"].get<uint64_t>()));
  EXPECT_LT(woken, produced_.load());

  // The guest behaves again: its requests are answered (the first may wait
  // out what is left of a back-off) and the back-off is forgotten.
  ASSERT_EQ(bad_->write(0, frontend::pattern(5, 0, 8, 1)), 0);
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(bad_->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(5, 0, 8, 1));
  EXPECT_TRUE(bad_->violations().empty());
}

// The queue keeps at most persistent-grants-per-queue grants mapped; a
// frontend whose pool is larger gets the least recently used unmapped every
// 100 ms (blkback's purge_persistent_gnt), the data stays right, and every
// grant is unmapped exactly once by the end.
TEST(PersistentGrantCap, TheLeastRecentlyUsedGrantsMakeRoom) {
  auto options = default_options();
  options.vbd.persistent_grants_per_queue = 16;
  DaemonHarness h(options);
  auto guest = h.world().add_guest(7);
  VbdSpec spec;
  spec.domid = 7;
  h.toolstack().add_vbd(spec);
  FrontendConfig config;
  config.ring_page_order = 0;
  config.persistent_grants = true;
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect());
  ASSERT_TRUE(disk->backend().persistent);

  DiskModel model(32768);
  uint64_t most_mapped = 0;
  uint32_t seed = 1;
  ASSERT_TRUE(eventually([&] {
    auto tally = run_random_io(*disk, model, 200, 16, seed++, [&](uint64_t) {
      most_mapped = std::max(most_mapped, h.device_stats("7/51712")["mapped_grant_pages"].get<uint64_t>());
    });
    EXPECT_EQ(tally.failures, 0u) << tally.first_error;
    EXPECT_TRUE(tally.first_error.empty()) << tally.first_error;
    return h.device_stats("7/51712")["stats"]["persistent_grants_purged"].get<uint64_t>() > 16;
  })) << "grants beyond the cap are never evicted";
  EXPECT_LE(most_mapped, 1u + 16u) << "the ring's page and at most 16 grants";
  EXPECT_TRUE(disk->violations().empty()) << disk->violations().front();
  ASSERT_NO_THROW(disk->close());
  EXPECT_EQ(disk->grants_held(), 0u) << "every grant unmapped by the end, none still held by the backend";
}

}  // namespace
}  // namespace xbb::backendtest
