// What a simulated guest needs from the hypervisor beyond shared memory: a
// way to publish event channel ports it allocated (EVTCHNOP_alloc_unbound)
// and to close them. In-process it calls the SimHypervisor directly
// (SimHypervisor::add_domain returns one); from another process it is a
// SimGuestConnection to the hypervisor's broker socket.
#pragma once

#include "ring/ports/GuestMemory.hpp"

namespace xbb::sim {

using ports::DomId;
using ports::EvtchnPort;

class SimDomainLink {
 public:
  virtual ~SimDomainLink() = default;
  virtual DomId domid() const = 0;
  // Publishes `port`, bindable by `remote`. The hypervisor keeps its own
  // duplicates of the eventfds: `to_remote` is the one the guest writes to
  // notify, `from_remote` the one it reads. Returns 0 or -errno (-EEXIST when
  // the port number is taken, -ESRCH when the domain is gone).
  virtual int offer_port(EvtchnPort port, DomId remote, int to_remote,
                         int from_remote) = 0;
  virtual int close_port(EvtchnPort port) = 0;
};

}  // namespace xbb::sim
