// Guest-memory half of SimParts.hpp: includes only tests/sim/guestmem headers.
#include "tests/frontend/SimParts.hpp"
#include "tests/sim/guestmem/SimGuestConnection.hpp"
#include "tests/sim/guestmem/SimGuestMemory.hpp"
#include "tests/sim/guestmem/SimHypervisor.hpp"

namespace xbb::frontend::parts {

void HypervisorDeleter::operator()(sim::SimHypervisor* hv) const { delete hv; }
void MemoryDeleter::operator()(sim::SimGuestMemory* memory) const { delete memory; }

HypervisorPtr make_hypervisor() { return HypervisorPtr(new sim::SimHypervisor(0)); }
ports::Hypervisor& as_port(sim::SimHypervisor& hv) { return hv; }
void listen(sim::SimHypervisor& hv, const std::string& broker_socket) { hv.listen(broker_socket); }
bool remove_domain(sim::SimHypervisor& hv, ports::DomId domid) { return hv.remove_domain(domid); }
bool wait_domain_gone(sim::SimHypervisor& hv, ports::DomId domid, std::chrono::milliseconds timeout) {
  return hv.wait_domain_gone(domid, timeout);
}

MemoryPtr make_memory(ports::DomId domid, uint32_t pages) { return MemoryPtr(new sim::SimGuestMemory(domid, pages, 16384)); }
ports::DomId domid_of(const sim::SimGuestMemory& memory) { return memory.domid(); }
uint32_t granted(const sim::SimGuestMemory& memory) { return memory.granted(); }
std::shared_ptr<sim::SimDomainLink> add_domain(sim::SimHypervisor& hv, const sim::SimGuestMemory& memory) {
  return hv.add_domain(memory);
}
std::shared_ptr<sim::SimDomainLink> connect_broker(const std::string& broker_socket,
                                                   const sim::SimGuestMemory& memory) {
  return sim::SimGuestConnection::connect(broker_socket, memory);
}

}  // namespace xbb::frontend::parts
