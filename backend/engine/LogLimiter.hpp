// Log lines a guest can cause (its state changes, a broken ring, bad ring
// references) are limited per device: a burst, then one line per interval,
// and the next line that passes says how many were left out. A guest that
// loops through reconnects then cannot fill dom0's journal or slow the one
// control thread with formatting.
#pragma once

#include <chrono>
#include <cstdint>

namespace xbb::backend {

class LogLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr unsigned kBurst = 20;
  static constexpr auto kInterval = std::chrono::seconds(1);

  // True when a line may be logged now; otherwise counts it as suppressed.
  bool allow(Clock::time_point now = Clock::now()) {
    const auto earned = (now - last_refill_) / kInterval;
    if (earned > 0) {
      tokens_ = static_cast<unsigned>(std::min<int64_t>(kBurst, tokens_ + earned));
      last_refill_ += earned * kInterval;
    }
    if (tokens_ == 0) {
      ++suppressed_;
      return false;
    }
    --tokens_;
    return true;
  }
  // Lines left out since the last call (to mention in the next line logged).
  uint64_t take_suppressed() {
    const uint64_t n = suppressed_;
    suppressed_ = 0;
    return n;
  }

 private:
  unsigned tokens_ = kBurst;
  Clock::time_point last_refill_ = Clock::now();
  uint64_t suppressed_ = 0;
};

}  // namespace xbb::backend
