// Notification moderation: when to send the event a frontend asked for.
//
// Every event costs the guest an interrupt, and Linux blkfront completes each
// interrupt's responses to a task that then wakes to reap them and submit
// more; with the guest's CPU the limit (fio, 4 KiB random reads at QD 32 on
// one vCPU under TCG), fewer events should leave it more for I/O. NVMe's
// interrupt coalescing answers the same problem with an aggregation
// threshold and time; this is the adaptive form of it, so that a frontend
// waiting on an answer is not made to wait:
//
// - An event is held only while the frontend shows it does not need it: it
//   waits on at least twice `batch` requests (a deep queue), or a hold has
//   seen it keep submitting requests without the event ("engaged").
// - A hold ends when `batch` responses wait for the event, when the frontend
//   has gone quiet (no request for twice its usual gap between requests), or
//   at `max_delay_ns` after it began, whatever the frontend writes.
// - A hold during which no request came means the frontend was waiting for
//   it: moderation disengages. A disengaged frontend with a shallow queue gets
//   every event at once, as from blkback; one event in `probe interval` is
//   held to look again, and every fruitless look doubles the interval (8 to
//   4096 events), so a latency-bound frontend at queue depth 1 pays one short
//   hold in thousands.
//
// Off by default (notify_batch 0). In the lab (A/B in one boot, xbbd against
// itself with notify_batch 0) it cut the guest's interrupts per 4 KiB request
// from 0.48-0.78 to 0.16-0.30, yet throughput moved by 0.75-1.00x with the
// guest on a pCPU of its own and by 0.96-1.40x with the guest sharing pCPUs
// with dom0: the interrupts were not what bounded the guest (README).
//
// Pure logic with the clock passed in, owned by one queue worker.
#pragma once

#include <algorithm>
#include <cstdint>

namespace xbb::backend {

class NotifyModeration {
 public:
  static constexpr uint32_t kFirstProbeInterval = 8;
  static constexpr uint32_t kFruitlessToDisengage = 2;
  static constexpr uint32_t kMaxProbeInterval = 4096;
  static constexpr uint64_t kMinQuietNs = 10'000;

  // batch 0 or 1, or max_delay_ns 0: no moderation.
  void configure(uint32_t batch, uint64_t max_delay_ns) {
    batch_ = batch;
    max_delay_ns_ = max_delay_ns;
    engaged_ = false;
    probe_interval_ = kFirstProbeInterval;
    since_probe_ = 0;
    fruitless_holds_ = 0;
  }
  bool active() const { return batch_ > 1 && max_delay_ns_ > 0; }

  // Requests were consumed from the ring at `now_ns` (once per pass).
  void on_requests(uint64_t now_ns) {
    if (last_request_ns_ != 0 && now_ns > last_request_ns_) {
      request_gap_ns_ = request_gap_ns_ - request_gap_ns_ / 8 + (now_ns - last_request_ns_) / 8;
    }
    last_request_ns_ = now_ns;
    if (holding_) requests_during_hold_ = true;
  }

  // Responses were just published: `published` of them, `asked` when the
  // frontend's rsp_event asked for an event for them, `outstanding` requests
  // the frontend still waits on at the ring (including these). True: notify
  // now.
  bool on_publish(bool asked, uint32_t published, uint32_t outstanding, uint64_t now_ns) {
    if (!holding_) {
      if (!asked) return false;
      if (!active()) return true;
      if (!engaged_ && outstanding < 2 * batch_) {
        if (++since_probe_ < probe_interval_) return true;
        since_probe_ = 0;
      }
      holding_ = true;
      held_ = 0;
      requests_during_hold_ = false;
      hold_start_ns_ = now_ns;
    }
    held_ += published;
    if (held_ >= batch_) {
      engage(true);
      return release();
    }
    return now_ns >= deadline_ns() && due(now_ns);
  }

  // When a held event is due (meaningful while holding()).
  uint64_t deadline_ns() const {
    const uint64_t quiet = std::clamp(2 * request_gap_ns_, kMinQuietNs, max_delay_ns_);
    return std::min(hold_start_ns_ + max_delay_ns_, std::max(hold_start_ns_, last_request_ns_) + quiet);
  }
  // A held event whose time has come: true means notify now.
  bool due(uint64_t now_ns) {
    if (!holding_ || now_ns < deadline_ns()) return false;
    engage(requests_during_hold_);
    return release();
  }
  // Sends what is held regardless (stopping, or new settings).
  bool flush() { return holding_ && release(); }

  bool holding() const { return holding_; }
  bool engaged() const { return engaged_; }

 private:
  void engage(bool fruitful) {
    if (fruitful) {
      engaged_ = true;
      fruitless_holds_ = 0;
      probe_interval_ = kFirstProbeInterval;
      return;
    }
    // One quiet hold may be the frontend's vCPU descheduled; two in a row
    // are a frontend waiting for its answers.
    if (++fruitless_holds_ < kFruitlessToDisengage) return;
    if (!engaged_) probe_interval_ = std::min(probe_interval_ * 2, kMaxProbeInterval);
    engaged_ = false;
  }
  bool release() {
    holding_ = false;
    held_ = 0;
    return true;
  }

  uint32_t batch_ = 0;
  uint64_t max_delay_ns_ = 0;
  bool holding_ = false;
  bool engaged_ = false;
  bool requests_during_hold_ = false;
  uint32_t held_ = 0;
  uint32_t since_probe_ = 0;
  uint32_t fruitless_holds_ = 0;
  uint32_t probe_interval_ = kFirstProbeInterval;
  uint64_t hold_start_ns_ = 0;
  uint64_t last_request_ns_ = 0;
  uint64_t request_gap_ns_ = 0;
};

}  // namespace xbb::backend
