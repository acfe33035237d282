// The epoll set of a control loop (Daemon, Supervisor): fds registered with
// a 64-bit tag saying what they are, and the control socket's connections
// registered under kControlTagBase + fd as ControlServer reports them.
#pragma once

#include <sys/epoll.h>

#include <cerrno>
#include <cstdint>
#include <functional>
#include <span>
#include <system_error>

#include "storage/UniqueFd.hpp"

namespace xbb::backend {

class EpollSet {
 public:
  static constexpr uint64_t kControlTagBase = 16;  // + fd; tags below are the loop's own

  EpollSet() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
    if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  }
  int fd() const { return epoll_.get(); }
  // Throws std::system_error.
  void add(int fd, uint64_t tag) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
      throw std::system_error(errno, std::generic_category(), "epoll_ctl");
    }
  }
  void remove(int fd) { ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr); }
  // epoll_wait: the number of events (0 when a signal interrupted it), or -1
  // with errno set when waiting itself failed.
  int wait(std::span<epoll_event> events, int timeout_ms) {
    const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), timeout_ms);
    return n < 0 && errno == EINTR ? 0 : n;
  }
  // What ControlServer::on_ready wants for its connections.
  std::function<void(int, bool)> control_watcher() {
    return [this](int fd, bool add_it) {
      if (!add_it) {
        remove(fd);
        return;
      }
      try {
        add(fd, kControlTagBase + static_cast<uint64_t>(fd));
      } catch (const std::system_error&) {
        // Unwatched, the connection is simply never answered; the client times out.
      }
    };
  }

 private:
  storage::UniqueFd epoll_;
};

}  // namespace xbb::backend
