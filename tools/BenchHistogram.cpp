#include "tools/BenchHistogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace xbb::bench {

unsigned LatencyHistogram::bucket_of(uint64_t value) {
  if (value < kSub) return static_cast<unsigned>(value);
  const unsigned exponent = 63u - static_cast<unsigned>(std::countl_zero(value));  // >= kSubBits
  const unsigned sub = static_cast<unsigned>((value >> (exponent - kSubBits)) & (kSub - 1));
  return (exponent - kSubBits + 1) * kSub + sub;
}

uint64_t LatencyHistogram::bucket_low(unsigned bucket) {
  if (bucket < kSub) return bucket;
  const unsigned exponent = bucket / kSub + kSubBits - 1;
  const uint64_t sub = bucket % kSub;
  return (kSub + sub) << (exponent - kSubBits);
}

uint64_t LatencyHistogram::bucket_high(unsigned bucket) {
  if (bucket < kSub) return bucket;
  const unsigned exponent = bucket / kSub + kSubBits - 1;
  return bucket_low(bucket) + ((uint64_t{1} << (exponent - kSubBits)) - 1);
}

void LatencyHistogram::record(uint64_t ns) {
  ++buckets_[bucket_of(ns)];
  ++count_;
  sum_ += ns;
  min_ = std::min(min_, ns);
  max_ = std::max(max_, ns);
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (unsigned i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

uint64_t LatencyHistogram::percentile(double percent) const {
  if (count_ == 0) return 0;
  const double clamped = std::clamp(percent, 0.0, 100.0);
  const auto rank = std::max<uint64_t>(1, static_cast<uint64_t>(std::ceil(clamped / 100.0 * static_cast<double>(count_))));
  uint64_t seen = 0;
  for (unsigned i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::min(bucket_high(i), max_);
  }
  return max_;
}

}  // namespace xbb::bench
