// A guest in its own process: connects to a SimHypervisor's broker and a
// SimStoreServer, attaches one disk with SoftBlkfront and runs a scripted
// workload, reporting progress on stdout one line at a time:
//   connected                 the disk is Connected
//   ack SECTOR                a write of 8 sectors at SECTOR was acknowledged
//   verified N                (mode cycle) N reads matched what was written
//   closed                    (mode cycle) the disk was closed cleanly
// Modes: "writer" writes pattern pages forever (until killed); "cycle" writes,
// reads back, verifies and closes, then exits 0.
//
// usage: xbb_sim_guest STORE_SOCKET BROKER_SOCKET DOMID DEVID MODE
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "tests/frontend/Pattern.hpp"
#include "tests/frontend/SimParts.hpp"
#include "tests/frontend/SoftBlkfront.hpp"

int main(int argc, char** argv) {
  using namespace xbb;
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s STORE_SOCKET BROKER_SOCKET DOMID DEVID writer|cycle\n", argv[0]);
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
    std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "xbb_sim_guest: %s\n", e.what());
    return 1;
  }
}
