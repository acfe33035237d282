#include "tests/sim/guestmem/EventPortSet.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

namespace xbb::sim {

EventPortSet::EventPortSet() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (!epoll_) throw std::system_error(errno, std::generic_category(), "epoll_create1");
}

int EventPortSet::arm(EvtchnPort port, const Port& p, int op) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u32 = port;
  return ::epoll_ctl(epoll_.get(), op, p.incoming.get(), &ev) == 0 ? 0 : -errno;
}

int EventPortSet::add(EvtchnPort port, storage::UniqueFd incoming, storage::UniqueFd outgoing) {
  if (!incoming || !outgoing) return -EBADF;
  if (ports_.contains(port)) return -EEXIST;
  Port p{std::move(incoming), std::move(outgoing), false};
  if (int rc = arm(port, p, EPOLL_CTL_ADD); rc != 0) return rc;
  ports_.emplace(port, std::move(p));
  return 0;
}

int EventPortSet::remove(EvtchnPort port) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return -EINVAL;
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, it->second.incoming.get(), nullptr);
  ports_.erase(it);
  return 0;
}

int EventPortSet::notify(EvtchnPort port) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return -EINVAL;
  const uint64_t one = 1;
  // A full counter (EAGAIN) already means "pending": the event is not lost.
  if (::write(it->second.outgoing.get(), &one, sizeof one) < 0 && errno != EAGAIN) return -errno;
  return 0;
}

storage::UniqueFd EventPortSet::duplicate_notifier(EvtchnPort port) const {
  auto it = ports_.find(port);
  if (it == ports_.end()) return storage::UniqueFd();
  return storage::UniqueFd(::fcntl(it->second.outgoing.get(), F_DUPFD_CLOEXEC, 0));
}

std::optional<EvtchnPort> EventPortSet::pending() {
  for (;;) {
    epoll_event ev{};
    int n = ::epoll_wait(epoll_.get(), &ev, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    const EvtchnPort port = ev.data.u32;  // epoll_event is packed: copy, don't bind
    auto it = ports_.find(port);
    if (it == ports_.end()) continue;  // removed meanwhile; epoll forgot it already
    uint64_t count;
    (void)!::read(it->second.incoming.get(), &count, sizeof count);
    // Mask: keep the fd registered but with no interest until unmask().
    epoll_event none{};
    none.data.u32 = port;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, it->second.incoming.get(), &none);
    it->second.masked = true;
    return port;
  }
}

int EventPortSet::unmask(EvtchnPort port) {
  auto it = ports_.find(port);
  if (it == ports_.end()) return -EINVAL;
  if (!it->second.masked) return 0;
  if (int rc = arm(port, it->second, EPOLL_CTL_MOD); rc != 0) return rc;
  it->second.masked = false;
  return 0;
}

}  // namespace xbb::sim
