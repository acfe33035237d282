// The soak: many guests (16 by default) connect, do verified random I/O
// against a model, reconnect, get detached and removed and come back, for a
// configurable time, while the administrator turns fault injection on and off
// on their disks (what `xbbctl fault` does). At the end every device is gone
// and the process must be back where it started after warm-up: no descriptor,
// thread, mapping (the guests hold no grant the backend still maps, and
// /proc/self/maps is back to its size) or memory beyond a generous bound left
// behind, and every request every guest made was answered.
//
//   XBB_SOAK_SECONDS=1800 XBB_SOAK_GUESTS=32 build/tests/backend/backend_sim_soak_test
//
// CI runs it for XBB_SOAK_SECONDS (60 by default). The figures are printed.
#include <dirent.h>
#include <gtest/gtest.h>
#include <malloc.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/backend/DaemonHarness.hpp"
#include "tests/backend/Polling.hpp"
#include "tests/backend/DiskModel.hpp"
#include "tests/backend/RandomIo.hpp"
#include "xenstore/WithTransaction.hpp"

namespace xbb::backendtest {
namespace {

using frontend::VbdSpec;
using xs::XenbusState;
using Clock = std::chrono::steady_clock;

unsigned env_unsigned(const char* name, unsigned fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  return static_cast<unsigned>(std::strtoul(text, nullptr, 10));
}

// Mappings of something (a memfd: guest pages and rings the backend maps, a
// device, a library), not anonymous memory, which allocators map and keep
// as they see fit (ASan's never gives a size class back).
size_t count_backed_mappings() {
  std::ifstream in("/proc/self/maps");
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    // address perms offset dev inode [path]
    std::istringstream fields(line);
    std::string address, perms, offset, dev, inode, path;
    fields >> address >> perms >> offset >> dev >> inode >> path;
    if (!path.empty() && path[0] != '[') ++n;
  }
  return n;
}

// A line of /proc/self/status in KiB ("RssAnon:   1234 kB").
size_t status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(field + ":", 0) == 0) return std::strtoull(line.c_str() + field.size() + 1, nullptr, 10);
  }
  return 0;
}

// The daemon's own memory is anonymous (heap, RAM disks, bounce buffers);
// the guests' memory is shared (memfds), and grows as they touch more of
// their pages, which says nothing about leaks: it is reported apart.
struct ProcessFigures {
  size_t fds = 0, threads = 0, maps = 0, anon = 0, shmem = 0;
  static ProcessFigures now() {
    // Freed memory that malloc keeps in its per-thread arenas is not a leak.
    ::malloc_trim(0);
    return {count_dir_entries("/proc/self/fd"), count_dir_entries("/proc/self/task"), count_backed_mappings(),
            status_kib("RssAnon"), status_kib("RssShmem")};
  }
};

// Totals over every guest (guest threads add, the test reads at the end).
struct Totals {
  std::atomic<uint64_t> requests{0}, failures{0}, reads_verified{0}, connects{0}, reconnects{0}, removals{0},
      detaches{0}, fault_changes{0};
};

class SoakGuest {
 public:
  SoakGuest(DaemonHarness& h, xs::DomId domid, std::string target, bool persistent_target, uint32_t seed)
      : h_(h), domid_(domid), target_(std::move(target)), persistent_target_(persistent_target), rng_(seed) {
    guest_ = h.world().add_guest(domid, 2048);
    toolstack_ = std::make_unique<frontend::SimToolstack>(h.world().store());
  }

  void run(Clock::time_point deadline, Totals& totals) {
    try {
      while (Clock::now() < deadline && error_.empty()) step(totals);
      teardown(totals);
    } catch (const std::exception& e) {
      error_ = "guest " + std::to_string(domid_) + ": " + e.what();
      // Leave nothing of ours behind, so that the leak checks measure xbbd.
      try {
        disk_.reset();
        if (attached_) {
          xs::with_transaction(toolstack_->xs(), [&](xs::TxId tx) {
            toolstack_->xs().rm(tx, frontend::SimToolstack::backend_path(domid_, 51712));
            toolstack_->xs().rm(tx, frontend::SimToolstack::frontend_path(domid_, 51712));
          });
        }
      } catch (const std::exception&) {
      }
    }
  }
  // Brings the guest to "no disk" (the end of the soak, and warm-up).
  void teardown(Totals& totals) {
    if (disk_ && disk_->connected()) disk_->close();
    if (attached_) remove(totals);
    disk_.reset();
  }
  const std::string& error() const { return error_; }
  uint32_t grants_held() const { return guest_->granted(); }
  xs::DomId domid() const { return domid_; }

 private:
  std::string device() const { return std::to_string(domid_) + "/51712"; }

  void attach() {
    VbdSpec spec;
    spec.domid = domid_;
    spec.target = target_;
    toolstack_->add_vbd(spec);
    attached_ = true;
    // RAM is new at every attach; a file keeps what the last attachment wrote.
    if (model_ && !persistent_target_) model_->reset();
  }

  void connect(Totals& totals) {
    frontend::FrontendConfig config;
    config.queues = 1 + rng_() % 2;
    config.ring_page_order = rng_() % 3;
    config.persistent_grants = rng_() % 2;
    config.protocol = rng_() % 3 == 0 ? std::optional(ring::Abi::X86_32) : std::nullopt;
    if (!disk_) disk_ = guest_->disk(51712, config);
    disk_->config() = config;
    disk_->connect();
    if (!model_) model_ = std::make_unique<DiskModel>(disk_->backend().sectors);
    totals.connects++;
  }

  void io(Totals& totals) {
    const unsigned requests = 20 + rng_() % 120;
    auto tally = run_random_io(*disk_, *model_, requests, 1 + rng_() % 16, uint32_t(rng_()),
                               /*after_completion=*/{}, /*forget_failed_writes=*/true);
    if (disk_->in_flight() != 0) throw std::runtime_error("requests left unanswered after a batch");
    if (!tally.first_error.empty() && tally.first_error.rfind("status", 0) != 0)
      throw std::runtime_error("data: " + tally.first_error);  // a failed request is fine, wrong data is not
    if (!disk_->violations().empty()) throw std::runtime_error("protocol: " + disk_->violations().front());
    totals.requests += requests;
    totals.failures += tally.failures;
    totals.reads_verified += tally.reads_verified;
  }

  // libxl's removal, with the guest answering Closing and Closed.
  void remove(Totals& totals) {
    bool closed = false;
    std::thread toolstack([&] { closed = toolstack_->remove_vbd(domid_, 51712, 20s); });
    if (disk_ && disk_->connected()) {
      disk_->wait_backend_state(XenbusState::Closing, 20s);
      disk_->close();
    }
    toolstack.join();
    if (!closed) throw std::runtime_error("a removal was never answered with Closed");
    disk_.reset();
    attached_ = false;
    totals.removals++;
  }

  // xbbctl detach: the device goes Closing, the guest closes, and the
  // toolstack then removes the directories (there is nobody left to answer
  // a second removal).
  void detach(Totals& totals) {
    auto answer = h_.command({{"command", "detach"}, {"device", device()}});
    if (!answer.value("ok", false)) throw std::runtime_error("detach refused: " + answer.dump());
    if (!disk_->wait_backend_state(XenbusState::Closing, 20s) && disk_->backend_state() != XenbusState::Closed)
      throw std::runtime_error("detach never reached Closing");
    disk_->close();
    disk_.reset();
    xs::with_transaction(toolstack_->xs(), [&](xs::TxId tx) {
      toolstack_->xs().rm(tx, frontend::SimToolstack::backend_path(domid_, 51712));
      toolstack_->xs().rm(tx, frontend::SimToolstack::frontend_path(domid_, 51712));
    });
    // A detached device is served again only once the daemon has seen its
    // directory go: two round trips through the control loop.
    h_.command({{"command", "list"}});
    h_.command({{"command", "list"}});
    attached_ = false;
    totals.detaches++;
  }

  void step(Totals& totals) {
    if (!attached_) attach();
    if (!disk_ || !disk_->connected()) {
      connect(totals);
      return;
    }
    const unsigned dice = rng_() % 100;
    if (dice < 70) {
      io(totals);
    } else if (dice < 85) {
      disk_->close();
      disk_->reinitialise();
      totals.reconnects++;
    } else if (dice < 95) {
      remove(totals);
    } else {
      detach(totals);
    }
  }

  DaemonHarness& h_;
  xs::DomId domid_;
  std::string target_;
  bool persistent_target_;
  std::mt19937_64 rng_;
  std::unique_ptr<frontend::InProcessGuest> guest_;
  std::unique_ptr<frontend::SimToolstack> toolstack_;  // this guest's own: one per thread
  std::unique_ptr<frontend::SoftBlkfront> disk_;
  std::unique_ptr<DiskModel> model_;
  bool attached_ = false;
  std::string error_;
};

TEST(Soak, ManyGuestsUnderFaultsLeakNothing) {
  const unsigned seconds = env_unsigned("XBB_SOAK_SECONDS", 60);
  const unsigned guests = std::max(1u, env_unsigned("XBB_SOAK_GUESTS", 16));
  auto options = default_options();
  options.vbd.fault_injection = true;
  options.vbd.max_queues = 2;
  options.vbd.bounce_pages_per_queue = 256;
  DaemonHarness h(options);

  std::vector<std::unique_ptr<TempFile>> files;
  std::vector<std::unique_ptr<SoakGuest>> all;
  for (unsigned g = 0; g < guests; ++g) {
    // Half RAM disks, half files (io_uring), all 8 MiB.
    const bool file = g % 2 == 1;
    std::string target = "ram:8M";
    if (file) {
      files.push_back(std::make_unique<TempFile>(8ull << 20));
      target = files.back()->path();
    }
    all.push_back(std::make_unique<SoakGuest>(h, xs::DomId(100 + g), target, file, 0x50a4 + g));
  }
  Totals warmup, totals;
  auto run_all = [&](Clock::time_point deadline, Totals& totals) {
    std::atomic<bool> done{false};
    // The administrator: fault injection on and off on random disks.
    std::thread admin([&] {
        std::mt19937 rng(7);
        while (!done.load()) {
          const unsigned g = rng() % guests;
          const std::string spec = rng() % 3 == 0 ? "off"
                                   : "rate=" + std::to_string(50 + rng() % 500) + ",ops=read+write+flush,seed=" +
                                         std::to_string(rng()) + (rng() % 2 ? ",latency=0-2ms" : "");
          auto answer = h.command({{"command", "fault"}, {"device", std::to_string(100 + g) + "/xvda"}, {"spec", spec}});
          if (answer.value("ok", false)) totals.fault_changes++;  // refused while that disk is away
          std::this_thread::sleep_for(20ms);
        }
      });
    std::vector<std::thread> threads;
    for (auto& guest : all) threads.emplace_back([&, g = guest.get()] { g->run(deadline, totals); });
    for (auto& t : threads) t.join();
    done = true;
    admin.join();
    for (auto& guest : all) ASSERT_EQ(guest->error(), "");
  };

  // Warm-up: a few seconds of the same mix, so pools, caches and the
  // allocator's arenas exist before the baseline.
  run_all(Clock::now() + std::chrono::seconds(std::min(seconds, 5u)), warmup);
  for (int i = 0; i < 1000 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(h.device_count(), 0u);
  const auto before = ProcessFigures::now();

  const auto t0 = Clock::now();
  run_all(t0 + std::chrono::seconds(seconds), totals);
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int i = 0; i < 1000 && h.device_count() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(h.device_count(), 0u) << h.command({{"command", "list"}}).dump();
  for (auto& guest : all) EXPECT_EQ(guest->grants_held(), 0u) << "guest " << guest->domid() << " holds grants";
  const auto after = ProcessFigures::now();

  std::printf("soak: %u guests, %.0f s: %llu requests (%llu failed by injection, %llu reads verified), "
              "%llu connects, %llu reconnects, %llu removals, %llu detaches, %llu fault changes\n",
              guests, elapsed, static_cast<unsigned long long>(totals.requests.load()),
              static_cast<unsigned long long>(totals.failures.load()),
              static_cast<unsigned long long>(totals.reads_verified.load()),
              static_cast<unsigned long long>(totals.connects.load()),
              static_cast<unsigned long long>(totals.reconnects.load()),
              static_cast<unsigned long long>(totals.removals.load()),
              static_cast<unsigned long long>(totals.detaches.load()),
              static_cast<unsigned long long>(totals.fault_changes.load()));
  std::printf("soak: fds %zu -> %zu, threads %zu -> %zu, maps %zu -> %zu, anonymous RSS %zu -> %zu KiB "
              "(guest memory %zu -> %zu KiB)\n",
              before.fds, after.fds, before.threads, after.threads, before.maps, after.maps, before.anon, after.anon,
              before.shmem, after.shmem);

  EXPECT_LE(after.fds, before.fds) << "descriptors leaked";
  EXPECT_LE(after.threads, before.threads) << "threads left running";
  EXPECT_LE(after.maps, before.maps) << "mappings left behind";
#if defined(XBB_SANITIZE) || defined(XBB_TSAN)
  std::printf("soak: RSS bound not checked under a sanitizer (its quarantine and shadow memory grow on purpose)\n");
#else
  // Generous: allocator arenas of 16-32 threads may keep some freed memory.
  EXPECT_LE(after.anon, before.anon + 64 * 1024) << "anonymous RSS grew by more than 64 MiB";
#endif
}

}  // namespace
}  // namespace xbb::backendtest
