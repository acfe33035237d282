// The comparison xbb-bench prints: xbbd and fio side by side, the ratio
// xbbd/fio, and what limited xbbd — as a table for people and as JSON.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/BenchFio.hpp"
#include "tools/BenchJob.hpp"
#include "tools/BenchXbbd.hpp"

namespace xbb::bench {

struct Comparison {
  BenchJob job;
  std::string storage_description;  // "file /dev/shm/a.img, buffered (tmpfs refuses O_DIRECT)"
  std::string host_note;            // cores and load average at the start
  XbbdRun xbbd;
  std::optional<FioRun> fio;        // nullopt: not run (--no-fio or no fio equivalent)
  std::string fio_skipped;          // why fio did not run
};

struct Ratios {
  double iops = 0, bandwidth = 0, p50 = 0, p99 = 0, p999 = 0, backend_cpu = 0, total_cpu = 0;
};

// xbbd/fio; nullopt when fio has no result. A ratio whose fio value is zero is 0.
std::optional<Ratios> ratios(const Comparison& c);

std::string format_table(const Comparison& c);
nlohmann::json format_json(const Comparison& c);

}  // namespace xbb::bench
