// Responses in ring order (tunable ordered_responses, on by default), and what
// it is for: a ring adopted after its xbbd was killed (SIGKILL) with requests
// in flight and storage completing them out of order. Every request must then
// be answered exactly once and the disk must hold what the guest was told it
// holds.
//
// The crash test runs xbbd-sim in per-disk mode: the disk's own process is
// SIGKILLed mid-I/O, its supervisor starts a new one, and the new one attaches
// at the published rsp_prod (BACK_RING_ATTACH) and serves from there. With
// XBB_TEST_ORDERED_RESPONSES=0 in the environment it runs with completion
// order instead, and fails: requests answered before the kill are answered
// again and requests in flight at the kill are never answered.
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <string>
#include <thread>

#include "backend/daemon/ControlServer.hpp"
#include "tests/backend/CrossProcessDaemon.hpp"
#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/RandomIo.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::FrontendConfig;
using frontend::VbdSpec;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kDiskBytes = 16ull << 20;
// Storage latency drawn per request from this range: completions come back
// in a different order from submissions.
constexpr const char* kLatencySpread = "rate=0,latency=0us-3ms";

uint64_t stat(DaemonHarness& h, const std::string& name) {
  return h.device_stats("9/51712")["stats"][name].get<uint64_t>();
}

TEST(ResponseOrder, AnswersLeaveInRingOrderWhateverOrderStorageCompletesIn) {
  auto options = default_options();
  options.vbd.fault_injection = true;
  DaemonHarness h(options);
  auto guest = h.world().add_guest(9);
  VbdSpec spec;
  spec.domid = 9;
  h.toolstack().add_vbd(spec);
  FrontendConfig config;
  config.ring_page_order = 0;  // 32 slots, 24 requests in flight
  config.unique_ids = true;
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect());
  auto answer = h.command({{"command", "fault"}, {"device", "9/xvda"}, {"spec", kLatencySpread}});
  ASSERT_TRUE(answer.value("ok", false)) << answer.dump();

  DiskModel model(kDiskBytes / 512);
  auto tally = run_random_io(*disk, model, 600, 24, 31);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  EXPECT_EQ(disk->responses_out_of_ring_order(), 0u);
  const uint64_t held = stat(h, "responses_held_in_order");
  EXPECT_GT(held, 0u) << "storage completed out of order, so some answers had to wait";

  // Completion order on the same storage: answers overtake one another.
  answer = h.command({{"command", "set"}, {"device", "9/xvda"}, {"name", "ordered_responses"}, {"value", "0"}});
  ASSERT_TRUE(answer.value("ok", false)) << answer.dump();
  tally = run_random_io(*disk, model, 600, 24, 32);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  const uint64_t overtaken = disk->responses_out_of_ring_order();
  EXPECT_GT(overtaken, 0u);
  EXPECT_EQ(stat(h, "responses_held_in_order"), held);

  // Back to ring order while requests are in flight: the ring is held until
  // every owed answer is out, then answers leave in ring order again.
  bool switched = false;
  tally = run_random_io(*disk, model, 600, 24, 33, [&](uint64_t completed) {
    if (switched || completed < 100) return;
    switched = true;
    answer = h.command({{"command", "set"}, {"device", "9/xvda"}, {"name", "ordered_responses"}, {"value", "1"}});
    EXPECT_TRUE(answer.value("ok", false)) << answer.dump();
  });
  EXPECT_TRUE(switched);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  EXPECT_GT(stat(h, "responses_held_in_order"), held);
  const uint64_t overtaken_by_switch = disk->responses_out_of_ring_order();
  tally = run_random_io(*disk, model, 300, 24, 34);
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  EXPECT_EQ(disk->responses_out_of_ring_order(), overtaken_by_switch);

  EXPECT_EQ(disk->responses_not_pending(), 0u);
  EXPECT_TRUE(disk->violations().empty()) << disk->violations().front();
  disk->close();
}

bool ordered_responses_under_test() {
  const char* v = std::getenv("XBB_TEST_ORDERED_RESPONSES");
  return v == nullptr || std::string(v) != "0";
}

std::map<std::string, nlohmann::json> per_disk_processes(const CrossProcessDaemon& xbbd) {
  std::map<std::string, nlohmann::json> out;
  auto answer = backend::control_request(xbbd.control_socket(), {{"command", "list"}});
  if (!answer.value("ok", false)) return out;
  for (const auto& d : answer["devices"]) out[d.value("device", "")] = d;
  return out;
}

pid_t pid_of(const CrossProcessDaemon& xbbd, const std::string& device) {
  auto processes = per_disk_processes(xbbd);
  auto it = processes.find(device);
  return it == processes.end() || !it->second.contains("pid") ? -1 : it->second["pid"].get<pid_t>();
}

// Killed twice, at two different moments, each time with a full ring of
// random reads, writes, flushes, barriers and discards in flight whose
// storage latency is spread so that they complete out of order.
TEST(CrashAdoption, EveryRequestInFlightAtASigkillIsAnsweredExactlyOnceAndTheDataHolds) {
  const bool ordered = ordered_responses_under_test();
  TempFile image(kDiskBytes);
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--per-disk", "--max-queues", "1"},
                          std::string("fault-injection = 1\nordered_responses = ") + (ordered ? "1" : "0"),
                          CrossProcessDaemon::Hypervisor::Shared);
  auto guest = xbbd.add_guest(4, 8192);
  VbdSpec spec;
  spec.domid = 4;
  spec.target = image.path();
  xbbd.toolstack().add_vbd(spec);
  FrontendConfig config;
  config.ring_page_order = 0;
  config.unique_ids = true;  // an answer given twice is an id no longer pending, never a later request's
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect()) << xbbd.log();
  const std::string device = "4/51712";

  // Every process serving the disk gets the spread latency (a restarted one
  // starts without it: set it again as soon as it answers).
  auto spread_latency = [&] {
    auto answer = backend::control_request(xbbd.control_socket(),
                                           {{"command", "fault"}, {"device", device}, {"spec", kLatencySpread}});
    return answer.value("ok", false);
  };
  ASSERT_TRUE(spread_latency()) << xbbd.log();

  DiskModel model(kDiskBytes / 512);
  unsigned kills = 0;
  pid_t serving = pid_of(xbbd, device);
  ASSERT_GT(serving, 0) << xbbd.log();
  IoTally tally;
  std::string stalled;
  try {
    tally = run_random_io(*disk, model, 1500, 30, 77, [&](uint64_t completed) {
      // After 300 and 900 completions, with the ring full: kill the disk's process.
      if (kills < 2 && completed >= (kills == 0 ? 300u : 900u) && disk->in_flight() >= 24) {
        ASSERT_EQ(::kill(serving, SIGKILL), 0);
        ++kills;
        const auto deadline = Clock::now() + 20s;
        pid_t next = -1;
        while ((next = pid_of(xbbd, device)) <= 0 || next == serving) {
          ASSERT_LT(Clock::now(), deadline) << "no new process for the disk:\n" << xbbd.log();
          std::this_thread::sleep_for(5ms);
        }
        serving = next;
        while (!spread_latency()) {
          ASSERT_LT(Clock::now(), deadline) << "the new process does not answer:\n" << xbbd.log();
          std::this_thread::sleep_for(5ms);
        }
      }
    });
  } catch (const std::runtime_error& e) {
    stalled = e.what();
  }
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(kills, 2u);
  EXPECT_EQ(stalled, "") << disk->unanswered().size() << " requests in flight at a kill were never answered";
  EXPECT_EQ(disk->responses_not_pending(), 0u) << "requests answered before a kill were answered again";
  for (const auto& v : disk->violations()) ADD_FAILURE() << "violation: " << v;
  EXPECT_EQ(tally.failures, 0u) << tally.first_error;
  EXPECT_TRUE(tally.first_error.empty()) << tally.first_error;

  // The whole disk as the model says, read after the last kill.
  if (stalled.empty()) {
    const uint32_t chunk = 64;
    std::vector<std::byte> buf(chunk * 512);
    for (uint64_t s = 0; s < kDiskBytes / 512; s += chunk) {
      ASSERT_EQ(disk->read(s, buf), 0);
      ASSERT_EQ(model.check(s, buf), "") << "sweep at sector " << s;
    }
  }
  std::printf("crash adoption (%s order): %u kills, %llu reads verified, %llu not pending, %zu unanswered\n",
              ordered ? "ring" : "completion", kills, static_cast<unsigned long long>(tally.reads_verified),
              static_cast<unsigned long long>(disk->responses_not_pending()), disk->unanswered().size());
}

}  // namespace
}  // namespace xbb::backendtest
