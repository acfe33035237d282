// Factories for the simulated host's parts, behind forward declarations.
//
// tests/sim/guestmem and tests/sim/xenstore each define a class
// xbb::storage::UniqueFd in their own header, so no translation unit may include
// headers of both. Everything that needs both (the toolstack, in-process
// guests, the whole-daemon tests) goes through these functions instead;
// SimPartsGuestMem.cpp includes only guestmem headers and SimPartsStore.cpp
// only xenstore headers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "ring/ports/GuestMemory.hpp"
#include "xenstore/XenStore.hpp"

namespace xbb::sim {
class SimStore;
class SimHypervisor;
class SimGuestMemory;
class SimDomainLink;
}  // namespace xbb::sim

namespace xbb::frontend::parts {

// --- guest memory side (SimPartsGuestMem.cpp) ---
struct HypervisorDeleter {
  void operator()(sim::SimHypervisor* hv) const;
};
struct MemoryDeleter {
  void operator()(sim::SimGuestMemory* memory) const;
};
using HypervisorPtr = std::unique_ptr<sim::SimHypervisor, HypervisorDeleter>;
using MemoryPtr = std::unique_ptr<sim::SimGuestMemory, MemoryDeleter>;

HypervisorPtr make_hypervisor();
ports::Hypervisor& as_port(sim::SimHypervisor& hv);
void listen(sim::SimHypervisor& hv, const std::string& broker_socket);
bool remove_domain(sim::SimHypervisor& hv, ports::DomId domid);
bool wait_domain_gone(sim::SimHypervisor& hv, ports::DomId domid, std::chrono::milliseconds timeout);

MemoryPtr make_memory(ports::DomId domid, uint32_t pages);
ports::DomId domid_of(const sim::SimGuestMemory& memory);
uint32_t granted(const sim::SimGuestMemory& memory);
std::shared_ptr<sim::SimDomainLink> add_domain(sim::SimHypervisor& hv, const sim::SimGuestMemory& memory);
std::shared_ptr<sim::SimDomainLink> connect_broker(const std::string& broker_socket,
                                                   const sim::SimGuestMemory& memory);

// --- xenstore side (SimPartsStore.cpp) ---
std::shared_ptr<sim::SimStore> make_store();
std::unique_ptr<xs::XenStore> connect_store(std::shared_ptr<sim::SimStore> store, xs::DomId domid);
std::unique_ptr<xs::XenStore> connect_store_socket(const std::string& store_socket, xs::DomId domid);
// Serves `store` on a unix socket until the returned handle is dropped.
std::shared_ptr<void> serve_store(std::shared_ptr<sim::SimStore> store, const std::string& store_socket);
void introduce_domain(sim::SimStore& store, xs::DomId domid);
void release_domain(sim::SimStore& store, xs::DomId domid);
size_t open_transactions(const sim::SimStore& store);

}  // namespace xbb::frontend::parts
