#include "tools/BenchResult.hpp"

namespace xbb::bench {

nlohmann::json to_json(const Latency& l) {
  return {{"mean_us", l.mean_us}, {"p50_us", l.p50_us}, {"p99_us", l.p99_us}, {"p99_9_us", l.p999_us},
          {"max_us", l.max_us}};
}

nlohmann::json to_json(const SideResult& s) {
  nlohmann::json j = {{"reads", s.reads},       {"writes", s.writes},       {"bytes", s.bytes},
                      {"seconds", s.seconds},   {"iops", s.iops()},         {"mib_per_s", s.mib_per_s()},
                      {"errors", s.errors},     {"cpu_us_per_request", s.cpu_us_per_request}};
  if (s.read_latency) j["read_latency"] = to_json(*s.read_latency);
  if (s.write_latency) j["write_latency"] = to_json(*s.write_latency);
  if (s.frontend_cpu_us_per_request) j["frontend_cpu_us_per_request"] = *s.frontend_cpu_us_per_request;
  return j;
}

}  // namespace xbb::bench
