// The backend's event channel handle over the simulated hypervisor
// (the simulated counterpart of ports::XenEventChannel).
#pragma once

#include <memory>
#include <unordered_map>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/EventPortSet.hpp"
#include "tests/sim/guestmem/SimDomainRegistry.hpp"

namespace xbb::sim {

class SimEventChannel final : public ports::EventChannel {
 public:
  explicit SimEventChannel(std::shared_ptr<SimDomainRegistry> registry);
  ~SimEventChannel() override;

  std::optional<EvtchnPort> bind_interdomain(DomId domid, EvtchnPort remote_port) override;
  int unbind(EvtchnPort local_port) override;
  int notify(EvtchnPort local_port) override;
  int fd() const override { return ports_.fd(); }
  std::optional<EvtchnPort> pending() override { return ports_.pending(); }
  int unmask(EvtchnPort local_port) override { return ports_.unmask(local_port); }

 private:
  struct Binding {
    std::shared_ptr<SimDomain> domain;
    EvtchnPort remote_port;
    uint64_t token;
  };
  std::shared_ptr<SimDomainRegistry> registry_;
  EventPortSet ports_;
  std::unordered_map<EvtchnPort, Binding> bindings_;
};

}  // namespace xbb::sim
