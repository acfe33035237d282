// One side of a comparison (xbbd, or fio straight on the storage) reduced to
// the numbers the report shows, and the ratio between the two.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace xbb::bench {

struct Latency {
  double mean_us = 0, p50_us = 0, p99_us = 0, p999_us = 0, max_us = 0;
};

struct SideResult {
  std::string name;                 // "xbbd", "fio"
  uint64_t reads = 0, writes = 0;   // requests completed
  uint64_t bytes = 0;               // moved, both directions
  double seconds = 0;               // wall time of the measured phase
  std::optional<Latency> read_latency, write_latency;
  // CPU per request in microseconds: the storage side (xbbd: the daemon's
  // threads; fio: fio's job, which issues and reaps like a frontend would) and,
  // for xbbd, the software frontend's own thread.
  double cpu_us_per_request = 0;
  std::optional<double> frontend_cpu_us_per_request;
  uint64_t errors = 0;

  uint64_t requests() const { return reads + writes; }
  double iops() const { return seconds > 0 ? static_cast<double>(requests()) / seconds : 0; }
  double mib_per_s() const { return seconds > 0 ? static_cast<double>(bytes) / 1048576.0 / seconds : 0; }
  // The latency the table shows: reads when the job reads, else writes.
  const std::optional<Latency>& main_latency() const { return read_latency ? read_latency : write_latency; }
};

nlohmann::json to_json(const SideResult& side);
nlohmann::json to_json(const Latency& latency);

}  // namespace xbb::bench
