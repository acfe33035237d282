// The simulated hypervisor's record of one domain: its memory and grant table
// (mapped from the memfds the guest handed over), Xen's private "active grant"
// pin counts, and the event-channel ports the guest has left unbound for
// another domain to bind.
//
// Xen keeps pin counts per active entry under a per-entry lock; the simulation
// keeps them here under one per-domain mutex. The guest never sees the counts,
// only the GTF_reading/GTF_writing bits they imply, exactly as on Xen.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ring/ports/GuestMemory.hpp"
#include "tests/sim/guestmem/GrantEntryAccess.hpp"
#include "tests/sim/guestmem/MemoryMapping.hpp"
#include "storage/UniqueFd.hpp"

namespace xbb::sim {

using ports::DomId;
using ports::EvtchnPort;
using ports::GrantRef;

class SimDomain {
 public:
  // Takes ownership of the fds. Throws std::invalid_argument with a clear
  // message when they are not usable guest memory (wrong size, not sealed
  // against shrinking, not mappable).
  static std::shared_ptr<SimDomain> create(DomId id, storage::UniqueFd memory_fd, storage::UniqueFd grant_table_fd);

  SimDomain(const SimDomain&) = delete;
  SimDomain& operator=(const SimDomain&) = delete;

  DomId id() const { return id_; }
  uint32_t pages() const { return pages_; }
  uint32_t grant_entries() const { return grant_entries_; }
  int memory_fd() const { return memory_fd_.get(); }
  bool alive() const { return alive_.load(std::memory_order_acquire); }
  void mark_dead() { alive_.store(false, std::memory_order_release); }

  // Address of a frame in the hypervisor's own mapping of the domain's memory.
  uint8_t* frame_address(uint32_t frame) const {
    return static_cast<uint8_t*>(memory_.get()) + size_t{frame} * ports::kPageSize;
  }

  // Pins `ref` for `grantee` as Xen does for a map or a copy: GNTST_okay and
  // the granted frame, or GNTST_bad_gntref (ref outside the table) /
  // GNTST_general_error (not granted, granted to another domain, read-only
  // grant pinned for writing, frame outside the domain).
  int16_t pin(GrantRef ref, DomId grantee, bool write, uint32_t* frame);
  void unpin(GrantRef ref, bool write);

  // Event channel ports offered by the guest (EVTCHNOP_alloc_unbound).
  // Returns 0 or -errno (-EEXIST for a port in use).
  int offer_port(EvtchnPort port, DomId remote, storage::UniqueFd to_remote, storage::UniqueFd from_remote);
  int close_port(EvtchnPort port);

  // Binds an offered port for `binder` (EVTCHNOP_bind_interdomain): duplicates
  // of the two eventfds, seen from the binder's side, and a token for
  // release_port(). Sets *error to a positive errno on failure.
  struct BoundPort {
    storage::UniqueFd incoming;  // the guest writes it when it notifies
    storage::UniqueFd outgoing;  // we write it to notify the guest
    uint64_t token = 0;
  };
  std::optional<BoundPort> bind_port(EvtchnPort port, DomId binder, int* error);
  // The binder closed its end: the guest's port is unbound again (as on Xen).
  void release_port(EvtchnPort port, uint64_t token);

 private:
  SimDomain(DomId id, storage::UniqueFd memory_fd, storage::UniqueFd grant_table_fd, MemoryMapping memory,
            MemoryMapping grant_table, uint32_t pages, uint32_t grant_entries);

  grant_entry_v1_t& entry(GrantRef ref) const {
    return static_cast<grant_entry_v1_t*>(grant_table_.get())[ref];
  }

  const DomId id_;
  storage::UniqueFd memory_fd_;
  storage::UniqueFd grant_table_fd_;
  MemoryMapping memory_;
  MemoryMapping grant_table_;
  const uint32_t pages_;
  const uint32_t grant_entries_;
  std::atomic<bool> alive_{true};

  struct ActiveEntry {
    uint32_t readers = 0;  // read-only pins (maps and copies)
    uint32_t writers = 0;  // writable pins
    uint32_t frame = 0;    // captured at the first pin, as Xen's active entry does
  };
  std::mutex grant_mutex_;
  std::vector<ActiveEntry> active_;

  struct OfferedPort {
    DomId remote = 0;
    storage::UniqueFd to_remote;
    storage::UniqueFd from_remote;
    uint64_t bound_token = 0;  // 0 while unbound
  };
  std::mutex port_mutex_;
  std::unordered_map<EvtchnPort, OfferedPort> ports_;
  uint64_t next_token_ = 1;
};

}  // namespace xbb::sim
