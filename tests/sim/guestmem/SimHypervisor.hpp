// The simulated hypervisor, backend side: implements ports::Hypervisor over
// guest domains whose memory lives in memfds (see SimGuestMemory). The backend
// cannot tell it from XenHypervisor: grant maps are real shared mappings with
// Xen's permission rules, copies report Xen's per-segment statuses, event
// channels are pollable fds with xenevtchn's mask/unmask behaviour.
//
// Guests join in-process with add_domain(), or from another process through
// the broker socket opened by listen() (see SimGuestConnection).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/SimBroker.hpp"
#include "tests/sim/guestmem/SimDomainLink.hpp"
#include "tests/sim/guestmem/SimDomainRegistry.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"

namespace xbb::sim {

class SimHypervisor final : public ports::Hypervisor {
 public:
  // `self` is the backend's domain: guests grant their pages to it.
  explicit SimHypervisor(DomId self = 0);
  ~SimHypervisor() override;

  DomId self() const { return registry_->self(); }

  // Creates domain `id` over the guest's memory (the fds are duplicated, the
  // caller keeps its own). Returns the guest's link for SimGuestEvents.
  // Throws std::invalid_argument for an id in use or unusable memory fds.
  std::shared_ptr<SimDomainLink> add_domain(DomId id, int memory_fd, int grant_table_fd);
  std::shared_ptr<SimDomainLink> add_domain(const SimGuestMemory& memory);
  // Destroys the domain (xl destroy): domain_exists() turns false, later maps,
  // copies and binds fail; existing mappings stay valid until unmapped.
  bool remove_domain(DomId id);

  // Called on the destroying thread each time a domain goes away (the
  // simulated @releaseDomain); for broker guests that is the broker thread.
  void set_on_domain_gone(std::function<void(DomId)> callback);
  bool wait_domain_gone(DomId id, std::chrono::milliseconds timeout);

  // Starts the broker on a unix socket. Throws std::system_error.
  void listen(const std::string& socket_path);
  // Stops it: connected guests' domains are destroyed.
  void stop_listening();

  std::unique_ptr<ports::GrantTable> open_grant_table() override;
  std::unique_ptr<ports::EventChannel> open_event_channel() override;
  bool domain_exists(DomId domid) override;

 private:
  std::shared_ptr<SimDomainRegistry> registry_;
  std::unique_ptr<SimBroker> broker_;
};

}  // namespace xbb::sim
