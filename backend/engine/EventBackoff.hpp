// Late EOI for a frontend's event channel, as Linux xen-blkback uses
// xen_irq_lateeoi() with XEN_EOI_FLAG_SPURIOUS (drivers/xen/events): after
// an event the port stays masked until the worker has looked for work; an
// event after which no request was seen is spurious, and from the second
// spurious event in a row the port is unmasked only after a delay that
// doubles with each further one (1 ms, 2 ms, ... up to 1 s). A request seen
// resets it. A guest that notifies in a loop without queueing requests thus
// wakes its worker a few times a second instead of keeping a dom0 CPU busy;
// a guest that queues requests is never delayed (requests found by polling
// count too). Commands from the control thread come through another fd and
// are never delayed.
//
// Pure logic with the delay returned to the caller; owned by one worker.
#pragma once

#include <algorithm>
#include <cstdint>

namespace xbb::backend {

class EventBackoff {
 public:
  static constexpr uint64_t kFirstDelayNs = 1'000'000;    // Linux: 1 jiffy
  static constexpr uint64_t kMaxDelayNs = 1'000'000'000;  // Linux: HZ

  // A pass consumed requests.
  void requests_seen() { seen_ = true; }

  // The worker has handled an event and looked for work: how long the port
  // stays masked (0: unmask now). Starts a new observation period.
  uint64_t event_handled() {
    if (seen_) {
      spurious_ = 0;
    } else if (spurious_ < kSaturate) {
      ++spurious_;
    }
    seen_ = false;
    if (spurious_ < 2) return 0;
    return std::min(kFirstDelayNs << (spurious_ - 2), kMaxDelayNs);
  }

  // Events in a row after which no request was seen.
  uint32_t spurious_in_a_row() const { return spurious_; }

 private:
  static constexpr uint32_t kSaturate = 32;  // 1 ms << 30 is already past the cap

  bool seen_ = false;
  uint32_t spurious_ = 0;
};

}  // namespace xbb::backend
