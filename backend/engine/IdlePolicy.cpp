#include "backend/engine/IdlePolicy.hpp"

#include <cerrno>
#include <ctime>
#include <system_error>

namespace xbb::backend {

IdlePolicy::IdlePolicy(std::initializer_list<int> fds) : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_) throw std::system_error(errno, std::generic_category(), "queue worker: epoll_create1");
  for (int fd : fds) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::system_error(errno, std::generic_category(), "queue worker: epoll_ctl");
    }
  }
}

int IdlePolicy::sleep(std::span<epoll_event> events, uint64_t wake_at_ns) {
  const int max_events = static_cast<int>(events.size());
  if (wake_at_ns == kNoDeadline) return ::epoll_wait(epoll_.get(), events.data(), max_events, -1);
  const uint64_t now = fast_clock::now_ns();
  const uint64_t left = wake_at_ns > now ? wake_at_ns - now : 0;
  const timespec timeout{static_cast<time_t>(left / 1'000'000'000), static_cast<long>(left % 1'000'000'000)};
  const int n = ::epoll_pwait2(epoll_.get(), events.data(), max_events, &timeout, nullptr);
  if (n >= 0 || errno != ENOSYS) return n;
  // Kernels before 5.11: millisecond resolution, rounded up.
  return ::epoll_wait(epoll_.get(), events.data(), max_events, static_cast<int>((left + 999'999) / 1'000'000));
}

}  // namespace xbb::backend
