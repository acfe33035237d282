// `xbbctl stats --prometheus` against a live daemon (xbbd-sim, the real xbbd
// main on the simulated host) after real I/O, parsed with Prometheus's own
// text parser (python3-prometheus-client) and compared, value by value, with
// `xbbctl --json stats` (tests/tools/prometheus_parse_test.py).
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/backend/CrossProcessChild.hpp"
#include "tests/backend/CrossProcessDaemon.hpp"
#include "tests/frontend/Pattern.hpp"

namespace xbb::backendtest {
namespace {

using namespace std::chrono_literals;
using frontend::VbdSpec;

constexpr auto kHangGuard = 20s;

// Runs a program; its wait status and stdout.
std::pair<int, std::string> run(const std::vector<std::string>& argv) {
  CrossProcessChild child(argv);
  std::string out = child.read_all(kHangGuard);
  auto status = child.wait(kHangGuard);
  return {status.value_or(-1), out};
}

class TempDir {
 public:
  TempDir() {
    char dir[] = "/tmp/xbb-prometheus-test-XXXXXX";
    if (::mkdtemp(dir) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = dir;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(PrometheusExportTest, ExpositionParsesAndMatchesTheJsonStats) {
  TempDir dir;
  // A file disk whose name needs escaping in a label value: a quote, a
  // backslash and a space (the target is a label of xbbd_device_info).
  const std::string image = dir.path() + "/disk \"one\" \\ two.img";
  {
    std::ofstream create(image);
    ASSERT_TRUE(create) << image;
  }
  ASSERT_EQ(::truncate(image.c_str(), 8 << 20), 0);

  CrossProcessDaemon xbbd(XBBD_SIM_PATH, {"--max-queues", "2"});
  // Two disks: one with two queues on the file, one RAM disk.
  auto guest = xbbd.add_guest(6);
  VbdSpec file_spec;
  file_spec.domid = 6;
  file_spec.target = image;
  xbbd.toolstack().add_vbd(file_spec);
  VbdSpec ram_spec;
  ram_spec.domid = 6;
  ram_spec.devid = 51728;  // xvdb
  ram_spec.target = "ram:4M";
  xbbd.toolstack().add_vbd(ram_spec);
  frontend::FrontendConfig two_queues;
  two_queues.queues = 2;
  auto file_disk = guest->disk(file_spec.devid, two_queues);
  auto ram_disk = guest->disk(ram_spec.devid);
  ASSERT_NO_THROW(file_disk->connect()) << xbbd.log();
  ASSERT_NO_THROW(ram_disk->connect()) << xbbd.log();

  // Writes, reads and flushes on both queues of the file disk, and some
  // I/O on the RAM disk, so every counter family has something to say.
  for (uint64_t i = 0; i < 16; ++i) {
    ASSERT_EQ(file_disk->write(i * 8, frontend::pattern(6, i * 8, 8, 0)), 0);
  }
  std::vector<std::byte> out(8 * 512);
  for (uint64_t i = 0; i < 8; ++i) ASSERT_EQ(file_disk->read(i * 8, out), 0);
  ASSERT_EQ(file_disk->flush(), 0);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_EQ(ram_disk->write(i * 8, frontend::pattern(6, i * 8, 8, 1)), 0);
  ASSERT_EQ(ram_disk->read(0, out), 0);

  // Both answers after the I/O has finished, so they describe the same state.
  auto [json_status, json_text] = run({XBBCTL_PATH, "--socket", xbbd.control_socket(), "--json", "stats"});
  ASSERT_EQ(describe_status(json_status), "exit 0") << json_text;
  auto [prom_status, prometheus] = run({XBBCTL_PATH, "--socket", xbbd.control_socket(), "stats", "--prometheus"});
  ASSERT_EQ(describe_status(prom_status), "exit 0") << prometheus << "\n--- xbbd log:\n" << xbbd.log() << "\n--- json:\n" << json_text;
  auto answer = nlohmann::json::parse(json_text, nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << json_text;
  ASSERT_EQ(answer["devices"].size(), 2u) << json_text;
  // The file disk really used both queues, so per-queue series differ.
  for (const auto& d : answer["devices"]) {
    if (d["device"] != "6/51712") continue;
    ASSERT_EQ(d["queue_stats"].size(), 2u) << json_text;
    EXPECT_EQ(d["target"], image);
  }

  const std::string prom_path = dir.path() + "/stats.prom", json_path = dir.path() + "/stats.json";
  std::ofstream(prom_path) << prometheus;
  std::ofstream(json_path) << json_text;
  auto [check_status, report] = run({"/usr/bin/python3", PROMETHEUS_PARSE_SCRIPT, json_path, prom_path});
  EXPECT_EQ(describe_status(check_status), "exit 0") << report << "\n--- exposition:\n" << prometheus;
  std::cout << report;
}

}  // namespace
}  // namespace xbb::backendtest
