// One side's view of its event channel ports, as the Linux evtchn device gives
// it: an epoll fd (readable when some port is pending) gathering one eventfd
// per port that the other side writes to notify. pending() hands out a port
// and masks it (removes its interest) until unmask(); notifications arriving
// meanwhile add up in the eventfd counter and are delivered once after
// unmask(), so nothing is lost and masked events coalesce.
//
// Both the backend's SimEventChannel and the guest's SimGuestEvents use it.
// It works across processes because all shared state lives in the eventfds.
// Used by one thread at a time, like an xenevtchn handle.
#pragma once

#include <optional>
#include <unordered_map>

#include "ring/ports/GuestMemory.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

using ports::EvtchnPort;

class EventPortSet {
 public:
  // Throws std::system_error when the epoll fd cannot be created.
  EventPortSet();

  // `incoming` is written by the other side, `outgoing` by us. Returns 0 or -errno.
  int add(EvtchnPort port, storage::UniqueFd incoming, storage::UniqueFd outgoing);
  int remove(EvtchnPort port);
  bool contains(EvtchnPort port) const { return ports_.contains(port); }

  int notify(EvtchnPort port);
  // A second descriptor for notifying `port` (closed or not valid when the
  // port is unknown): writing 1 to it is notify(), from any thread.
  storage::UniqueFd duplicate_notifier(EvtchnPort port) const;
  int fd() const { return epoll_.get(); }
  std::optional<EvtchnPort> pending();
  int unmask(EvtchnPort port);

 private:
  struct Port {
    storage::UniqueFd incoming;
    storage::UniqueFd outgoing;
    bool masked = false;
  };
  int arm(EvtchnPort port, const Port& p, int op);

  storage::UniqueFd epoll_;
  std::unordered_map<EvtchnPort, Port> ports_;
};

}  // namespace xbb::sim
