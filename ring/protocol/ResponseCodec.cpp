#include "ring/protocol/ResponseCodec.hpp"

#include <cstring>

#include "ring/protocol/Layouts.hpp"
#include "ring/protocol/RingGeometry.hpp"

namespace xbb::ring {
namespace {

template <typename Wire>
void encode(const Response& rsp, std::span<std::byte> slot) {
  // Value-initialised: every byte, padding included, is zero before the
  // fields are set, and the slot gets the whole struct in one copy.
  Wire w{};
  w.id = rsp.id;
  w.operation = rsp.operation;
  w.status = rsp.status;
  std::memcpy(slot.data(), &w, sizeof(w));
}

template <typename Wire>
void decode(std::span<const std::byte> slot, Response& out) {
  Wire w;
  std::memcpy(&w, slot.data(), sizeof(w));
  out.id = w.id;
  out.operation = w.operation;
  out.status = w.status;
}

}  // namespace

bool encode_response(Abi abi, const Response& rsp, std::span<std::byte> slot) {
  if (slot.size() < response_bytes(abi)) return false;
  if (wire_layout(abi) == WireLayout::X86_64)
    encode<layout::x86_64::Response>(rsp, slot);
  else
    encode<layout::x86_32::Response>(rsp, slot);
  return true;
}

bool decode_response(Abi abi, std::span<const std::byte> slot, Response& out) {
  if (slot.size() < response_bytes(abi)) return false;
  if (wire_layout(abi) == WireLayout::X86_64)
    decode<layout::x86_64::Response>(slot, out);
  else
    decode<layout::x86_32::Response>(slot, out);
  return true;
}

}  // namespace xbb::ring
