// How many entries fit in a shared ring of a given size, per ABI.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/Layouts.hpp"

namespace xbb::ring {

inline constexpr size_t kRingPageBytes = 4096;
// We accept rings of up to 2^5 = 32 pages (ring-page-order 0..5).
inline constexpr unsigned kMaxRingPageOrder = 5;
inline constexpr unsigned kMaxRingPages = 1u << kMaxRingPageOrder;

// One ring slot holds a request or a response; requests are the larger.
constexpr size_t entry_bytes(WireLayout layout) {
  return layout == WireLayout::X86_64 ? sizeof(layout::x86_64::Request)
                                      : sizeof(layout::x86_32::Request);
}
constexpr size_t entry_bytes(Abi abi) { return entry_bytes(wire_layout(abi)); }

constexpr size_t response_bytes(WireLayout layout) {
  return layout == WireLayout::X86_64 ? sizeof(layout::x86_64::Response)
                                      : sizeof(layout::x86_32::Response);
}
constexpr size_t response_bytes(Abi abi) { return response_bytes(wire_layout(abi)); }

// The largest power of two <= n (0 for 0), like ring.h's __RD32.
constexpr uint32_t round_down_power_of_two(size_t n) {
  uint32_t p = 1;
  if (n == 0) return 0;
  while (static_cast<size_t>(p) * 2 <= n && p < (1u << 31)) p *= 2;
  return p;
}

// Entries in a ring of `pages` pages (ring.h's __CONST_RING_SIZE): the
// space after the 64-byte header divided by the entry size, rounded down to
// a power of two so indices can be masked. 0 for an unusable page count.
constexpr uint32_t ring_entries(Abi abi, unsigned pages) {
  if (pages == 0 || pages > kMaxRingPages) return 0;
  return round_down_power_of_two((pages * kRingPageBytes - layout::kSringHeaderBytes) /
                                 entry_bytes(abi));
}

// Entries for `ring-page-order` (0 for an order we do not accept).
constexpr uint32_t ring_entries_for_order(Abi abi, unsigned order) {
  return order > kMaxRingPageOrder ? 0 : ring_entries(abi, 1u << order);
}

static_assert(ring_entries_for_order(Abi::X86_64, 0) == 32);
static_assert(ring_entries_for_order(Abi::X86_64, 5) == 1024);
static_assert(ring_entries_for_order(Abi::X86_32, 0) == 32);
static_assert(ring_entries_for_order(Abi::X86_32, 5) == 1024);

}  // namespace xbb::ring
