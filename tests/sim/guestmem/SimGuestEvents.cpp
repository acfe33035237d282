#include "tests/sim/guestmem/SimGuestEvents.hpp"

#include <sys/eventfd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <vector>

namespace xbb::sim {

SimGuestEvents::SimGuestEvents(std::shared_ptr<SimDomainLink> link) : link_(std::move(link)) {}

SimGuestEvents::~SimGuestEvents() {
  std::vector<EvtchnPort> open;
  for (EvtchnPort p = 1; p < next_port_; ++p)
    if (ports_.contains(p)) open.push_back(p);
  for (EvtchnPort p : open) close(p);
}

EvtchnPort SimGuestEvents::alloc_unbound(ports::DomId remote) {
  for (;;) {
    storage::UniqueFd to_remote(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    storage::UniqueFd from_remote(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!to_remote || !from_remote) throw std::system_error(errno, std::generic_category(), "eventfd");
    EvtchnPort port = next_port_++;
    int rc = link_->offer_port(port, remote, to_remote.get(), from_remote.get());
    if (rc == -EEXIST) continue;  // another handle of this domain owns that number
    if (rc != 0)
      throw std::system_error(-rc, std::generic_category(),
                              "alloc_unbound for domain " + std::to_string(remote));
    rc = ports_.add(port, std::move(from_remote), std::move(to_remote));
    if (rc != 0) {
      link_->close_port(port);
      throw std::system_error(-rc, std::generic_category(), "alloc_unbound: epoll");
    }
    return port;
  }
}

int SimGuestEvents::close(EvtchnPort port) {
  if (int rc = ports_.remove(port); rc != 0) return rc;
  return link_->close_port(port);
}

}  // namespace xbb::sim
