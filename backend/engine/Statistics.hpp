// Statistics of one queue, written only by the queue's worker thread and read
// by the control thread at any time. Counters are single-writer relaxed
// atomics: no lock and no locked instruction on the hot path.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include <nlohmann/json_fwd.hpp>

#include "ring/protocol/Request.hpp"

namespace xbb::backend {

// Indexes the per-operation counters.
enum class StatOp : uint8_t { Read, Write, Barrier, Flush, Discard, Other, Count };
inline constexpr size_t kStatOps = static_cast<size_t>(StatOp::Count);
const char* to_string(StatOp op);

constexpr StatOp stat_op(const ring::Request& req) {
  switch (req.operation) {
    case ring::Operation::Read: return StatOp::Read;
    case ring::Operation::Write: return StatOp::Write;
    case ring::Operation::WriteBarrier: return StatOp::Barrier;
    case ring::Operation::FlushDiskCache: return StatOp::Flush;
    case ring::Operation::Discard: return StatOp::Discard;
    default: return StatOp::Other;
  }
}

// Completion latency from "consumed from the ring" to "response pushed", in
// power-of-two microsecond buckets: bucket i holds [2^(i-1), 2^i) us, bucket 0 < 1 us.
inline constexpr size_t kLatencyBuckets = 32;

class SingleWriterCounter {
 public:
  void add(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(uint64_t n = 1) { value_.store(value_.load(std::memory_order_relaxed) - n, std::memory_order_relaxed); }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A plain copy of the counters, summable across queues.
struct StatsSnapshot {
  std::array<uint64_t, kStatOps> received{}, completed{}, failed{};
  uint64_t bytes_read = 0, bytes_written = 0;
  uint64_t normal_dispatches = 0, forced_dispatches = 0;
  uint64_t coalesced_requests = 0;   // requests merged into an already open list
  uint64_t resource_shortages = 0;   // times the ring was left unconsumed for want of buffers/slots/storage depth
  uint64_t rejected_requests = 0;    // failed validation
  uint64_t ring_halts = 0;           // runaway producer index seen
  uint64_t in_flight = 0;
  uint64_t notifications_sent = 0;      // event-channel notifications to the frontend
  uint64_t notifications_received = 0;  // wake-ups by the frontend's event channel
  uint64_t notifications_held = 0;      // events held back to cover more responses (moderation)
  uint64_t responses_held_in_order = 0; // answers that waited for an earlier request's (ordered_responses)
  uint64_t events_deferred = 0;         // events after which the port stayed masked a while (late EOI back-off)
  uint64_t persistent_grants_purged = 0;  // least recently used persistent grants unmapped to make room
  std::array<uint64_t, kLatencyBuckets> latency_us_log2{};
  uint64_t latency_ns_sum = 0;  // of every latency recorded: with the buckets, a Prometheus histogram

  StatsSnapshot& operator+=(const StatsSnapshot& other);
  uint64_t total_received() const;
  uint64_t total_completed() const;
  uint64_t total_failed() const;
  // Latency percentile (0..100) as the upper bound of the bucket, in microseconds.
  uint64_t latency_percentile_us(double percentile) const;
};

void to_json(nlohmann::json& out, const StatsSnapshot& stats);

class QueueStats {
 public:
  std::array<SingleWriterCounter, kStatOps> received, completed, failed;
  SingleWriterCounter bytes_read, bytes_written;
  SingleWriterCounter normal_dispatches, forced_dispatches, coalesced_requests;
  SingleWriterCounter resource_shortages, rejected_requests, ring_halts, in_flight;
  SingleWriterCounter notifications_sent, notifications_received, notifications_held;
  SingleWriterCounter responses_held_in_order, events_deferred, persistent_grants_purged;
  std::array<SingleWriterCounter, kLatencyBuckets> latency_us_log2;
  SingleWriterCounter latency_ns_sum;

  // A request was consumed from the ring.
  void request_received(StatOp op) {
    received[static_cast<size_t>(op)].add();
    in_flight.add();
  }
  // A request was answered (`ok`: BLKIF_RSP_OKAY) `latency_ns` after it was consumed.
  void request_answered(StatOp op, bool ok, uint64_t latency_ns) {
    completed[static_cast<size_t>(op)].add();
    if (!ok) failed[static_cast<size_t>(op)].add();
    record_latency_ns(latency_ns);
    in_flight.sub();
  }
  void record_latency_ns(uint64_t ns);
  StatsSnapshot snapshot() const;
};

}  // namespace xbb::backend
