// The reference side: the same job run by fio (io_uring engine) straight on
// the storage, its --output-format=json parsed into a SideResult.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tools/BenchJob.hpp"
#include "tools/BenchResult.hpp"

namespace xbb::bench {

struct FioRun {
  std::vector<std::string> command;  // argv, for the report
  SideResult result;
  std::string error;                 // empty on success
};

// fio's argv for `job` on `file` (region_bytes of it), writing JSON to `output`.
std::vector<std::string> fio_command(const BenchJob& job, const std::string& file, uint64_t region_bytes,
                                     bool direct, const std::string& output);

// Runs fio and parses its result; failures land in FioRun::error.
FioRun run_fio(const BenchJob& job, const std::string& file, uint64_t region_bytes, bool direct);

// Parses fio's JSON (one group-reported job). Throws std::runtime_error with
// a message when the document is not what fio writes or the job failed.
SideResult parse_fio_json(const nlohmann::json& doc);

}  // namespace xbb::bench
