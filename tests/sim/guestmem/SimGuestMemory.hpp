// The guest side of a simulated domain: its pseudo-physical memory (a memfd of
// N pages) and its grant table (a second memfd of Xen v1 grant entries). A
// software frontend uses it the way a guest kernel uses its memory and
// gnttab_grant_foreign_access / gnttab_end_foreign_access_ref.
//
// Both memfds are sealed against shrinking and growing, so the hypervisor side
// (possibly another process) can map them without risking SIGBUS.
// Hand the domain to a SimHypervisor with SimHypervisor::add_domain(memory)
// in-process, or SimGuestConnection::connect() from another process.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/GrantEntryAccess.hpp"
#include "tests/sim/guestmem/MemoryMapping.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

using ports::DomId;
using ports::GrantRef;

class SimGuestMemory {
 public:
  static constexpr uint32_t kDefaultGrantEntries = 4096;

  // Throws std::system_error when memfds cannot be created, std::invalid_argument
  // for zero pages or a grant table without room past the reserved entries.
  SimGuestMemory(DomId domid, uint32_t pages, uint32_t grant_entries = kDefaultGrantEntries);
  SimGuestMemory(const SimGuestMemory&) = delete;
  SimGuestMemory& operator=(const SimGuestMemory&) = delete;
  ~SimGuestMemory();

  DomId domid() const { return domid_; }
  uint32_t pages() const { return pages_; }
  uint32_t grant_entries() const { return grant_entries_; }
  int memory_fd() const { return memory_fd_.get(); }
  int grant_table_fd() const { return grant_table_fd_.get(); }

  // Throws std::out_of_range for a page past the end.
  void* page_address(uint32_t page) const;

  // A page nobody has allocated yet (all pages start free); nullopt when full.
  std::optional<uint32_t> alloc_page();
  void free_page(uint32_t page);
  uint32_t free_pages() const;

  // Grants `to` access to `page` (gnttab_grant_foreign_access). Throws
  // std::out_of_range for a bad page, std::runtime_error when the table is full.
  GrantRef grant(uint32_t page, DomId to, bool readonly);
  // Ends access (gnttab_end_foreign_access_ref): refused (false) while the
  // grantee has the grant mapped or a copy in flight, as Xen refuses it; also
  // false for a ref that is not granted. On success the ref is free again.
  bool revoke(GrantRef ref);

  // Raw GTF_* flags of an entry (0 for refs out of range), for tests.
  uint16_t grant_flags(GrantRef ref) const;
  // Number of refs currently granted.
  uint32_t granted() const;

 private:
  grant_entry_v1_t* entry(GrantRef ref) const;

  DomId domid_;
  uint32_t pages_;
  uint32_t grant_entries_;
  storage::UniqueFd memory_fd_;
  storage::UniqueFd grant_table_fd_;
  MemoryMapping memory_;
  MemoryMapping grant_table_;

  mutable std::mutex mutex_;  // guest-side bookkeeping only, never the hypervisor's
  std::vector<uint32_t> free_page_list_;
  std::vector<bool> page_allocated_;
  std::vector<GrantRef> free_refs_;
};

}  // namespace xbb::sim
