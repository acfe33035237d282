#include "backend/daemon/FrontendWatchGuard.hpp"

#include <algorithm>

namespace xbb::backend {

using namespace std::chrono_literals;

FrontendWatchGuard::FrontendWatchGuard(unsigned max_events_per_second, std::chrono::milliseconds first_cooldown,
                                       std::chrono::milliseconds longest_cooldown)
    : max_events_per_second_(max_events_per_second),
      first_cooldown_(first_cooldown),
      longest_cooldown_(std::max(longest_cooldown, first_cooldown)) {}

bool FrontendWatchGuard::note_events(const std::string& key, unsigned events, Clock::time_point now) {
  Device& device = devices_[key];
  if (device.next_cooldown.count() == 0) device.next_cooldown = first_cooldown_;
  if (device.suspended_until) return false;  // events queued before the watch went
  if (now - device.window_start >= 1s) {
    // A calm second forgives the guest: the next flood starts again at the
    // first cool-down.
    if (device.events <= max_events_per_second_) device.next_cooldown = first_cooldown_;
    device.window_start = now;
    device.events = 0;
  }
  device.events += events;
  return device.events > max_events_per_second_;
}

std::chrono::milliseconds FrontendWatchGuard::suspend(const std::string& key, Clock::time_point now) {
  Device& device = devices_[key];
  if (device.next_cooldown.count() == 0) device.next_cooldown = first_cooldown_;
  const auto cooldown = device.next_cooldown;
  device.suspended_until = now + cooldown;
  device.next_cooldown = std::min(cooldown * 2, longest_cooldown_);
  return cooldown;
}

std::vector<std::string> FrontendWatchGuard::resumable(Clock::time_point now) {
  std::vector<std::string> due;
  for (auto& [key, device] : devices_) {
    if (device.suspended_until && *device.suspended_until <= now) {
      device.suspended_until.reset();
      // The event the new watch fires at once opens a fresh window.
      device.window_start = now;
      device.events = 0;
      due.push_back(key);
    }
  }
  return due;
}

std::optional<FrontendWatchGuard::Clock::time_point> FrontendWatchGuard::next_deadline() const {
  std::optional<Clock::time_point> earliest;
  for (const auto& [key, device] : devices_) {
    if (device.suspended_until && (!earliest || *device.suspended_until < *earliest)) earliest = device.suspended_until;
  }
  return earliest;
}

bool FrontendWatchGuard::suspended(const std::string& key) const {
  auto it = devices_.find(key);
  return it != devices_.end() && it->second.suspended_until.has_value();
}

void FrontendWatchGuard::forget(const std::string& key) { devices_.erase(key); }

}  // namespace xbb::backend
