#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace xbb::backend {

// Keeps a guest that rewrites its frontend's state node in a loop from
// delaying everyone else. The daemon has one xenstore connection and its
// watch events arrive in one queue, so another guest's state change waits
// behind every event the flood put there before it; draining faster only
// helps while the daemon keeps up with the writer. A frontend changes state
// a handful of times per connect, and each time to a new value, so a device
// whose watch fires more than `max_events_per_second` times without a new
// state loses its watch for a cool-down (doubling while the flood goes on,
// up to `longest_cooldown`). xenstore fires a watch once when it is set
// again, so nothing the frontend wrote meanwhile is missed, only noticed
// late, and only for the guest that floods.
class FrontendWatchGuard {
 public:
  using Clock = std::chrono::steady_clock;

  FrontendWatchGuard(unsigned max_events_per_second, std::chrono::milliseconds first_cooldown,
                     std::chrono::milliseconds longest_cooldown);

  // `events` watch events for `key` that brought nothing new. True when they
  // take the device over the limit: the caller removes the watch and calls
  // suspend().
  bool note_events(const std::string& key, unsigned events, Clock::time_point now);
  // The watch is off; returns how long until resumable() hands it back.
  std::chrono::milliseconds suspend(const std::string& key, Clock::time_point now);
  // Devices whose cool-down is over: set their watch again.
  std::vector<std::string> resumable(Clock::time_point now);
  // The earliest end of a cool-down, for the daemon's wait.
  std::optional<Clock::time_point> next_deadline() const;
  bool suspended(const std::string& key) const;
  // The device is gone.
  void forget(const std::string& key);

 private:
  struct Device {
    Clock::time_point window_start{};
    unsigned events = 0;
    std::optional<Clock::time_point> suspended_until;
    std::chrono::milliseconds next_cooldown{0};
  };
  unsigned max_events_per_second_;
  std::chrono::milliseconds first_cooldown_, longest_cooldown_;
  std::map<std::string, Device> devices_;
};

}  // namespace xbb::backend
