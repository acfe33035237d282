// Latency histogram with bounded relative error (log-linear buckets, like
// HdrHistogram): 32 linear sub-buckets per power of two, so any value is
// reported within 1/32 (~3%) of what was recorded, in constant memory and with
// a recording cost of a few instructions (it runs on the frontend's hot path).
#pragma once

#include <array>
#include <cstdint>

namespace xbb::bench {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 5;
  static constexpr unsigned kSub = 1u << kSubBits;
  static constexpr unsigned kBuckets = (64 - kSubBits + 1) * kSub;

  void record(uint64_t ns);
  void merge(const LatencyHistogram& other);
  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }
  // The value at or below which `percent` of the recorded values lie: the
  // upper edge of the bucket holding that rank, clamped to the largest value
  // recorded. 0 when empty.
  uint64_t percentile(double percent) const;

  // Bucket arithmetic (public for the tests).
  static unsigned bucket_of(uint64_t value);
  static uint64_t bucket_low(unsigned bucket);
  static uint64_t bucket_high(unsigned bucket);

 private:
  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace xbb::bench
