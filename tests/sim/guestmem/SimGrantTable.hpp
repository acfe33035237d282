// The backend's grant table handle over the simulated hypervisor (the
// simulated counterpart of ports::XenGrantTable, i.e. of /dev/xen/gntdev).
//
// map() reserves one contiguous address range and maps each granted frame of
// the domain's memfd into it with MAP_FIXED: PROT_READ for read-only maps,
// so a stray write faults exactly as it would on Xen. Grants are pinned as Xen
// pins them (GTF_reading/GTF_writing set in the guest's entry), so the guest
// cannot revoke a grant while it is mapped or being copied.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/SimDomainRegistry.hpp"

namespace xbb::sim {

class SimGrantTable final : public ports::GrantTable {
 public:
  explicit SimGrantTable(std::shared_ptr<SimDomainRegistry> registry);
  ~SimGrantTable() override;  // unmaps what is still mapped, as closing gntdev does

  void* map(DomId domid, std::span<const GrantRef> refs, bool writable) override;
  int unmap(void* address, size_t pages) override;
  int copy(std::span<ports::GrantCopySegment> segments) override;
  size_t mapped_pages() const override { return mapped_pages_; }

 private:
  struct Mapping {
    std::shared_ptr<SimDomain> domain;
    std::vector<GrantRef> refs;
    bool writable;
  };
  // Live domain lookup without the registry lock on the hot path: the handle
  // is used by one thread and caches domains until they die.
  SimDomain* live_domain(DomId domid);
  void release(void* address, const Mapping& m);

  std::shared_ptr<SimDomainRegistry> registry_;
  std::unordered_map<DomId, std::shared_ptr<SimDomain>> domains_;
  std::unordered_map<void*, Mapping> mappings_;
  size_t mapped_pages_ = 0;
};

}  // namespace xbb::sim
