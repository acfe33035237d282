#include "backend/engine/Statistics.hpp"

#include <bit>

#include <nlohmann/json.hpp>

namespace xbb::backend {

const char* to_string(StatOp op) {
  switch (op) {
    case StatOp::Read: return "read";
    case StatOp::Write: return "write";
    case StatOp::Barrier: return "barrier";
    case StatOp::Flush: return "flush";
    case StatOp::Discard: return "discard";
    case StatOp::Other: return "other";
    case StatOp::Count: break;
  }
  return "?";
}

StatsSnapshot& StatsSnapshot::operator+=(const StatsSnapshot& o) {
  for (size_t i = 0; i < kStatOps; ++i) {
    received[i] += o.received[i];
    completed[i] += o.completed[i];
    failed[i] += o.failed[i];
  }
  bytes_read += o.bytes_read;
  bytes_written += o.bytes_written;
  normal_dispatches += o.normal_dispatches;
  forced_dispatches += o.forced_dispatches;
  coalesced_requests += o.coalesced_requests;
  resource_shortages += o.resource_shortages;
  rejected_requests += o.rejected_requests;
  ring_halts += o.ring_halts;
  in_flight += o.in_flight;
  notifications_sent += o.notifications_sent;
  notifications_received += o.notifications_received;
  notifications_held += o.notifications_held;
  responses_held_in_order += o.responses_held_in_order;
  events_deferred += o.events_deferred;
  persistent_grants_purged += o.persistent_grants_purged;
  for (size_t i = 0; i < kLatencyBuckets; ++i) latency_us_log2[i] += o.latency_us_log2[i];
  latency_ns_sum += o.latency_ns_sum;
  return *this;
}

static uint64_t sum(const std::array<uint64_t, kStatOps>& a) {
  uint64_t s = 0;
  for (auto v : a) s += v;
  return s;
}
uint64_t StatsSnapshot::total_received() const { return sum(received); }
uint64_t StatsSnapshot::total_completed() const { return sum(completed); }
uint64_t StatsSnapshot::total_failed() const { return sum(failed); }

uint64_t StatsSnapshot::latency_percentile_us(double percentile) const {
  uint64_t total = 0;
  for (auto v : latency_us_log2) total += v;
  if (total == 0) return 0;
  const double want = percentile / 100.0 * static_cast<double>(total);
  uint64_t seen = 0;
  for (size_t i = 0; i < kLatencyBuckets; ++i) {
    seen += latency_us_log2[i];
    if (static_cast<double>(seen) >= want && latency_us_log2[i] != 0) return uint64_t{1} << i;
  }
  return uint64_t{1} << (kLatencyBuckets - 1);
}

void to_json(nlohmann::json& out, const StatsSnapshot& s) {
  nlohmann::json ops = nlohmann::json::object();
  for (size_t i = 0; i < kStatOps; ++i) {
    ops[to_string(static_cast<StatOp>(i))] = {
        {"received", s.received[i]}, {"completed", s.completed[i]}, {"failed", s.failed[i]}};
  }
  out = {{"operations", ops},
         {"bytes_read", s.bytes_read},
         {"bytes_written", s.bytes_written},
         {"normal_dispatches", s.normal_dispatches},
         {"forced_dispatches", s.forced_dispatches},
         {"coalesced_requests", s.coalesced_requests},
         {"resource_shortages", s.resource_shortages},
         {"rejected_requests", s.rejected_requests},
         {"ring_halts", s.ring_halts},
         {"in_flight", s.in_flight},
         {"notifications_sent", s.notifications_sent},
         {"notifications_received", s.notifications_received},
         {"notifications_held", s.notifications_held},
         {"responses_held_in_order", s.responses_held_in_order},
         {"events_deferred", s.events_deferred},
         {"persistent_grants_purged", s.persistent_grants_purged},
         {"latency_us_log2", s.latency_us_log2},
         {"latency_sum_ns", s.latency_ns_sum},
         {"latency_p50_us", s.latency_percentile_us(50)},
         {"latency_p99_us", s.latency_percentile_us(99)}};
}

void QueueStats::record_latency_ns(uint64_t ns) {
  const uint64_t us = ns / 1000;
  size_t bucket = us == 0 ? 0 : static_cast<size_t>(std::bit_width(us));
  if (bucket >= kLatencyBuckets) bucket = kLatencyBuckets - 1;
  latency_us_log2[bucket].add();
  latency_ns_sum.add(ns);
}

StatsSnapshot QueueStats::snapshot() const {
  StatsSnapshot s;
  for (size_t i = 0; i < kStatOps; ++i) {
    s.received[i] = received[i].get();
    s.completed[i] = completed[i].get();
    s.failed[i] = failed[i].get();
  }
  s.bytes_read = bytes_read.get();
  s.bytes_written = bytes_written.get();
  s.normal_dispatches = normal_dispatches.get();
  s.forced_dispatches = forced_dispatches.get();
  s.coalesced_requests = coalesced_requests.get();
  s.resource_shortages = resource_shortages.get();
  s.rejected_requests = rejected_requests.get();
  s.ring_halts = ring_halts.get();
  s.in_flight = in_flight.get();
  s.notifications_sent = notifications_sent.get();
  s.notifications_received = notifications_received.get();
  s.notifications_held = notifications_held.get();
  s.responses_held_in_order = responses_held_in_order.get();
  s.events_deferred = events_deferred.get();
  s.persistent_grants_purged = persistent_grants_purged.get();
  for (size_t i = 0; i < kLatencyBuckets; ++i) s.latency_us_log2[i] = latency_us_log2[i].get();
  s.latency_ns_sum = latency_ns_sum.get();
  return s;
}

}  // namespace xbb::backend
