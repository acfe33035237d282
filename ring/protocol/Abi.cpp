#include "ring/protocol/Abi.hpp"

#include <xen/io/protocols.h>

namespace xbb::ring {

std::optional<Abi> parse_protocol(std::string_view key) {
  if (key.empty()) return Abi::Native;
  if (key == XEN_IO_PROTO_ABI_X86_32) return Abi::X86_32;
  if (key == XEN_IO_PROTO_ABI_X86_64) return Abi::X86_64;
  // A frontend may spell out the native protocol of a non-x86 host.
  if (key == XEN_IO_PROTO_ABI_NATIVE) return Abi::Native;
  return std::nullopt;
}

std::string_view to_string(Abi abi) {
  switch (abi) {
    case Abi::Native:
      return "native";
    case Abi::X86_32:
      return XEN_IO_PROTO_ABI_X86_32;
    case Abi::X86_64:
      return XEN_IO_PROTO_ABI_X86_64;
  }
  return "invalid";
}

}  // namespace xbb::ring
