// The guest side of simulated event channels: allocate an unbound port for the
// backend's domain (write its number to xenstore as a frontend would), then
// notify / wait / pending / unmask with the same semantics as the backend's
// handle. Works in the guest's own process; the link carries the port to the
// hypervisor (directly, or over the broker socket with SCM_RIGHTS).
#pragma once

#include <memory>

#include "tests/sim/guestmem/EventPortSet.hpp"
#include "tests/sim/guestmem/SimDomainLink.hpp"

namespace xbb::sim {

class SimGuestEvents {
 public:
  explicit SimGuestEvents(std::shared_ptr<SimDomainLink> link);
  SimGuestEvents(const SimGuestEvents&) = delete;
  SimGuestEvents& operator=(const SimGuestEvents&) = delete;
  ~SimGuestEvents();  // closes every port it allocated

  // EVTCHNOP_alloc_unbound for `remote`. Throws std::system_error on failure.
  EvtchnPort alloc_unbound(ports::DomId remote);
  int close(EvtchnPort port);

  int notify(EvtchnPort port) { return ports_.notify(port); }
  // For notifying from another thread (EventPortSet::duplicate_notifier).
  storage::UniqueFd duplicate_notifier(EvtchnPort port) const { return ports_.duplicate_notifier(port); }
  int fd() const { return ports_.fd(); }
  std::optional<EvtchnPort> pending() { return ports_.pending(); }
  int unmask(EvtchnPort port) { return ports_.unmask(port); }

 private:
  std::shared_ptr<SimDomainLink> link_;
  EventPortSet ports_;
  EvtchnPort next_port_ = 1;
};

}  // namespace xbb::sim
