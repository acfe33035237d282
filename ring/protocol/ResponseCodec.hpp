// Translation between a response and its bytes in one ABI.
#pragma once

#include <cstddef>
#include <span>

#include "ring/protocol/Abi.hpp"
#include "ring/protocol/Response.hpp"

namespace xbb::ring {

// Writes exactly response_bytes(abi) bytes to `slot`, padding zeroed
// (XSA-216). Returns false when `slot` is too small.
bool encode_response(Abi abi, const Response& rsp, std::span<std::byte> slot);

// Reads a response from a private copy of a slot. Returns false when
// `slot` is too small.
bool decode_response(Abi abi, std::span<const std::byte> slot, Response& out);

}  // namespace xbb::ring
