// The whole daemon across process boundaries, as in production: a guest that
// is a separate process and gets SIGKILLed mid-I/O, and xbbd itself as a
// separate process (xbbd-sim) that is stopped with a real SIGTERM while
// writes are in flight and inspected with the real xbbctl binary.
#include <dirent.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "backend/daemon/ControlServer.hpp"
#include "backend/engine/DescriptorBudget.hpp"
#include "tests/backend/CrossProcessChild.hpp"
#include "tests/backend/CrossProcessDaemon.hpp"
#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/Polling.hpp"
#include "tests/frontend/Pattern.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"

namespace xbb::backendtest {
namespace {

using frontend::BlkCompletion;
using frontend::BlkRequest;
using frontend::VbdSpec;
using xs::XenbusState;
using Clock = std::chrono::steady_clock;

// Only guards against hanging forever when something is broken; nothing here
// depends on how fast anything is.
constexpr auto kHangGuard = 20s;

size_t open_fds() { return count_dir_entries("/proc/self/fd") - 1; }  // minus opendir's own
size_t threads() { return count_dir_entries("/proc/self/task"); }

// Inodes of the simulated guests' memory memfds mapped into this process.
std::set<unsigned long> mapped_guest_memory() {
  std::set<unsigned long> inodes;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("memfd:xbb-sim-guest-memory") == std::string::npos) continue;
    std::istringstream fields(line);
    std::string range, perms, offset, device;
    unsigned long inode = 0;
    if (fields >> range >> perms >> offset >> device >> inode) inodes.insert(inode);
  }
  return inodes;
}

// Polls `done` until it holds or kHangGuard passes.
template <class Pred>
bool eventually(Pred done) {
  return poll_until(done, kHangGuard, 10ms);
}

class CrossProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/xbb-xproc-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    for (const char* name : {"store.sock", "broker.sock"}) ::unlink((dir_ + "/" + name).c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_;
};

// Verified rounds of I/O by an in-process guest on its own thread, until stopped.
class BackgroundVerifier {
 public:
  BackgroundVerifier(frontend::SoftBlkfront& disk, xs::DomId writer) : thread_([this, &disk, writer] {
    for (uint64_t generation = 1; !stop_; ++generation) {
      for (uint64_t i = 0; i < 8; ++i) {
        if (disk.write(i * 8, frontend::pattern(writer, i * 8, 8, generation)) != 0) {
          failure_ = "write failed in round " + std::to_string(generation);
          failed_ = true;
          return;
        }
      }
      std::vector<std::byte> out(8 * 512);
      for (uint64_t i = 0; i < 8; ++i) {
        if (disk.read(i * 8, out) != 0 || out != frontend::pattern(writer, i * 8, 8, generation)) {
          failure_ = "read-back mismatch in round " + std::to_string(generation);
          failed_ = true;
          return;
        }
      }
      rounds_ = generation;
    }
  }) {}
  ~BackgroundVerifier() { finish(); }

  uint64_t rounds() const { return rounds_; }
  bool failed() const { return failed_; }
  // Stops and returns the first failure ("" when every round verified).
  std::string finish() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return failure_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> rounds_{0};
  std::atomic<bool> failed_{false};
  std::string failure_;  // written by the thread, read after join
  std::thread thread_;
};

TEST_F(CrossProcessTest, GuestProcessKilledMidIoIsReleasedWhileAnotherGuestKeepsServing) {
  auto options = default_options();
  options.vbd.fault_injection = true;  // to hold the victim's I/O in the daemon (latency)
  DaemonHarness h(options);
  const std::string store_socket = dir_ + "/store.sock", broker_socket = dir_ + "/broker.sock";
  h.world().serve(store_socket, broker_socket);

  auto good_guest = h.world().add_guest(12);
  VbdSpec good_spec;
  good_spec.domid = 12;
  h.toolstack().add_vbd(good_spec);
  auto good = good_guest->disk(good_spec.devid);
  ASSERT_NO_THROW(good->connect());
  struct stat good_memory {};
  ASSERT_EQ(::fstat(good_guest->memory().memory_fd(), &good_memory), 0);

  BackgroundVerifier verifier(*good, 12);
  ASSERT_TRUE(eventually([&] { return verifier.rounds() > 0; })) << "the in-process guest makes no progress";
  const size_t fds_before = open_fds(), threads_before = threads();

  // The guest process: its own memory, joined through the broker, its own
  // xenstore connection, a file-backed disk so io_uring I/O is in flight.
  TempFile file(16ull << 20);
  h.toolstack().create_domain(21);
  VbdSpec spec;
  spec.domid = 21;
  spec.target = file.path();
  h.toolstack().add_vbd(spec);
  unsigned long victim_memory = 0;
  {
    CrossProcessChild guest({XBB_SIM_GUEST_PATH, store_socket, broker_socket, "21", std::to_string(spec.devid),
                             "verify"});
    ASSERT_EQ(guest.read_line(kHangGuard), "connected");
    // Rounds of a ring's worth of writes then reads, each verified in the guest.
    ASSERT_EQ(guest.read_line(kHangGuard), "round 1");
    // From now on every request of the victim spends 20-40 ms in storage, so
    // the daemon holds a ring's worth of them whenever we look.
    auto answer = h.command({{"command", "fault"}, {"device", "21/51712"}, {"spec", "rate=0,latency=20ms-40ms"}});
    ASSERT_TRUE(answer.value("ok", false)) << answer.dump();
    for (int round = 2; round <= 3; ++round) ASSERT_EQ(guest.read_line(kHangGuard), "round " + std::to_string(round));
    nlohmann::json stats;
    ASSERT_TRUE(eventually([&] {
      stats = h.device_stats("21/51712");
      return !stats.is_null() && stats["stats"]["in_flight"].get<uint64_t>() > 0;
    })) << stats.dump();
    EXPECT_GT(stats["mapped_grant_pages"].get<uint64_t>(), 0u);
    auto mapped = mapped_guest_memory();
    mapped.erase(good_memory.st_ino);
    ASSERT_EQ(mapped.size(), 1u) << "expected exactly the guest process's memory mapped besides ours";
    victim_memory = *mapped.begin();

    // Killed with requests in flight in the daemon (their storage latency
    // runs out only after the domain is gone).
    ASSERT_TRUE(guest.send(SIGKILL));
    auto status = guest.wait(kHangGuard);
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL)
        << "the guest process ended on its own (" << describe_status(*status) << "): 3 = I/O error, 4 = bad data";
  }
  // The broker saw the connection drop and destroyed the domain; then the
  // toolstack does what libxl does after `xl destroy`.
  ASSERT_TRUE(h.world().wait_domain_gone(21, kHangGuard));
  h.toolstack().destroy_domain(21, /*remove_nodes=*/true);
  ASSERT_TRUE(eventually([&] { return h.device_count() == 1; })) << h.command({{"command", "list"}}).dump();
  EXPECT_TRUE(h.device_stats("21/51712").is_null());
  EXPECT_FALSE(h.device_stats("12/51712").is_null());

  // Every grant of the dead guest unmapped: no page of its memory is mapped
  // in this process any more (the daemon's maps and the hypervisor's own).
  EXPECT_TRUE(eventually([&] { return mapped_guest_memory().count(victim_memory) == 0; }))
      << "the dead guest's memory is still mapped";

  // The other guest kept serving throughout, and still does.
  const uint64_t rounds_at_release = verifier.rounds();
  EXPECT_TRUE(eventually([&] { return verifier.rounds() >= rounds_at_release + 3 || verifier.failed(); }));
  EXPECT_EQ(verifier.finish(), "");
  EXPECT_TRUE(good->violations().empty());

  // Nothing of the dead guest's device is left: its worker threads, rings,
  // event channels, grant handles and the broker's and store's connections.
  EXPECT_TRUE(eventually([&] { return threads() < threads_before; }))
      << threads() << " threads, " << threads_before << " before (the verifier thread has ended since)";
  EXPECT_TRUE(eventually([&] { return open_fds() <= fds_before; }))
      << open_fds() << " fds open, " << fds_before << " before the guest process started";
}

// xbbd-sim logged no error or warning (a grant handle closed with pages still
// mapped, a failed unbind, a store error during shutdown...) besides the
// warning that fault injection, which the test asked for, is on.
void expect_clean_log(const std::string& log) {
  std::istringstream lines(log);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.find(" warning ") != std::string::npos && line.find(": fault injection ") != std::string::npos) continue;
    EXPECT_TRUE(line.find(" error ") == std::string::npos && line.find(" warning ") == std::string::npos &&
                line.find("still mapped") == std::string::npos)
        << line;
  }
}

// Keeps a FILE-backed disk busy with writes to fresh sectors, records the
// acknowledged ones, and checks them against the file afterwards.
struct AcknowledgedWrites {
  AcknowledgedWrites(frontend::SoftBlkfront& d, uint64_t sectors) : disk(d), limit(sectors) {}
  frontend::SoftBlkfront& disk;
  uint64_t limit;  // sectors available
  uint64_t next_sector = 0;
  std::map<uint64_t, uint64_t> sector_of;  // handle -> sector
  std::vector<uint64_t> acked;
  size_t failed = 0;

  std::vector<std::byte> data(uint64_t sector) const { return frontend::pattern(7, sector, 8, 0); }
  void submit_while_room() {
    while (next_sector + 8 <= limit) {
      BlkRequest r;
      r.kind = BlkRequest::Kind::Write;
      r.sector = next_sector;
      r.data = data(next_sector);
      auto handle = disk.submit(r);
      if (!handle) return;
      sector_of[*handle] = next_sector;
      next_sector += 8;
    }
  }
  size_t collect(std::chrono::milliseconds timeout) {
    auto done = disk.poll(timeout);
    for (const BlkCompletion& c : done) {
      if (c.status == 0) {
        acked.push_back(sector_of.at(c.handle));
      } else {
        ++failed;
      }
    }
    return done.size();
  }
};

// Every acknowledged write of `writes` is in the file at `path`.
size_t missing_writes(const std::string& path, const AcknowledgedWrites& writes) {
  std::ifstream in(path, std::ios::binary);
  size_t missing = 0;
  for (uint64_t sector : writes.acked) {
    std::vector<std::byte> got(8 * 512);
    in.seekg(static_cast<std::streamoff>(sector * 512));
    in.read(reinterpret_cast<char*>(got.data()), static_cast<std::streamsize>(got.size()));
    if (got != writes.data(sector)) ++missing;
  }
  return missing;
}

// Has the storage hold each write for `latency`, writes until `acked_first`
// are acknowledged, then keeps the disk's rings full until the process serving
// `device` (asked through the supervisor's socket) has some in flight.
void hold_writes_in_flight(const CrossProcessDaemon& xbbd, const std::string& device, AcknowledgedWrites& writes,
                           const std::string& latency, size_t acked_first = 64) {
  auto answer = backend::control_request(xbbd.control_socket(),
                                         {{"command", "fault"}, {"device", device}, {"spec", "rate=0,latency=" + latency}});
  ASSERT_TRUE(answer.value("ok", false)) << answer.dump();
  const auto deadline = Clock::now() + kHangGuard;
  while (writes.acked.size() < acked_first && Clock::now() < deadline) {
    writes.submit_while_room();
    writes.collect(1000ms);
  }
  ASSERT_GE(writes.acked.size(), acked_first) << xbbd.log();
  writes.submit_while_room();
  nlohmann::json stats;
  ASSERT_TRUE(eventually([&] {
    writes.collect(0ms);  // keeps the rings full: the writes finish within milliseconds
    writes.submit_while_room();
    stats = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", device}});
    return stats.value("ok", false) && stats["devices"][0]["stats"]["in_flight"].get<uint64_t>() > 0;
  })) << stats.dump();
}

// Runs the built xbbctl; returns its wait status and stdout.
std::pair<int, std::string> xbbctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv{XBBCTL_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  CrossProcessChild ctl(argv);
  std::string out = ctl.read_all(kHangGuard);
  auto status = ctl.wait(kHangGuard);
  return {status.value_or(-1), out};
}

// Keeps a disk's ring full and watches what the guest sees across a stop and
// start of its backend: completions and their gaps, and every backend state.
struct GuestWatch {
  explicit GuestWatch(AcknowledgedWrites& w) : writes(w) {}
  AcknowledgedWrites& writes;
  Clock::time_point last_completion = Clock::now();
  Clock::duration longest_gap{};
  std::set<XenbusState> states_seen;

  void step(std::chrono::milliseconds wait) {
    writes.submit_while_room();
    if (writes.collect(wait) > 0) {
      const auto now = Clock::now();
      longest_gap = std::max(longest_gap, now - last_completion);
      last_completion = now;
    }
    if (auto state = writes.disk.backend_state()) states_seen.insert(*state);
  }
  double longest_gap_ms() const { return std::chrono::duration<double, std::milli>(longest_gap).count(); }
};

// A copy of xbbd-sim under another name, for an "upgrade" restart.
std::string copy_of_xbbd_sim(const CrossProcessDaemon& xbbd) {
  const std::string copy = xbbd.dir() + "/xbbd-sim-upgraded";
  std::filesystem::copy_file(XBBD_SIM_PATH, copy, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(copy, std::filesystem::perms::owner_all);
  return copy;
}

// SIGTERM is what `systemctl stop|restart` and every package upgrade send. It
// must not close any disk (Linux 6.x blkfront takes a backend Closing as the
// disk gone for good): xbbd answers what is in flight, leaves the disk
// Connected and exits; the next xbbd (here another binary: an upgrade) adopts
// the ring, with the device's fault-injection setting and tunables, and the
// guest only sees a pause.
TEST(CrossProcessDaemonTest, SigtermLeavesTheDiskConnectedForTheNextXbbdWhichAdoptsIt) {
  TempFile file(64ull << 20);
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "2"}, "fault-injection = 1",
                          CrossProcessDaemon::Hypervisor::Shared);
  auto guest = xbbd.add_guest(7);
  VbdSpec spec;
  spec.domid = 7;
  spec.target = file.path();
  xbbd.toolstack().add_vbd(spec);
  frontend::FrontendConfig config;
  config.queues = 2;
  config.ring_page_order = 1;
  config.persistent_grants = true;
  auto disk = guest->disk(spec.devid, config);
  ASSERT_NO_THROW(disk->connect()) << xbbd.log();
  auto set = backend::control_request(xbbd.control_socket(),
                                      {{"command", "set"}, {"device", "7/xvda"}, {"name", "flush_interval"}, {"value", "3"}});
  ASSERT_TRUE(set.value("ok", false)) << set.dump();

  // Every write spends 5-15 ms in storage, so the daemon really holds the
  // writes in flight when the signal arrives.
  AcknowledgedWrites writes(*disk, (64ull << 20) / 512);
  hold_writes_in_flight(xbbd, "7/xvda", writes, "5ms-15ms", 256);
  ASSERT_FALSE(HasFatalFailure());
  const size_t in_flight_at_signal = disk->in_flight();
  const size_t acked_before_signal = writes.acked.size();
  GuestWatch watch(writes);
  ASSERT_TRUE(xbbd.process().send(SIGTERM));

  // The guest carries on as a guest would, keeping its rings full.
  std::optional<int> status;
  const auto exit_deadline = Clock::now() + kHangGuard;
  while (!(status = xbbd.process().wait(0ms)) && Clock::now() < exit_deadline) watch.step(10ms);
  ASSERT_TRUE(status.has_value()) << "xbbd-sim did not exit after SIGTERM:\n" << xbbd.log();
  EXPECT_EQ(describe_status(*status), "exit 0") << xbbd.log();
  const size_t acked_by_the_old = writes.acked.size() - acked_before_signal;
  EXPECT_EQ(disk->backend_state(), XenbusState::Connected) << "a stopped xbbd must leave its disks connected";
  EXPECT_GT(disk->in_flight(), 0u) << "the guest queued requests for the next xbbd";

  xbbd.restart(copy_of_xbbd_sim(xbbd));
  const auto deadline = Clock::now() + kHangGuard;
  while (disk->in_flight() > 0 && Clock::now() < deadline) watch.step(50ms);
  EXPECT_EQ(disk->in_flight(), 0u) << "requests queued across the restart were never answered:\n" << xbbd.log();

  EXPECT_EQ(watch.states_seen, std::set<XenbusState>{XenbusState::Connected}) << "the guest saw the disk leave Connected";
  EXPECT_EQ(writes.failed, 0u) << "no write may fail because of a restart";
  for (auto& v : disk->violations()) ADD_FAILURE() << "violation: " << v;
  EXPECT_GT(in_flight_at_signal, 1u);
  EXPECT_EQ(missing_writes(file.path(), writes), 0u) << "of " << writes.acked.size() << " acknowledged writes";

  // The new process serves the same connection, with what was set on it.
  auto stats = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", "7/xvda"}});
  ASSERT_TRUE(stats.value("ok", false)) << stats.dump();
  const auto& device = stats["devices"][0];
  EXPECT_EQ(device.value("queues", 0), 2) << device.dump();
  EXPECT_TRUE(device.value("persistent_grants", false)) << device.dump();
  EXPECT_NE(device.value("fault", std::string()).find("latency"), std::string::npos) << device.dump();
  EXPECT_EQ(device["tunables"].value("flush_interval", std::string()), "3") << device.dump();
  std::printf("SIGTERM with %zu writes in flight: %zu more acknowledged by the stopping xbbd, the rest by the next "
              "(another binary); longest gap between two completions in the guest: %.1f ms\n",
              in_flight_at_signal, acked_by_the_old, watch.longest_gap_ms());
  // And it serves new I/O.
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(disk->write(0, frontend::pattern(3, 0, 8, 0)), 0);
  ASSERT_EQ(disk->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(3, 0, 8, 0));
  expect_clean_log(xbbd.log());
}

// A paused disk stays paused across a restart (the new xbbd finds the mark
// in the backend directory), through the xbbctl binary.
TEST(CrossProcessDaemonTest, APausedDiskStaysPausedAcrossARestartUntilResumed) {
  TempFile file(16ull << 20);
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {}, "", CrossProcessDaemon::Hypervisor::Shared);
  auto guest = xbbd.add_guest(9);
  VbdSpec spec;
  spec.domid = 9;
  spec.target = file.path();
  xbbd.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect()) << xbbd.log();
  auto [paused, pause_out] = xbbctl({"--socket", xbbd.control_socket(), "pause", "9/xvda"});
  ASSERT_EQ(describe_status(paused), "exit 0") << pause_out << xbbd.log();

  BlkRequest write;
  write.kind = BlkRequest::Kind::Write;
  write.sector = 0;
  write.data = frontend::pattern(9, 0, 8, 0);
  ASSERT_TRUE(disk->submit(write).has_value());
  ASSERT_TRUE(xbbd.process().send(SIGTERM));
  ASSERT_TRUE(xbbd.process().wait(kHangGuard).has_value()) << xbbd.log();
  xbbd.restart();
  EXPECT_TRUE(disk->poll(300ms).empty()) << "the restarted xbbd served a paused disk";
  auto list = backend::control_request(xbbd.control_socket(), {{"command", "list"}});
  ASSERT_TRUE(list.value("ok", false)) << list.dump();
  EXPECT_EQ(list["devices"][0].value("phase", ""), "paused") << list.dump();

  auto [resumed, resume_out] = xbbctl({"--socket", xbbd.control_socket(), "resume", "9/xvda"});
  ASSERT_EQ(describe_status(resumed), "exit 0") << resume_out << xbbd.log();
  std::vector<BlkCompletion> done;
  ASSERT_TRUE(eventually([&] {
    for (auto& c : disk->poll(10ms)) done.push_back(c);
    return !done.empty();
  })) << xbbd.log();
  EXPECT_EQ(done[0].status, 0);
  EXPECT_TRUE(disk->violations().empty());
  EXPECT_EQ(disk->backend_state(), XenbusState::Connected);
}

size_t descriptors_of(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  return count_dir_entries(dir.c_str());
}

// What one queue costs the daemon in descriptors (what DescriptorBudget.hpp
// budgets for), measured in the daemon's own process.
TEST(CrossProcessDaemonTest, AQueueCostsTheDaemonNoMoreDescriptorsThanBudgeted) {
  TempFile file(16ull << 20);
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "4"});
  auto guest = xbbd.add_guest(6);
  size_t cost[2] = {0, 0};
  for (unsigned queues : {1u, 4u}) {
    VbdSpec spec;
    spec.domid = 6;
    spec.target = file.path();
    xbbd.toolstack().add_vbd(spec);
    frontend::FrontendConfig config;
    config.queues = queues;
    auto disk = guest->disk(spec.devid, config);
    // Before: the device is served (storage open), its rings not yet mapped.
    ASSERT_TRUE(xbbd.toolstack().wait_node(frontend::SimToolstack::backend_path(6, spec.devid) + "/hotplug-status",
                                           true, kHangGuard));
    const size_t before = descriptors_of(xbbd.process().pid());
    ASSERT_NO_THROW(disk->connect()) << xbbd.log();
    cost[queues == 4] = descriptors_of(xbbd.process().pid()) - before;
    disk->close();
    ASSERT_TRUE(xbbd.toolstack().remove_vbd(6, spec.devid, kHangGuard));
  }
  const size_t per_queue = (cost[1] - cost[0]) / 3;
  std::printf("daemon descriptors: %zu to connect a 1-queue disk, %zu for 4 queues: %zu per queue (budgeted %u)\n",
              cost[0], cost[1], per_queue, backend::kDescriptorsPerQueue);
  EXPECT_GT(per_queue, 0u);
  EXPECT_LE(per_queue, backend::kDescriptorsPerQueue) << "the budget undercounts what a queue opens";
}

// A second xbbd refuses to start rather than serve rings the first one serves.
TEST(CrossProcessDaemonTest, ASecondXbbdRefusesToStart) {
  CrossProcessDaemon xbbd(XBBD_SIM_PATH);
  CrossProcessChild second({XBBD_SIM_PATH, "--sim-store", xbbd.store_socket(), "--sim-broker",
                            xbbd.dir() + "/broker2.sock", "--control-socket", xbbd.control_socket(), "--state-dir",
                            "none"},
                           xbbd.dir() + "/second.log", CrossProcessChild::Stdout::LogFile);
  auto status = second.wait(kHangGuard);
  ASSERT_TRUE(status.has_value()) << "the second xbbd kept running";
  EXPECT_EQ(describe_status(*status), "exit 1");
  std::ifstream in(xbbd.dir() + "/second.log");
  std::stringstream log;
  log << in.rdbuf();
  EXPECT_NE(log.str().find("another xbbd already serves backend/vbd on this host"), std::string::npos) << log.str();
  EXPECT_NE(log.str().find("held by process " + std::to_string(xbbd.process().pid())), std::string::npos) << log.str();
  // The first one still answers on its socket, which the second must not have replaced.
  auto list = backend::control_request(xbbd.control_socket(), {{"command", "list"}});
  EXPECT_TRUE(list.value("ok", false)) << list.dump();
}


TEST(CrossProcessDaemonTest, XbbctlReportsTheIoIssued) {
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "1"});
  auto guest = xbbd.add_guest(6);
  VbdSpec spec;
  spec.domid = 6;
  xbbd.toolstack().add_vbd(spec);
  auto disk = guest->disk(spec.devid);
  ASSERT_NO_THROW(disk->connect()) << xbbd.log();

  // 12 writes of 4 KiB, 5 reads of 8 KiB, 2 flushes, one at a time.
  for (uint64_t i = 0; i < 12; ++i) ASSERT_EQ(disk->write(i * 8, frontend::pattern(6, i * 8, 8, 0)), 0);
  std::vector<std::byte> out(16 * 512);
  for (uint64_t i = 0; i < 5; ++i) ASSERT_EQ(disk->read(i * 16, out), 0);
  ASSERT_EQ(disk->flush(), 0);
  ASSERT_EQ(disk->flush(), 0);

  auto [status, text] = xbbctl({"--socket", xbbd.control_socket(), "--json", "stats"});
  ASSERT_EQ(describe_status(status), "exit 0") << text;
  auto answer = nlohmann::json::parse(text, nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << "not JSON: " << text;
  ASSERT_TRUE(answer.value("ok", false)) << text;
  ASSERT_EQ(answer["devices"].size(), 1u) << text;
  const auto& device = answer["devices"][0];
  EXPECT_EQ(device.value("device", ""), "6/51712");
  const auto& stats = device["stats"];
  const auto& ops = stats["operations"];
  EXPECT_EQ(ops["write"]["received"].get<uint64_t>(), 12u) << text;
  EXPECT_EQ(ops["write"]["completed"].get<uint64_t>(), 12u);
  EXPECT_EQ(ops["write"]["failed"].get<uint64_t>(), 0u);
  EXPECT_EQ(ops["read"]["received"].get<uint64_t>(), 5u);
  EXPECT_EQ(ops["read"]["completed"].get<uint64_t>(), 5u);
  EXPECT_EQ(ops["flush"]["completed"].get<uint64_t>(), 2u);
  EXPECT_EQ(stats["bytes_written"].get<uint64_t>(), 12u * 4096);
  EXPECT_EQ(stats["bytes_read"].get<uint64_t>(), 5u * 8192);
  EXPECT_EQ(stats["in_flight"].get<uint64_t>(), 0u);

  auto [list_status, list] = xbbctl({"--socket", xbbd.control_socket(), "list"});
  EXPECT_EQ(describe_status(list_status), "exit 0") << list;
  EXPECT_NE(list.find("DEVICE"), std::string::npos) << list;
  EXPECT_NE(list.find("6/51712"), std::string::npos) << list;
  EXPECT_NE(list.find("xvda"), std::string::npos) << list;
  EXPECT_NE(list.find("connected"), std::string::npos) << list;

  // A device it does not serve: a clear error and a failure exit status.
  auto [bad_status, bad] = xbbctl({"--socket", xbbd.control_socket(), "stats", "99/xvda"});
  EXPECT_EQ(describe_status(bad_status), "exit 1") << bad;

  ASSERT_TRUE(xbbd.process().send(SIGTERM));
  auto exited = xbbd.process().wait(kHangGuard);
  ASSERT_TRUE(exited.has_value()) << xbbd.log();
  EXPECT_EQ(describe_status(*exited), "exit 0") << xbbd.log();
  expect_clean_log(xbbd.log());
}

// Three processes, as on a real host: the toolstack's xenstore here, xbbd in
// xbbd-sim, and the guest in xbb_sim_guest, which writes, reads back and
// closes its disk; then the toolstack removes the device.
TEST(CrossProcessDaemonTest, GuestProcessAgainstDaemonProcessWritesVerifiesAndCloses) {
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "1"});
  xbbd.toolstack().create_domain(8);
  VbdSpec spec;
  spec.domid = 8;
  xbbd.toolstack().add_vbd(spec);
  CrossProcessChild guest({XBB_SIM_GUEST_PATH, xbbd.store_socket(), xbbd.broker_socket(), "8",
                           std::to_string(spec.devid), "cycle"});
  EXPECT_EQ(guest.read_line(kHangGuard), "connected") << xbbd.log();
  EXPECT_EQ(guest.read_line(kHangGuard), "verified 64") << xbbd.log();
  EXPECT_EQ(guest.read_line(kHangGuard), "closed") << xbbd.log();
  auto status = guest.wait(kHangGuard);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(describe_status(*status), "exit 0") << "5 = backend protocol violations";
  EXPECT_EQ(xbbd.toolstack().backend_state(8, spec.devid), XenbusState::Closed);
  EXPECT_TRUE(xbbd.toolstack().remove_vbd(8, spec.devid, kHangGuard)) << xbbd.log();

  ASSERT_TRUE(xbbd.process().send(SIGINT));
  auto exited = xbbd.process().wait(kHangGuard);
  ASSERT_TRUE(exited.has_value()) << xbbd.log();
  EXPECT_EQ(describe_status(*exited), "exit 0") << xbbd.log();
  expect_clean_log(xbbd.log());
}

// ---- per-disk mode: a supervisor xbbd-sim and one xbbd-sim per disk ----

// The supervisor's `list`: device -> its entry (pid, process, restarts, socket).
std::map<std::string, nlohmann::json> per_disk_processes(const CrossProcessDaemon& xbbd) {
  std::map<std::string, nlohmann::json> out;
  auto answer = backend::control_request(xbbd.control_socket(), {{"command", "list"}});
  if (!answer.value("ok", false) || !answer.value("per_disk", false)) return out;
  for (const auto& d : answer["devices"]) out[d.value("device", "")] = d;
  return out;
}

pid_t pid_of(const std::map<std::string, nlohmann::json>& processes, const std::string& device) {
  auto it = processes.find(device);
  return it == processes.end() || !it->second.contains("pid") ? -1 : it->second["pid"].get<pid_t>();
}

bool process_gone(pid_t pid) { return ::kill(pid, 0) != 0 && errno == ESRCH; }

// Per-disk xbbd-sim serving two file-backed disks of one guest: xvda (a)
// and xvdb (b), connected.
class PerDiskTest : public ::testing::Test {
 protected:
  static constexpr xs::DomId kGuest = 5;
  static constexpr uint32_t kDevidA = 51712, kDevidB = 51728;  // xvda, xvdb

  void SetUp() override {
    guest_ = xbbd_.add_guest(kGuest);
    for (auto [devid, image] : {std::pair{kDevidA, &image_a_}, std::pair{kDevidB, &image_b_}}) {
      VbdSpec spec;
      spec.domid = kGuest;
      spec.devid = devid;
      spec.target = image->path();
      xbbd_.toolstack().add_vbd(spec);
    }
    disk_a_ = guest_->disk(kDevidA);
    disk_b_ = guest_->disk(kDevidB);
    ASSERT_NO_THROW(disk_a_->connect()) << xbbd_.log();
    ASSERT_NO_THROW(disk_b_->connect()) << xbbd_.log();
  }

  TempFile image_a_{16ull << 20}, image_b_{16ull << 20};
  CrossProcessDaemon xbbd_{XBBD_SIM_PATH, {"--per-disk", "--max-queues", "1"}, "fault-injection = 1",
                           CrossProcessDaemon::Hypervisor::Shared};
  std::unique_ptr<BrokerGuest> guest_;
  std::unique_ptr<frontend::SoftBlkfront> disk_a_, disk_b_;
};

TEST_F(PerDiskTest, EachDiskHasItsOwnProcessRestartedAfterACrashAndForgottenAfterRemoval) {
  auto& xbbd = xbbd_;
  auto& disk_a = disk_a_;
  auto& disk_b = disk_b_;

  // Two processes besides the supervisor, one per disk.
  auto processes = per_disk_processes(xbbd);
  ASSERT_EQ(processes.size(), 2u) << xbbd.log();
  const pid_t pid_a = pid_of(processes, "5/51712"), pid_b = pid_of(processes, "5/51728");
  EXPECT_GT(pid_a, 0);
  EXPECT_GT(pid_b, 0);
  EXPECT_NE(pid_a, pid_b);
  EXPECT_NE(pid_a, xbbd.process().pid());
  EXPECT_EQ(processes["5/51712"].value("process", ""), "running");
  EXPECT_EQ(processes["5/51712"].value("socket", ""), xbbd.dir() + "/5-51712.sock");
  EXPECT_EQ(processes["5/51712"].value("restarts", -1), 0);
  auto [list_status, list] = xbbctl({"--socket", xbbd.control_socket(), "list"});
  EXPECT_EQ(describe_status(list_status), "exit 0") << list;
  EXPECT_NE(list.find(std::to_string(pid_a)), std::string::npos) << list;
  EXPECT_NE(list.find(std::to_string(pid_b)), std::string::npos) << list;

  // Verified I/O on both disks.
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_EQ(disk_a->write(i * 8, frontend::pattern(1, i * 8, 8, 0)), 0);
    ASSERT_EQ(disk_b->write(i * 8, frontend::pattern(2, i * 8, 8, 0)), 0);
  }
  std::vector<std::byte> out(8 * 512);
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_EQ(disk_a->read(i * 8, out), 0);
    ASSERT_EQ(out, frontend::pattern(1, i * 8, 8, 0));
    ASSERT_EQ(disk_b->read(i * 8, out), 0);
    ASSERT_EQ(out, frontend::pattern(2, i * 8, 8, 0));
  }
  // Device commands reach the disk's process through the supervisor.
  auto stats = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", "5/xvdb"}});
  ASSERT_TRUE(stats.value("ok", false)) << stats.dump();
  EXPECT_EQ(stats["devices"][0]["stats"]["operations"]["write"]["completed"].get<uint64_t>(), 16u) << stats.dump();

  // Disk b is busy on its own thread through everything that happens to a.
  BackgroundVerifier verifier(*disk_b, 2);
  ASSERT_TRUE(eventually([&] { return verifier.rounds() > 0 || verifier.failed(); }));

  // a's process is killed with a ring's worth of writes in flight in it.
  // They are held in its storage for 2 s, so it is killed while waiting for
  // them, not while writing responses into the ring: a response written
  // there but not yet published overwrites its request, and the adopting
  // process cannot tell (BACK_RING_ATTACH has the same limit).
  AcknowledgedWrites writes(*disk_a, (16ull << 20) / 512);
  writes.next_sector = 16 * 8;
  const auto fill_deadline = Clock::now() + kHangGuard;
  while (writes.acked.size() < 64 && Clock::now() < fill_deadline) {
    writes.submit_while_room();
    writes.collect(1000ms);
  }
  while (disk_a->in_flight() > 0 && Clock::now() < fill_deadline) writes.collect(1000ms);
  ASSERT_EQ(disk_a->in_flight(), 0u) << xbbd.log();
  auto held = backend::control_request(xbbd.control_socket(),
                                       {{"command", "fault"}, {"device", "5/xvda"}, {"spec", "rate=0,latency=2000ms"}});
  ASSERT_TRUE(held.value("ok", false)) << held.dump();
  writes.submit_while_room();
  const size_t in_flight_at_kill = disk_a->in_flight();
  ASSERT_GT(in_flight_at_kill, 1u);
  nlohmann::json held_stats;
  ASSERT_TRUE(eventually([&] {
    held_stats = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", "5/xvda"}});
    return held_stats.value("ok", false) &&
           held_stats["devices"][0]["stats"]["in_flight"].get<uint64_t>() == in_flight_at_kill;
  })) << held_stats.dump();
  ASSERT_EQ(::kill(pid_a, SIGKILL), 0);

  // The supervisor starts a new process, which adopts the live ring and
  // serves the requests the old one never answered: every write completes.
  pid_t new_pid_a = -1;
  ASSERT_TRUE(eventually([&] {
    processes = per_disk_processes(xbbd);
    new_pid_a = pid_of(processes, "5/51712");
    return new_pid_a > 0 && new_pid_a != pid_a;
  })) << xbbd.log();
  EXPECT_EQ(processes["5/51712"].value("restarts", -1), 1);
  EXPECT_NE(processes["5/51712"].value("last_exit", "").find("killed by signal 9"), std::string::npos)
      << processes["5/51712"].dump();
  const auto deadline = Clock::now() + kHangGuard;
  while (disk_a->in_flight() > 0 && Clock::now() < deadline) writes.collect(100ms);
  EXPECT_EQ(disk_a->in_flight(), 0u) << "writes in flight at the kill never completed:\n" << xbbd.log();
  for (auto& v : disk_a->violations()) ADD_FAILURE() << "violation: " << v;
  EXPECT_EQ(writes.failed, 0u);
  EXPECT_EQ(disk_a->backend_state(), XenbusState::Connected);
  EXPECT_EQ(missing_writes(image_a_.path(), writes), 0u) << "of " << writes.acked.size() << " acknowledged writes";
  std::printf("per-disk: killed a disk's process with %zu writes in flight; all %zu writes acknowledged\n",
              in_flight_at_kill, writes.acked.size());
  // And it serves new I/O (the latency is gone with the old process).
  ASSERT_EQ(disk_a->write(0, frontend::pattern(3, 0, 8, 0)), 0);
  ASSERT_EQ(disk_a->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(3, 0, 8, 0));

  // b was never interrupted: same process, rounds kept verifying.
  const uint64_t rounds_after_restart = verifier.rounds();
  EXPECT_TRUE(eventually([&] { return verifier.rounds() >= rounds_after_restart + 2 || verifier.failed(); }));
  EXPECT_EQ(pid_of(per_disk_processes(xbbd), "5/51728"), pid_b);

  // The toolstack removes a: its process exits and is forgotten.
  ASSERT_NO_THROW(disk_a->close()) << xbbd.log();
  EXPECT_TRUE(xbbd.toolstack().remove_vbd(kGuest, kDevidA, kHangGuard)) << xbbd.log();
  EXPECT_TRUE(eventually([&] { return per_disk_processes(xbbd).count("5/51712") == 0; })) << xbbd.log();
  EXPECT_TRUE(eventually([&] { return process_gone(new_pid_a); })) << "the released disk's process was not reaped";
  auto gone = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", "5/xvda"}});
  EXPECT_FALSE(gone.value("ok", true)) << gone.dump();

  EXPECT_EQ(verifier.finish(), "");
  EXPECT_TRUE(disk_b->violations().empty());
  EXPECT_EQ(pid_of(per_disk_processes(xbbd), "5/51728"), pid_b);
}

TEST_F(PerDiskTest, SigtermLeavesEveryDiskConnectedAndTheNextSupervisorsProcessesAdoptThem) {
  auto& xbbd = xbbd_;
  const auto processes = per_disk_processes(xbbd);
  const pid_t pid_a = pid_of(processes, "5/51712"), pid_b = pid_of(processes, "5/51728");
  ASSERT_TRUE(pid_a > 0 && pid_b > 0) << xbbd.log();

  AcknowledgedWrites writes_a(*disk_a_, (16ull << 20) / 512), writes_b(*disk_b_, (16ull << 20) / 512);
  hold_writes_in_flight(xbbd, "5/xvda", writes_a, "5ms-15ms");
  ASSERT_FALSE(HasFatalFailure());
  hold_writes_in_flight(xbbd, "5/xvdb", writes_b, "5ms-15ms");
  ASSERT_FALSE(HasFatalFailure());
  GuestWatch watch_a(writes_a), watch_b(writes_b);
  ASSERT_TRUE(xbbd.process().send(SIGTERM));

  // The guest keeps its rings full throughout.
  std::optional<int> status;
  const auto exit_deadline = Clock::now() + kHangGuard;
  while (!(status = xbbd.process().wait(0ms)) && Clock::now() < exit_deadline) {
    watch_a.step(5ms);
    watch_b.step(5ms);
  }
  ASSERT_TRUE(status.has_value()) << "the supervisor did not exit after SIGTERM:\n" << xbbd.log();
  EXPECT_EQ(describe_status(*status), "exit 0") << xbbd.log();
  // It waited for both disks' processes, which drained and left the disks connected.
  EXPECT_TRUE(process_gone(pid_a) && process_gone(pid_b)) << "a disk's process outlived the supervisor";
  EXPECT_EQ(disk_a_->backend_state(), XenbusState::Connected);
  EXPECT_EQ(disk_b_->backend_state(), XenbusState::Connected);

  xbbd.restart();
  const auto deadline = Clock::now() + kHangGuard;
  while ((disk_a_->in_flight() > 0 || disk_b_->in_flight() > 0) && Clock::now() < deadline) {
    watch_a.step(20ms);
    watch_b.step(20ms);
  }
  for (auto* watch : {&watch_a, &watch_b}) {
    auto& writes = watch->writes;
    EXPECT_EQ(writes.disk.in_flight(), 0u) << "requests queued across the restart were never answered:\n" << xbbd.log();
    EXPECT_EQ(watch->states_seen, std::set<XenbusState>{XenbusState::Connected});
    EXPECT_EQ(writes.failed, 0u) << "no write may fail because of a restart";
    for (auto& v : writes.disk.violations()) ADD_FAILURE() << "violation: " << v;
  }
  EXPECT_EQ(missing_writes(image_a_.path(), writes_a), 0u) << "of " << writes_a.acked.size();
  EXPECT_EQ(missing_writes(image_b_.path(), writes_b), 0u) << "of " << writes_b.acked.size();
  const auto after = per_disk_processes(xbbd);
  EXPECT_GT(pid_of(after, "5/51712"), 0) << xbbd.log();
  EXPECT_GT(pid_of(after, "5/51728"), 0) << xbbd.log();
  std::printf("per-disk SIGTERM and a new supervisor: longest gaps between completions %.1f ms (a), %.1f ms (b)\n",
              watch_a.longest_gap_ms(), watch_b.longest_gap_ms());
  expect_clean_log(xbbd.log());
}

// A disk's process stopped with SIGTERM by someone else than the supervisor
// leaves its disk connected: the supervisor starts a new one, which adopts it.
TEST_F(PerDiskTest, ADiskProcessStoppedBehindTheSupervisorsBackIsReplaced) {
  auto& xbbd = xbbd_;
  const pid_t pid_a = pid_of(per_disk_processes(xbbd), "5/51712");
  ASSERT_GT(pid_a, 0) << xbbd.log();
  ASSERT_EQ(::kill(pid_a, SIGTERM), 0);
  pid_t new_pid_a = -1;
  ASSERT_TRUE(eventually([&] {
    new_pid_a = pid_of(per_disk_processes(xbbd), "5/51712");
    return new_pid_a > 0 && new_pid_a != pid_a;
  })) << xbbd.log();
  EXPECT_EQ(disk_a_->backend_state(), XenbusState::Connected);
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(disk_a_->write(0, frontend::pattern(4, 0, 8, 0)), 0) << xbbd.log();
  ASSERT_EQ(disk_a_->read(0, out), 0);
  EXPECT_EQ(out, frontend::pattern(4, 0, 8, 0));
  EXPECT_TRUE(disk_a_->violations().empty());
}

// Commands that wait (pause drains) are passed to the disk's process without
// holding up the supervisor: it still answers `list` meanwhile.
TEST_F(PerDiskTest, PauseAndResumeReachTheDisksProcessThroughTheSupervisor) {
  auto& xbbd = xbbd_;
  AcknowledgedWrites writes(*disk_a_, (16ull << 20) / 512);
  hold_writes_in_flight(xbbd, "5/xvda", writes, "300ms", 8);
  ASSERT_FALSE(HasFatalFailure());
  writes.submit_while_room();
  ASSERT_GT(disk_a_->in_flight(), 0u);
  std::optional<nlohmann::json> paused;
  std::thread pauser([&] {
    paused = backend::control_request(xbbd.control_socket(), {{"command", "pause"}, {"device", "5/xvda"}});
  });
  // While the drain takes its 300 ms, the supervisor answers.
  auto list = backend::control_request(xbbd.control_socket(), {{"command", "list"}}, 5000ms);
  EXPECT_TRUE(list.value("ok", false)) << list.dump();
  pauser.join();
  ASSERT_TRUE(paused && paused->value("ok", false)) << (paused ? paused->dump() : "no answer");
  while (writes.collect(0ms) > 0) {
  }
  EXPECT_EQ(disk_a_->in_flight(), 0u) << "a pause answers what was in flight";
  EXPECT_EQ(writes.failed, 0u);
  auto resumed = backend::control_request(xbbd.control_socket(), {{"command", "resume"}, {"device", "5/xvda"}});
  EXPECT_TRUE(resumed.value("ok", false)) << resumed.dump();
  std::vector<std::byte> out(8 * 512);
  ASSERT_EQ(disk_a_->read(0, out), 0);
  EXPECT_TRUE(disk_a_->violations().empty());
}

}  // namespace
}  // namespace xbb::backendtest
