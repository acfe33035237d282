// Random I/O against a model: thousands of reads, writes, flushes, barriers
// and discards with a queue depth, no two in-flight requests overlapping (so
// the model's order is the disk's), every read verified byte for byte.
#pragma once

#include <functional>
#include <map>
#include <random>
#include <string>

#include "tests/backend/DiskModel.hpp"
#include "tests/frontend/SoftBlkfront.hpp"

namespace xbb::backendtest {

struct IoTally {
  uint64_t reads = 0, writes = 0, flushes = 0, barriers = 0, discards = 0;
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t failures = 0;  // non-OKAY statuses
  uint64_t reads_verified = 0;
  std::string first_error;
};

// Throws std::runtime_error when nothing completes for 5 s (requests that
// are never answered). `after_completion`, if given, is called with the
// number of requests completed so far each time some complete.
// `forget_failed_writes`: a write answered with an error leaves its sectors
// unknown in the model (with fault injection, say, where one guest request
// may be several storage requests and only some of them fail).
IoTally run_random_io(frontend::SoftBlkfront& disk, DiskModel& model, unsigned requests, unsigned depth,
                      uint32_t seed, const std::function<void(uint64_t completed)>& after_completion = {},
                      bool forget_failed_writes = false);

}  // namespace xbb::backendtest
