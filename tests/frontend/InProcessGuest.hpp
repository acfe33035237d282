// A simulated guest living in the test's own process: its memory joins the
// SimHypervisor directly and it talks to the SimStore through its own
// connection as domU. Software blkfronts are built on top of it.
#pragma once

#include <cstdint>
#include <memory>

#include "tests/frontend/SimParts.hpp"
#include "tests/frontend/SoftBlkfront.hpp"

namespace xbb::frontend {

class InProcessGuest {
 public:
  InProcessGuest(std::shared_ptr<sim::SimStore> store, sim::SimHypervisor& hypervisor, xs::DomId domid,
                 uint32_t pages = 8192)
      : memory_(parts::make_memory(domid, pages)),
        link_(parts::add_domain(hypervisor, *memory_)),
        xs_(parts::connect_store(store, domid)),
        store_(std::move(store)) {}

  std::unique_ptr<SoftBlkfront> disk(uint32_t devid, FrontendConfig config = {}) {
    return std::make_unique<SoftBlkfront>(*xs_, *memory_, link_, devid, config);
  }

  sim::SimGuestMemory& memory() { return *memory_; }
  uint32_t granted() const { return parts::granted(*memory_); }
  xs::XenStore& xs() { return *xs_; }
  // Another xenstore connection of this domain, for a second thread (a
  // misbehaviour running beside the guest's driver, say).
  std::unique_ptr<xs::XenStore> connect_store() { return parts::connect_store(store_, domid()); }
  xs::DomId domid() const { return parts::domid_of(*memory_); }

 private:
  parts::MemoryPtr memory_;
  std::shared_ptr<sim::SimDomainLink> link_;
  std::unique_ptr<xs::XenStore> xs_;
  std::shared_ptr<sim::SimStore> store_;
};

}  // namespace xbb::frontend
