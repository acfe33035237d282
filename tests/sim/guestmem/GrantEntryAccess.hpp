// Atomic access to Xen v1 grant entries (xen/grant_table.h) that live in a
// memfd shared between a simulated guest and the simulated hypervisor. The two
// sides may be different processes, so every field is read and written with
// atomics, and flag changes use compare-and-swap exactly like Xen and a guest
// kernel do: the guest can only revoke an entry whose GTF_reading/GTF_writing
// bits are clear, and the hypervisor can only set those bits on an entry that
// still permits access.
#pragma once

#include <atomic>
#include <cstdint>

// xen/xen.h relies on <stdint.h> types without including it.
#include <xen/xen.h>
#include <xen/grant_table.h>

namespace xbb::sim {

static_assert(sizeof(grant_entry_v1_t) == 8, "Xen v1 grant entries are 8 bytes");

// Xen reserves the first entries for the toolstack (GNTTAB_NR_RESERVED_ENTRIES);
// guests never hand them out, so ref 0 is never a valid grant by accident.
inline constexpr uint32_t kReservedGrantEntries = 8;

inline uint16_t load_flags(grant_entry_v1_t& entry) {
  return std::atomic_ref<uint16_t>(entry.flags).load(std::memory_order_acquire);
}

inline void store_flags(grant_entry_v1_t& entry, uint16_t flags) {
  std::atomic_ref<uint16_t>(entry.flags).store(flags, std::memory_order_release);
}

// On failure `expected` is refreshed with the current flags.
inline bool exchange_flags(grant_entry_v1_t& entry, uint16_t& expected, uint16_t desired) {
  return std::atomic_ref<uint16_t>(entry.flags)
      .compare_exchange_strong(expected, desired, std::memory_order_acq_rel);
}

inline uint16_t load_domid(grant_entry_v1_t& entry) {
  return std::atomic_ref<uint16_t>(entry.domid).load(std::memory_order_acquire);
}

inline uint32_t load_frame(grant_entry_v1_t& entry) {
  return std::atomic_ref<uint32_t>(entry.frame).load(std::memory_order_acquire);
}

inline void store_target(grant_entry_v1_t& entry, uint16_t domid, uint32_t frame) {
  std::atomic_ref<uint16_t>(entry.domid).store(domid, std::memory_order_relaxed);
  std::atomic_ref<uint32_t>(entry.frame).store(frame, std::memory_order_relaxed);
}

inline constexpr uint16_t kGrantInUse = GTF_reading | GTF_writing;

}  // namespace xbb::sim
