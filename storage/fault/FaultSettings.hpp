// What FaultInjectionStorage injects, and the lock-free cell through which the
// control thread changes it while worker threads read it on every submit().
#pragma once

#include <atomic>
#include <cstdint>

#include "storage/Storage.hpp"

namespace xbb::storage {

struct FaultSettings {
  static constexpr uint32_t kPerMax = 10000;  // rates are "N of every 10000", like RUMP_BLKFAIL

  uint32_t fail_per_10000 = 0;     // requests failed with -EIO, 0..10000
  uint8_t op_mask = 0x1F;          // bit (1 << IoOp) selects the ops that get failures and latency
  uint32_t latency_min_us = 0;     // added latency, uniform in [min, max];
  uint32_t latency_max_us = 0;     // min == max is a fixed latency, 0/0 none
  uint64_t seed = 0;               // same seed + same request sequence = same faults

  static constexpr uint8_t bit(IoOp op) { return static_cast<uint8_t>(1u << static_cast<unsigned>(op)); }
  bool applies_to(IoOp op) const { return (op_mask & bit(op)) != 0; }
  bool operator==(const FaultSettings&) const = default;
};

// A seqlock over atomics: store() from any thread (writers are serialised by
// the caller, normally the one control thread; concurrent stores are still
// safe but may interleave), load() never blocks and never sees a torn block.
class FaultSettingsCell {
 public:
  explicit FaultSettingsCell(const FaultSettings& initial) { store(initial); }
  void store(const FaultSettings& settings);
  FaultSettings load() const;

 private:
  std::atomic<uint64_t> sequence_{0};
  std::atomic<uint32_t> fail_per_10000_{0};
  std::atomic<uint8_t> op_mask_{0};
  std::atomic<uint32_t> latency_min_us_{0};
  std::atomic<uint32_t> latency_max_us_{0};
  std::atomic<uint64_t> seed_{0};
};

}  // namespace xbb::storage
