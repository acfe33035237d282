// Which binary layout the frontend uses for the shared ring.
//
// A 32-bit x86 guest lays out 64-bit fields on 4-byte boundaries, so its
// requests are smaller and its fields sit at other offsets than a 64-bit
// guest's. The frontend names its layout in the `protocol` xenstore key.
#pragma once

#include <optional>
#include <string_view>

namespace xbb::ring {

enum class Abi { Native, X86_32, X86_64 };

// The two concrete wire layouts; Native resolves to one of them.
enum class WireLayout { X86_32, X86_64 };

// Parses the frontend's `protocol` key: absent or empty means Native,
// "x86_32-abi" and "x86_64-abi" name a layout, and this host's own protocol
// name (e.g. "arm-abi" on Arm) also means Native. Anything else is nullopt:
// the caller must refuse to connect rather than guess.
std::optional<Abi> parse_protocol(std::string_view key);

// "native", "x86_32-abi", "x86_64-abi" (for logs and statistics).
std::string_view to_string(Abi abi);

// The layout this ABI puts on the wire. Native is the layout of the official
// headers on this host: x86_64 wherever uint64_t is 8-byte aligned (x86_64,
// arm64), x86_32 where it is 4-byte aligned (i386).
constexpr WireLayout wire_layout(Abi abi) {
  switch (abi) {
    case Abi::X86_32:
      return WireLayout::X86_32;
    case Abi::X86_64:
      return WireLayout::X86_64;
    case Abi::Native:
      break;
  }
  return alignof(unsigned long long) == 8 ? WireLayout::X86_64 : WireLayout::X86_32;
}

}  // namespace xbb::ring
