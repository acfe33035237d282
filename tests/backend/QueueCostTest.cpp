// What one disk and one queue cost the daemon, measured on xbbd-sim (the real
// xbbd main, a separate process) from /proc: descriptors, anonymous memory
// (heap, request slots, bounce buffers touched) and guest pages kept mapped
// (persistent grants and rings). Printed for the README; the descriptor
// counts are also asserted, so that a new descriptor per queue is a decision
// rather than an accident (the README's limits depend on them).
//
// The simulation's grant table and event channels are sockets and eventfds
// where real Xen has one /dev/xen/gntdev and one /dev/xen/evtchn descriptor
// per queue: the test counts the engine's and the storage's own descriptors
// by subtracting the simulated handles' (SimEventChannel: an epoll fd and two
// eventfds per bound port; SimGrantTable: none of its own).
#include <dirent.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "tests/backend/CrossProcessDaemon.hpp"
#include "tests/backend/DaemonHarness.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using frontend::BlkRequest;
using frontend::FrontendConfig;
using frontend::VbdSpec;

struct Usage {
  size_t fds = 0;
  std::multiset<std::string> kinds;
  uint64_t anon_kb = 0;   // RssAnon: heap, slots, bounce buffers touched
  uint64_t shmem_kb = 0;  // RssShmem: in the simulation, mapped guest pages (grants, rings)
};

Usage usage(pid_t pid) {
  Usage u;
  const std::string dir = "/proc/" + std::to_string(pid);
  if (DIR* d = ::opendir((dir + "/fd").c_str())) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char target[256] = {};
      const ssize_t n = ::readlink((dir + "/fd/" + e->d_name).c_str(), target, sizeof target - 1);
      std::string kind(target, n > 0 ? size_t(n) : 0);
      // Sockets are the daemon's xenstore, broker and control connections:
      // none is a disk's, and a control connection may still be closing.
      if (kind.rfind("socket:", 0) == 0) continue;
      ++u.fds;
      if (kind.rfind("/tmp/", 0) == 0) kind = "file " + kind.substr(kind.rfind('/'));
      if (kind.rfind("/memfd:", 0) == 0) kind = "memfd";
      u.kinds.insert(kind);
    }
    ::closedir(d);
  }
  std::ifstream status(dir + "/status");
  std::string line;
  while (std::getline(status, line)) {
    std::istringstream fields(line);
    std::string key;
    uint64_t kb = 0;
    fields >> key >> kb;
    if (key == "RssAnon:") u.anon_kb = kb;
    if (key == "RssShmem:") u.shmem_kb = kb;
  }
  return u;
}

struct Case {
  const char* name;
  unsigned order;
  unsigned queues;
  bool persistent;
  uint32_t request_sectors;  // largest request
  unsigned depth;            // per queue
};

struct Cost {
  Usage before, connected, after;
  uint64_t mapped_grant_pages = 0;
};

// One daemon process per case, so that nothing from another case is counted.
Cost measure(const Case& c) {
  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "4"});
  const pid_t pid = xbbd.process().pid();
  auto guest = xbbd.add_guest(3, 65536);
  TempFile image(256ull << 20);
  VbdSpec spec;
  spec.domid = 3;
  spec.target = image.path();
  Cost cost;
  cost.before = usage(pid);
  xbbd.toolstack().add_vbd(spec);
  FrontendConfig config;
  config.ring_page_order = c.order;
  config.queues = c.queues;
  config.persistent_grants = c.persistent;
  config.move_data = false;  // the daemon's cost, not the frontend's copies
  auto disk = guest->disk(spec.devid, config);
  disk->connect();
  EXPECT_EQ(disk->backend().queues, c.queues);
  EXPECT_EQ(disk->backend().ring_page_order, c.order);
  cost.connected = usage(pid);

  // Random reads and writes of up to request_sectors, `depth` in flight per
  // queue, until every queue has seen many ring's worth.
  std::mt19937 rng(5);
  const uint64_t sectors = (256ull << 20) / 512;
  const unsigned total = 4000;
  unsigned issued = 0, done = 0;
  BlkRequest r;
  while (done < total) {
    while (issued < total && disk->in_flight() < size_t{c.depth} * c.queues) {
      const uint32_t count = 8 * (1 + rng() % (c.request_sectors / 8));
      r.kind = rng() % 2 ? BlkRequest::Kind::Read : BlkRequest::Kind::Write;
      r.sector = (rng() % ((sectors - count) / 8)) * 8;
      r.sectors = count;
      r.data.resize(r.kind == BlkRequest::Kind::Write ? count * 512 : 0);
      if (!disk->submit(r)) break;
      ++issued;
    }
    for (auto& completion : disk->poll(std::chrono::milliseconds(5000))) {
      EXPECT_EQ(completion.status, 0);
      ++done;
    }
  }
  cost.after = usage(pid);
  auto stats = backend::control_request(xbbd.control_socket(), {{"command", "stats"}, {"device", "3/51712"}});
  cost.mapped_grant_pages = stats["devices"][0]["mapped_grant_pages"].get<uint64_t>();
  disk->close();
  return cost;
}

// A guest as Linux blkfront connects by default (one ring page, a queue per
// vCPU, persistent grants, indirect requests), and the most a guest can ask
// of a queue: an order-5 ring of 1024 requests, 1 MiB indirect requests,
// more distinct pages than the persistent-grant cache holds (or, without
// persistent grants, as many bounce buffers as its requests need).
TEST(QueueCost, DescriptorsAndMemoryPerDiskAndPerQueue) {
  const Case cases[] = {
      {"Linux defaults, 1 queue (order 0, persistent)", 0, 1, true, 128, 32},
      {"Linux defaults, 4 queues", 0, 4, true, 128, 32},
      {"maximum, 1 queue (order 5, 1 MiB, persistent)", 5, 1, true, 2048, 8},
      {"maximum, 4 queues", 5, 4, true, 2048, 5},
      {"maximum, 1 queue, grant copy", 5, 1, false, 2048, 8},
  };
  std::printf("%-48s %5s %14s %14s %13s\n", "case (file target, xbbd-sim)", "fds", "KiB connected",
              "KiB after I/O", "mapped pages");
  std::vector<Cost> costs;
  for (const Case& c : cases) {
    costs.push_back(measure(c));
    const Cost& cost = costs.back();
    std::printf("%-48s %5ld %14lld %14lld %13llu\n", c.name,
                static_cast<long>(cost.connected.fds) - static_cast<long>(cost.before.fds),
                static_cast<long long>(cost.connected.anon_kb) - static_cast<long long>(cost.before.anon_kb),
                static_cast<long long>(cost.after.anon_kb) - static_cast<long long>(cost.before.anon_kb),
                static_cast<unsigned long long>(cost.mapped_grant_pages));
    EXPECT_EQ(cost.connected.kinds.count("anon_inode:[io_uring]"), c.queues) << "one io_uring per queue: " << c.name;
    if (c.persistent && c.order == 5) {
      // Every queue's ring and a full persistent-grant cache, less at most
      // one purge (5%: 52 grants) made after the cache last filled up.
      EXPECT_LE(cost.mapped_grant_pages, c.queues * ((1u << c.order) + 1056u)) << c.name;
      EXPECT_GE(cost.mapped_grant_pages, c.queues * ((1u << c.order) + 1056u - 52u)) << c.name;
    } else if (c.persistent) {
      EXPECT_LE(cost.mapped_grant_pages, c.queues * ((1u << c.order) + 1056u)) << c.name;
    } else {
      EXPECT_EQ(cost.mapped_grant_pages, c.queues * (1u << c.order)) << c.name << ": only the rings";
    }
  }
  auto fds = [&](size_t i) { return static_cast<long>(costs[i].connected.fds) - static_cast<long>(costs[i].before.fds); };
  auto kib = [&](size_t i) { return static_cast<long long>(costs[i].connected.anon_kb - costs[i].before.anon_kb); };
  // Descriptors do not depend on what a queue negotiates, and each queue
  // costs the same.
  EXPECT_EQ(fds(0), fds(2));
  EXPECT_EQ(fds(0), fds(4));
  EXPECT_EQ(fds(1) - fds(0), fds(3) - fds(2));
  EXPECT_EQ((fds(1) - fds(0)) % 3, 0);
  const long per_queue_fds = (fds(1) - fds(0)) / 3;
  std::printf("per queue: %ld descriptors (simulated Xen handles included), %lld KiB at order 0, %lld KiB at order 5\n",
              per_queue_fds, (kib(1) - kib(0)) / 3, (kib(3) - kib(2)) / 3);
  std::printf("per disk besides its queues: %ld descriptors, %lld KiB\n", fds(0) - per_queue_fds,
              kib(0) - (kib(1) - kib(0)) / 3);
  EXPECT_GT(kib(2), kib(0)) << "a larger ring costs more: the slots are sized to the ring negotiated";
}

}  // namespace
}  // namespace xbb::backendtest
