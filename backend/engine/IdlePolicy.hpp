// What a queue worker does when a pass found nothing to do: busy-poll for a
// while, then sleep in epoll until an event or a deadline.
//
// Busy-polling before sleeping: a wake-up through epoll costs the frontend's
// notification, a context switch and several system calls, and at high
// queue depth the next request or completion is usually microseconds away.
// The budget adapts to whether polling pays: it doubles (up to kMaxSpinNs)
// each time a poll finds work and halves each time one runs dry (down to 0
// below kMinSpinNs); a wake-up that finds work restarts it at kMinSpinNs.
// Spinning only ever follows work, so an idle daemon uses no CPU, and a
// queue whose frontend is slower than the budget stops spinning.
//
// Owned by one queue worker.
#pragma once

#include <sys/epoll.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "backend/engine/FastClock.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::backend {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

class IdlePolicy {
 public:
  static constexpr uint64_t kMaxSpinNs = 50'000;
  static constexpr uint64_t kMinSpinNs = 4'000;
  static constexpr uint64_t kNoDeadline = UINT64_MAX;

  // Sleeps wait for any of `fds` to be readable. Throws std::system_error.
  explicit IdlePolicy(std::initializer_list<int> fds);

  // A pass right after a wake-up found work: polling may pay again.
  void woke_to_work() { spin_ns_ = std::max(spin_ns_, kMinSpinNs); }

  // Spins until `found()` says work showed up (true), `wake_at_ns` passes
  // (true: something is due), or the budget runs out (false). Adapts the
  // budget to the outcome.
  template <class Found>
  bool poll(Found found, uint64_t wake_at_ns) {
    if (spin_ns_ == 0) return false;
    const uint64_t deadline = fast_clock::now_ns() + spin_ns_;
    for (unsigned checks = 1;; ++checks) {
      if (found()) break;
      cpu_relax();
      if ((checks & 15) == 0) {
        const uint64_t now = fast_clock::now_ns();
        if (now >= wake_at_ns) break;
        if (now >= deadline) {
          spin_ns_ /= 2;
          if (spin_ns_ < kMinSpinNs) spin_ns_ = 0;
          return false;
        }
      }
    }
    spin_ns_ = std::min(spin_ns_ * 2, kMaxSpinNs);
    return true;
  }

  // Sleeps until a file descriptor is readable or `wake_at_ns` passes;
  // epoll_wait's result (events filled, 0 at the deadline, -1 with errno).
  int sleep(std::span<epoll_event> events, uint64_t wake_at_ns);

 private:
  storage::UniqueFd epoll_;
  uint64_t spin_ns_ = 0;
};

}  // namespace xbb::backend
