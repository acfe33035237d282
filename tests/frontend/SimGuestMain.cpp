// A guest in its own process: connects to a SimHypervisor's broker and a
// SimStoreServer, attaches one disk with SoftBlkfront and runs a scripted
// workload, reporting progress on stdout one line at a time:
//   connected                 the disk is Connected
//   ack SECTOR                a write of 8 sectors at SECTOR was acknowledged
//   verified N                (mode cycle) N reads matched what was written
//   closed                    (mode cycle) the disk was closed cleanly
//   round N                   (mode verify) N rounds were written and verified
// Modes: "writer" writes pattern pages forever (until killed); "cycle" writes,
// reads back, verifies and closes, then exits 0; "verify" keeps a ring's worth
// of writes, then of reads, in flight round after round, checking every read
// against what the round wrote, forever (until killed). Exit status: 3 an I/O
// error response, 4 data that does not match, 5 backend protocol violations.
//
// usage: xbb_sim_guest STORE_SOCKET BROKER_SOCKET DOMID DEVID MODE
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/frontend/Pattern.hpp"
#include "tests/frontend/SimParts.hpp"
#include "tests/frontend/SoftBlkfront.hpp"

namespace {

// Submits every request (retrying while the rings are full) and returns the
// completions by handle once all of them are answered.
std::map<uint64_t, xbb::frontend::BlkCompletion> run_batch(xbb::frontend::SoftBlkfront& disk,
                                                           const std::vector<xbb::frontend::BlkRequest>& batch,
                                                           std::vector<uint64_t>& handles) {
  std::map<uint64_t, xbb::frontend::BlkCompletion> done;
  handles.clear();
  for (const auto& request : batch) {
    for (;;) {
      if (auto handle = disk.submit(request)) {
        handles.push_back(*handle);
        break;
      }
      for (auto& c : disk.poll(std::chrono::milliseconds(1000))) done.emplace(c.handle, std::move(c));
    }
  }
  while (done.size() < batch.size()) {
    auto completions = disk.poll(disk.config().timeout);
    if (completions.empty()) throw std::runtime_error("the backend stopped answering");
    for (auto& c : completions) done.emplace(c.handle, std::move(c));
  }
  return done;
}

int verify_forever(xbb::frontend::SoftBlkfront& disk, xbb::xs::DomId domid) {
  using xbb::frontend::BlkRequest;
  const size_t depth = disk.queue_depth();
  const uint64_t span = disk.backend().sectors;
  if (span < depth * 8) throw std::runtime_error("disk too small for a ring's worth of pages");
  std::vector<uint64_t> handles;
  for (uint64_t round = 1;; ++round) {
    std::vector<BlkRequest> writes(depth), reads(depth);
    for (size_t i = 0; i < depth; ++i) {
      writes[i].kind = BlkRequest::Kind::Write;
      writes[i].sector = i * 8;
      writes[i].data = xbb::frontend::pattern(domid, i * 8, 8, round);
      reads[i].kind = BlkRequest::Kind::Read;
      reads[i].sector = i * 8;
      reads[i].sectors = 8;
    }
    for (auto& [handle, c] : run_batch(disk, writes, handles)) {
      if (c.status != 0) return 3;
    }
    auto done = run_batch(disk, reads, handles);
    for (size_t i = 0; i < depth; ++i) {
      const auto& c = done.at(handles[i]);
      if (c.status != 0) return 3;
      if (c.data != writes[i].data) return 4;
    }
    if (!disk.violations().empty()) return 5;
    std::printf("round %llu\n", static_cast<unsigned long long>(round));
    std::fflush(stdout);
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace xbb;
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s STORE_SOCKET BROKER_SOCKET DOMID DEVID writer|cycle|verify\n", argv[0]);
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  try {
    const auto domid = static_cast<xs::DomId>(std::stoul(argv[3]));
    const auto devid = static_cast<uint32_t>(std::stoul(argv[4]));
    const std::string mode = argv[5];
    auto memory = frontend::parts::make_memory(domid, 2048);
    auto link = frontend::parts::connect_broker(argv[2], *memory);
    auto xs = frontend::parts::connect_store_socket(argv[1], domid);
    frontend::SoftBlkfront disk(*xs, *memory, link, devid);
    disk.connect();
    std::printf("connected\n");
    std::fflush(stdout);
    const uint64_t span = disk.backend().sectors;
    if (mode == "writer") {
      for (uint64_t i = 0;; ++i) {
        const uint64_t sector = (i * 8) % (span - 8);
        auto data = frontend::pattern(domid, sector, 8, i);
        if (disk.write(sector, data) != 0) return 3;
        std::printf("ack %llu\n", static_cast<unsigned long long>(sector));
        std::fflush(stdout);
      }
    }
    if (mode == "cycle") {
      unsigned verified = 0;
      for (uint64_t i = 0; i < 64; ++i) {
        auto data = frontend::pattern(domid, i * 8, 8, 1);
        if (disk.write(i * 8, data) != 0) return 3;
      }
      for (uint64_t i = 0; i < 64; ++i) {
        std::vector<std::byte> out(8 * 512);
        if (disk.read(i * 8, out) != 0) return 4;
        if (out == frontend::pattern(domid, i * 8, 8, 1)) ++verified;
      }
      std::printf("verified %u\n", verified);
      disk.close();
      std::printf("closed\n");
      std::fflush(stdout);
      return disk.violations().empty() ? 0 : 5;
    }
    if (mode == "verify") return verify_forever(disk, domid);
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xbb_sim_guest: %s\n", e.what());
    return 1;
  }
}
