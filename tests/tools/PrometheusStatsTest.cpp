// tools/PrometheusStats: the text exposition of a stats answer, line by line.
// (prometheus_parse_test.py checks a real daemon's output with a real parser.)
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/PrometheusStats.hpp"

namespace xbb::tools {
namespace {

using nlohmann::json;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The samples (lines that are not comments) whose text starts with `prefix`.
std::vector<std::string> samples(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& line : lines_of(text)) {
    if (line.rfind(prefix, 0) == 0) out.push_back(line);
  }
  return out;
}

json queue_stats(uint64_t reads, std::vector<uint64_t> buckets, std::optional<uint64_t> sum_ns) {
  json s = {{"operations", {{"read", {{"received", reads}, {"completed", reads}, {"failed", 0}}},
                            {"write", {{"received", 2}, {"completed", 1}, {"failed", 1}}}}},
            {"bytes_read", reads * 4096},
            {"bytes_written", 8192},
            {"normal_dispatches", 3},
            {"forced_dispatches", 4},
            {"coalesced_requests", 5},
            {"resource_shortages", 0},
            {"rejected_requests", 1},
            {"ring_halts", 0},
            {"in_flight", 1},
            {"notifications_sent", 6},
            {"notifications_received", 7},
            {"notifications_held", 0},
            {"latency_us_log2", buckets}};
  if (sum_ns) s["latency_sum_ns"] = *sum_ns;
  return s;
}

json answer() {
  std::vector<uint64_t> buckets(32, 0);
  buckets[0] = 2;   // < 1 us
  buckets[3] = 5;   // [4, 8) us
  buckets[31] = 1;  // beyond 2^30 us
  json device = {{"device", "3/51712"},
                 {"domid", 3},
                 {"devid", 51712},
                 {"vdev", "xvda"},
                 {"backend", "backend/vbd/3/51712"},
                 {"target", "/srv/a \"quoted\" \\dir\nx.img"},
                 {"storage", "file:/srv/a.img"},
                 {"phase", "connected"},
                 {"read_only", false},
                 {"queues", 1},
                 {"ring_page_order", 0},
                 {"protocol", "x86_64-abi"},
                 {"persistent_grants", true},
                 {"mapped_grant_pages", 1},
                 {"size_bytes", 1048576},
                 {"tunables", {{"notify_batch", "8"}, {"max_list_segments", "256"}}},
                 {"stats", queue_stats(10, buckets, 123'456'789)},
                 {"queue_stats", json::array({queue_stats(10, buckets, 123'456'789)})}};
  // A second device still opening: no queues, no latency sum from the daemon.
  json opening = {{"device", "4/51728"}, {"domid", 4},  {"vdev", "xvdb"},
                  {"phase", "initwait"}, {"queues", 0}, {"stats", queue_stats(0, std::vector<uint64_t>(32, 0), std::nullopt)},
                  {"queue_stats", json::array()}};
  return {{"ok", true}, {"devices", {device, opening}}};
}

TEST(PrometheusStats, EscapesLabelValuesAndHelp) {
  EXPECT_EQ(escape_label_value("plain/3:x"), "plain/3:x");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  EXPECT_EQ(escape_help("one\\two\nthree \"quoted\""), "one\\\\two\\nthree \"quoted\"");  // quotes stay in HELP
}

TEST(PrometheusStats, EveryFamilyHasOneHelpAndTypeAndItsSamplesInOneGroup) {
  const std::string text = prometheus_exposition(answer());
  std::map<std::string, std::string> type_of;
  std::set<std::string> helped, finished;
  std::string current;
  for (const auto& line : lines_of(text)) {
    ASSERT_FALSE(line.empty()) << "blank line in\n" << text;
    if (line.rfind("# HELP ", 0) == 0) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      EXPECT_TRUE(helped.insert(name).second) << "second HELP for " << name;
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream fields(line.substr(7));
      std::string name, type;
      fields >> name >> type;
      EXPECT_TRUE(helped.count(name)) << "TYPE before HELP for " << name;
      EXPECT_TRUE(type_of.emplace(name, type).second) << "second TYPE for " << name;
      if (!current.empty()) finished.insert(current);
      current = name;
      continue;
    }
    // A sample belongs to the family announced last: its name, or the
    // family's name plus a histogram suffix.
    const std::string name = line.substr(0, line.find_first_of("{ "));
    const bool belongs = name == current || (type_of[current] == "histogram" &&
                                             (name == current + "_bucket" || name == current + "_sum" ||
                                              name == current + "_count"));
    EXPECT_TRUE(belongs) << "sample '" << line << "' outside its family's group (current " << current << ")";
    EXPECT_FALSE(finished.count(name)) << name << " continues after another family";
  }
  EXPECT_EQ(type_of["xbbd_device_requests_received_total"], "counter");
  EXPECT_EQ(type_of["xbbd_device_requests_in_flight"], "gauge");
  EXPECT_EQ(type_of["xbbd_device_request_latency_seconds"], "histogram");
  EXPECT_EQ(type_of["xbbd_queue_request_latency_seconds"], "histogram");
  EXPECT_EQ(type_of["xbbd_device_info"], "gauge");
}

TEST(PrometheusStats, LabelsNameTheDeviceAndQueue) {
  const std::string text = prometheus_exposition(answer());
  const auto reads = samples(text, "xbbd_device_requests_received_total{");
  EXPECT_NE(std::find(reads.begin(), reads.end(),
                      R"(xbbd_device_requests_received_total{device="3/51712",domid="3",vdev="xvda",operation="read"} 10)"),
            reads.end())
      << text;
  const auto queue = samples(text, "xbbd_queue_read_bytes_total{");
  ASSERT_EQ(queue.size(), 1u) << "one queue, on the first device only";
  EXPECT_EQ(queue[0], R"(xbbd_queue_read_bytes_total{device="3/51712",domid="3",vdev="xvda",queue="0"} 40960)");
  const auto info = samples(text, "xbbd_device_info{device=\"3/51712\"");
  ASSERT_EQ(info.size(), 1u);
  EXPECT_NE(info[0].find(R"(target="/srv/a \"quoted\" \\dir\nx.img")"), std::string::npos) << info[0];
  EXPECT_EQ(samples(text, "xbbd_device_dispatches_total{device=\"3/51712\",domid=\"3\",vdev=\"xvda\",kind=\"forced\"} 4").size(),
            1u);
  EXPECT_EQ(samples(text, R"(xbbd_device_tunable{device="3/51712",domid="3",vdev="xvda",name="notify_batch"} 8)").size(), 1u);
  EXPECT_EQ(samples(text, "xbbd_devices 2").size(), 1u);
  EXPECT_EQ(samples(text, "xbbd_unreachable_devices 0").size(), 1u);
}

TEST(PrometheusStats, LatencyIsACumulativeHistogramInSeconds) {
  const std::string text = prometheus_exposition(answer());
  const auto buckets = samples(text, "xbbd_device_request_latency_seconds_bucket{device=\"3/51712\"");
  ASSERT_EQ(buckets.size(), 32u) << text;
  const std::string labels = R"(device="3/51712",domid="3",vdev="xvda",)";
  EXPECT_EQ(buckets[0], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="1e-06"} 2)");
  EXPECT_EQ(buckets[2], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="4e-06"} 2)");
  EXPECT_EQ(buckets[3], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="8e-06"} 7)");
  EXPECT_EQ(buckets[10], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="0.001024"} 7)");
  EXPECT_EQ(buckets[30], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="1073.741824"} 7)");
  EXPECT_EQ(buckets[31], "xbbd_device_request_latency_seconds_bucket{" + labels + R"(le="+Inf"} 8)");
  EXPECT_EQ(samples(text, "xbbd_device_request_latency_seconds_count{device=\"3/51712\"")[0],
            "xbbd_device_request_latency_seconds_count{device=\"3/51712\",domid=\"3\",vdev=\"xvda\"} 8");
  EXPECT_EQ(samples(text, "xbbd_device_request_latency_seconds_sum{device=\"3/51712\"")[0],
            "xbbd_device_request_latency_seconds_sum{device=\"3/51712\",domid=\"3\",vdev=\"xvda\"} 0.123456789");
  // The device still opening sent no sum: none is made up, the rest is there.
  EXPECT_TRUE(samples(text, "xbbd_device_request_latency_seconds_sum{device=\"4/51728\"").empty());
  EXPECT_EQ(samples(text, "xbbd_device_request_latency_seconds_count{device=\"4/51728\"").size(), 1u);
  EXPECT_TRUE(samples(text, "xbbd_device_size_bytes{device=\"4/51728\"").empty()) << "no size before the storage opened";
}

TEST(PrometheusStats, AnAnswerWithoutDevicesStillSaysSo) {
  const std::string text = prometheus_exposition(json{{"ok", true}, {"devices", json::array()}});
  EXPECT_EQ(samples(text, "xbbd_devices ").size(), 1u);
  EXPECT_EQ(samples(text, "xbbd_devices 0").size(), 1u);
  const std::string unreachable = prometheus_exposition(
      json{{"ok", true}, {"devices", json::array()}, {"unreachable", json::array({{{"device", "3/51712"}}})}});
  EXPECT_EQ(samples(unreachable, "xbbd_unreachable_devices 1").size(), 1u);
}

}  // namespace
}  // namespace xbb::tools
