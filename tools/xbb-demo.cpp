// xbb-demo: xbbd end to end on a simulated Xen host. The daemon (the same
// backend::Daemon xbbd runs) serves a disk to a software blkfront that
// negotiates like Linux xen-blkfront and runs a verified random workload;
// the toolstack side then detaches the disk the way libxl does. Prints what
// happened and exits non-zero if any data or protocol check failed.
#include <getopt.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <future>
#include <algorithm>
#include <cstring>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <xen/io/blkif.h>

#include "backend/daemon/Daemon.hpp"
#include "storage/Target.hpp"
#include "tests/frontend/Pattern.hpp"
#include "tests/frontend/SimWorld.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using xbb::xs::XenbusState;

const char* kUsage = R"(Usage: xbb-demo [--target TARGET] [--requests N] [--queues N] [--json]

Runs xbbd against a simulated Xen host: a software blkfront in a simulated
guest connects to the daemon, writes and reads N random requests (4 KiB to
1 MiB) checked against a model, flushes, discards, and is detached.

  --target TARGET   storage to serve (default ram:256M; a file path works too)
  --requests N      requests in the workload (default 20000)
  --queues N        queues the frontend asks for (default 2)
  --json            print the result as JSON
)";

struct Result {
  uint64_t writes = 0, reads = 0, bytes_written = 0, bytes_read = 0, mismatches = 0, errors = 0;
  double seconds = 0;
};

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  std::string target = "ram:256M";
  uint64_t requests = 20000;
  unsigned queues = 2;
  bool as_json = false;
  static const option long_options[] = {{"target", required_argument, nullptr, 't'},
                                        {"requests", required_argument, nullptr, 'n'},
                                        {"queues", required_argument, nullptr, 'q'},
                                        {"json", no_argument, nullptr, 'j'},
                                        {"help", no_argument, nullptr, 'h'},
                                        {nullptr, 0, nullptr, 0}};
  int opt;
  try {
    while ((opt = getopt_long(argc, argv, "t:n:q:jh", long_options, nullptr)) != -1) {
      switch (opt) {
        case 't': target = optarg; break;
        case 'n': requests = std::stoull(optarg); break;
        case 'q': queues = static_cast<unsigned>(std::stoul(optarg)); break;
        case 'j': as_json = true; break;
        case 'h': std::cout << kUsage; return 0;
        default: std::cerr << kUsage; return 2;
      }
    }
  } catch (const std::exception&) {
    std::cerr << "xb-demo: bad number\n" << kUsage;
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  auto say = [&](const std::string& line) {
    if (!as_json) std::cout << line << std::endl;
  };

  xbb::frontend::SimWorld world;
  auto dom0 = world.connect(0);
  xbb::backend::DaemonOptions options;
  options.vbd.max_queues = 4;
  xbb::backend::Daemon daemon(*dom0, world.hypervisor(), options, [](const std::string& t, bool ro) {
    xbb::storage::OpenOptions o;
    o.read_only = ro;
    return xbb::storage::open_target(t, o);
  });
  std::thread control([&] { daemon.run(); });

  nlohmann::json report;
  bool ok = true;
  Result r;
  try {
    say("xbb-demo: xbbd on a simulated Xen host, serving " + target);
    const xbb::xs::DomId domid = 1;
    const uint32_t devid = 51712;  // xvda
    auto guest = world.add_guest(domid, 16384);
    xbb::frontend::VbdSpec spec;
    spec.domid = domid;
    spec.devid = devid;
    spec.target = target;
    const auto t0 = Clock::now();
    world.toolstack().add_vbd(spec);
    if (!world.toolstack().wait_backend_state(domid, devid, XenbusState::InitWait, 10s)) {
      throw std::runtime_error("the backend did not reach InitWait");
    }
    const double initwait_ms = ms_since(t0);
    say(fmt::format("  toolstack: disk xvda for domain {} written; backend InitWait after {:.1f} ms", domid, initwait_ms));

    xbb::frontend::FrontendConfig config;
    config.ring_page_order = 3;
    config.queues = queues;
    config.persistent_grants = true;
    auto disk = guest->disk(devid, config);
    disk->connect();
    const auto& be = disk->backend();
    say(fmt::format("  guest: connected — {} MiB, {} queue(s), ring order {}, indirect up to {} segments, "
                    "persistent grants {}, flush {}, discard {}",
                    be.sectors * 512 >> 20, be.queues, be.ring_page_order, be.max_indirect_segments,
                    be.persistent ? "yes" : "no", be.flush ? "yes" : "no", be.discard ? "yes" : "no"));

    // The workload: random reads and writes of 4 KiB..1 MiB (4 KiB aligned)
    // with up to 32 in flight, every read compared with a model of the disk.
    const uint64_t disk_sectors = be.sectors;
    std::mt19937_64 rng(42);
    std::map<uint64_t, uint64_t> written;  // 4 KiB block -> generation written last (absent: never written)
    std::vector<std::byte> model(disk_sectors * 512);
    uint64_t generation = 0;
    struct Pending {
      bool read;
      uint64_t sector;
      uint32_t sectors;
    };
    std::map<uint64_t, Pending> pending;
    std::set<uint64_t> busy_blocks;
    uint64_t issued = 0;
    const auto start = Clock::now();
    auto complete = [&](const xbb::frontend::BlkCompletion& c) {
      auto it = pending.find(c.handle);
      if (it == pending.end()) return;
      const Pending p = it->second;
      pending.erase(it);
      for (uint64_t b = p.sector / 8; b < (p.sector + p.sectors) / 8; ++b) busy_blocks.erase(b);
      if (c.status != BLKIF_RSP_OKAY) {
        ++r.errors;
        return;
      }
      if (p.read) {
        ++r.reads;
        r.bytes_read += p.sectors * 512ull;
        if (c.data.size() != p.sectors * 512ull ||
            std::memcmp(c.data.data(), model.data() + p.sector * 512, c.data.size()) != 0) {
          ++r.mismatches;
        }
      } else {
        ++r.writes;
        r.bytes_written += p.sectors * 512ull;
      }
    };
    while (issued < requests || !pending.empty()) {
      while (issued < requests && pending.size() < 32) {
        const uint32_t blocks = 1u << std::uniform_int_distribution<int>(0, 8)(rng);  // 4 KiB .. 1 MiB
        const uint64_t max_block = disk_sectors / 8 - blocks;
        const uint64_t block = std::uniform_int_distribution<uint64_t>(0, max_block)(rng);
        bool clash = false;
        for (uint64_t b = block; b < block + blocks && !clash; ++b) clash = busy_blocks.count(b) != 0;
        if (clash) break;  // overlapping requests in flight have no defined order
        xbb::frontend::BlkRequest request;
        request.sector = block * 8;
        request.sectors = blocks * 8;
        const bool read = std::uniform_int_distribution<int>(0, 1)(rng) == 0;
        if (read) {
          request.kind = xbb::frontend::BlkRequest::Kind::Read;
        } else {
          request.kind = xbb::frontend::BlkRequest::Kind::Write;
          request.data = xbb::frontend::pattern(7, request.sector, request.sectors, ++generation);
        }
        auto handle = disk->submit(request);
        if (!handle) break;
        if (!read) std::memcpy(model.data() + request.sector * 512, request.data.data(), request.data.size());
        for (uint64_t b = block; b < block + blocks; ++b) busy_blocks.insert(b);
        pending[*handle] = Pending{read, request.sector, request.sectors};
        ++issued;
      }
      for (auto& c : disk->poll(1000ms)) complete(c);
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    say(fmt::format("  guest: {} writes ({:.1f} MiB) and {} reads ({:.1f} MiB) in {:.2f} s — {:.0f} IOPS; "
                    "{} mismatched reads, {} error responses",
                    r.writes, r.bytes_written / 1048576.0, r.reads, r.bytes_read / 1048576.0, r.seconds,
                    (r.reads + r.writes) / r.seconds, r.mismatches, r.errors));
    ok = ok && r.mismatches == 0 && r.errors == 0;

    const int16_t flush = be.flush ? disk->flush() : int16_t{BLKIF_RSP_OKAY};
    say(fmt::format("  guest: flush {}", flush == BLKIF_RSP_OKAY ? "ok" : "FAILED"));
    ok = ok && flush == BLKIF_RSP_OKAY;
    if (be.discard) {
      const int16_t d = disk->discard(0, 2048);
      std::vector<std::byte> back(2048 * 512);
      const int16_t rd = disk->read(0, back);
      const bool zeros = std::all_of(back.begin(), back.end(), [](std::byte b) { return b == std::byte{0}; });
      say(fmt::format("  guest: discard of the first MiB {}; it reads back as zeros: {}",
                      d == BLKIF_RSP_OKAY ? "ok" : "FAILED", rd == BLKIF_RSP_OKAY && zeros ? "yes" : "NO"));
      ok = ok && d == BLKIF_RSP_OKAY && rd == BLKIF_RSP_OKAY && zeros;
    }
    if (!disk->violations().empty()) {
      ok = false;
      for (auto& v : disk->violations()) say("  guest: protocol violation by the backend: " + v);
    }

    // What xbbctl would show.
    std::promise<nlohmann::json> stats_promise;
    daemon.post([&] { stats_promise.set_value(daemon.handle_command({{"command", "stats"}})); });
    const auto stats = stats_promise.get_future().get();
    report["stats"] = stats;
    if (!as_json && stats.value("ok", false)) {
      for (const auto& d : stats["devices"]) {
        const auto& s = d["stats"];
        say(fmt::format("  xbbctl stats {}: {} requests received, {} completed, {} failed; {} coalesced; "
                        "{} normal / {} forced dispatches; p50 latency <= {} us",
                        d.value("device", ""), s["operations"]["read"].value("received", 0) +
                                                   s["operations"]["write"].value("received", 0),
                        s["operations"]["read"].value("completed", 0) + s["operations"]["write"].value("completed", 0),
                        s["operations"]["read"].value("failed", 0) + s["operations"]["write"].value("failed", 0),
                        s.value("coalesced_requests", 0), s.value("normal_dispatches", 0),
                        s.value("forced_dispatches", 0), s.value("latency_p50_us", 0)));
      }
    }

    // Detach as `xl block-detach` does.
    const auto t1 = Clock::now();
    std::string close_error;
    std::thread closer([&] {
      try {
        // The toolstack writes Closing itself, then waits for the backend's
        // Closed and removes the directories; a gone backend counts as closed.
        if (!disk->wait_backend(xbb::frontend::closing_or_gone, 10s)) throw std::runtime_error("the backend never closed");
        disk->close();
      } catch (const std::exception& e) {
        close_error = e.what();
      }
    });
    const bool removed = world.toolstack().remove_vbd(domid, devid, 10s);
    closer.join();
    const double detach_ms = ms_since(t1);
    say(fmt::format("  toolstack: block-detach {} after {:.1f} ms", removed ? "done, backend Closed" : "FAILED",
                    detach_ms));
    if (!close_error.empty()) say("  guest: closing the disk failed: " + close_error);
    report["detach_ms"] = detach_ms;
    ok = ok && removed && close_error.empty();
    report["initwait_ms"] = initwait_ms;
  } catch (const std::exception& e) {
    say(std::string("  FAILED: ") + e.what());
    report["error"] = e.what();
    ok = false;
  }
  daemon.request_stop();
  control.join();

  report["target"] = target;
  report["writes"] = r.writes;
  report["reads"] = r.reads;
  report["bytes_written"] = r.bytes_written;
  report["bytes_read"] = r.bytes_read;
  report["mismatches"] = r.mismatches;
  report["errors"] = r.errors;
  report["seconds"] = r.seconds;
  report["result"] = ok ? "pass" : "fail";
  if (as_json) {
    std::cout << report.dump(2) << std::endl;
  } else {
    std::cout << (ok ? "xbb-demo: PASS" : "xbb-demo: FAIL") << std::endl;
  }
  return ok ? 0 : 1;
}
