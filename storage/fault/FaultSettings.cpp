#include "storage/fault/FaultSettings.hpp"

#include <algorithm>

namespace xbb::storage {

void FaultSettingsCell::store(const FaultSettings& s) {
  const uint64_t seq = sequence_.fetch_add(1, std::memory_order_acq_rel);  // odd: writing
  std::atomic_thread_fence(std::memory_order_release);
  fail_per_10000_.store(std::min(s.fail_per_10000, FaultSettings::kPerMax), std::memory_order_relaxed);
  op_mask_.store(s.op_mask, std::memory_order_relaxed);
  latency_min_us_.store(std::min(s.latency_min_us, s.latency_max_us), std::memory_order_relaxed);
  latency_max_us_.store(std::max(s.latency_min_us, s.latency_max_us), std::memory_order_relaxed);
  seed_.store(s.seed, std::memory_order_relaxed);
  sequence_.store(seq + 2, std::memory_order_release);  // even: stable
}

FaultSettings FaultSettingsCell::load() const {
  for (;;) {
    const uint64_t before = sequence_.load(std::memory_order_acquire);
    FaultSettings s;
    s.fail_per_10000 = fail_per_10000_.load(std::memory_order_relaxed);
    s.op_mask = op_mask_.load(std::memory_order_relaxed);
    s.latency_min_us = latency_min_us_.load(std::memory_order_relaxed);
    s.latency_max_us = latency_max_us_.load(std::memory_order_relaxed);
    s.seed = seed_.load(std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (before % 2 == 0 && sequence_.load(std::memory_order_relaxed) == before) return s;
  }
}

}  // namespace xbb::storage
