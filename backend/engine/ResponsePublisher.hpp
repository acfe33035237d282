// How a queue worker's answers reach the frontend: publishes the responses
// written into the ring and sends the event the frontend asked for (its
// rsp_event), at once as blkback does, or a little later when notification
// moderation (NotifyModeration.hpp) holds it to cover more responses.
//
// The worker calls publish() once per pass (one event for everything answered
// in the pass), tick() after it so that a held event goes out when due, and
// asks holding()/deadline_ns() how long it may sleep. Without moderation
// (the default) this is RING_PUSH_RESPONSES_AND_CHECK_NOTIFY and nothing
// more. Owned by one queue worker.
#pragma once

#include <cstdint>

#include "backend/engine/FastClock.hpp"
#include "backend/engine/NotifyModeration.hpp"
#include "backend/engine/Statistics.hpp"
#include "ring/ports/GuestMemory.hpp"
#include "ring/protocol/BackRing.hpp"

namespace xbb::backend {

class ResponsePublisher {
 public:
  ResponsePublisher(ring::BackRing& ring, ports::EventChannel& events, ports::EvtchnPort port, QueueStats& stats)
      : ring_(ring), events_(events), port_(port), stats_(stats) {}

  // New moderation settings (notify_batch, notify_delay_us); whatever was
  // held under the old ones goes out now.
  void configure(uint32_t batch, uint64_t max_delay_ns) {
    moderation_.configure(batch, max_delay_ns);
    release();
  }

  // Requests were consumed at `now_ns` (once per pass that consumed any):
  // moderation learns the frontend's pace from it.
  void requests_consumed(uint64_t now_ns) { moderation_.on_requests(now_ns); }

  // Publishes every response written into the ring since the last call and
  // notifies the frontend if it asked (now, or when a hold ends).
  void publish() {
    const uint32_t published = ring_.unpublished();
    if (published == 0) return;
    const bool asked = ring_.push_responses_and_check_notify();
    if (!moderation_.active() || (!asked && !moderation_.holding())) {
      if (asked) notify();
      return;
    }
    const bool was_holding = moderation_.holding();
    if (moderation_.on_publish(asked, published, ring_.frontend_outstanding(), fast_clock::now_ns())) notify();
    if (!was_holding && moderation_.holding()) stats_.notifications_held.add();
  }

  // Sends a held event whose time has come (the clock is read only while
  // an event is held).
  void tick() {
    if (moderation_.holding() && moderation_.due(fast_clock::now_ns())) notify();
  }
  // Sends a held event now (stopping, or new settings).
  void release() {
    if (moderation_.flush()) notify();
  }

  // An event is held back; it is due at deadline_ns().
  bool holding() const { return moderation_.holding(); }
  uint64_t deadline_ns() const { return moderation_.deadline_ns(); }

 private:
  void notify() {
    events_.notify(port_);
    stats_.notifications_sent.add();
  }

  ring::BackRing& ring_;
  ports::EventChannel& events_;
  ports::EvtchnPort port_;
  QueueStats& stats_;
  NotifyModeration moderation_;
};

}  // namespace xbb::backend
